package natsbus_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/internal/natstest"
	"github.com/decnet/servicelive/natsbus"
	"github.com/decnet/servicelive/servicelivetest"
	"github.com/decnet/servicelive/sqlstore"
)

// mutate makes mutation i of a run over 10 deckies: ssh added to decky
// web<i%10> on even rounds of 10, removed on odd ones.
func mutate(ctx context.Context, m *servicelive.Manager, i int) error {
	ref := servicelive.FleetDecky(fmt.Sprintf("web%d", i%10))
	var err error
	if (i/10)%2 == 0 {
		_, err = m.AddService(ctx, ref, "ssh")
	} else {
		_, err = m.RemoveService(ctx, ref, "ssh")
	}
	return err
}

// pending returns the IDs of the events in the outbox of s.
func pending(t testing.TB, s servicelive.Store) []string {
	t.Helper()
	es, err := s.(servicelive.Outbox).PendingEvents(context.Background(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return eventIDs(es)
}

// waitDrained waits until the outbox of s is empty.
func waitDrained(t testing.TB, s servicelive.Store, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ids := pending(t, s)
		if len(ids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events still in the outbox after %v", len(ids), timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// streamMsgs returns how many messages stream holds.
func streamMsgs(t testing.TB, nc *nats.Conn, stream string) uint64 {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// waitStreamMsgs waits until stream holds n messages.
func waitStreamMsgs(t testing.TB, nc *nats.Conn, stream string, n uint64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msgs := streamMsgs(t, nc, stream)
		if msgs >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stream holds %d messages after %v, want %d", msgs, timeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkOnce fails t unless got holds each ID of want once, and nothing
// else.
func checkOnce(t testing.TB, got []servicelive.Event, want []string) {
	t.Helper()
	ids := slices.Sorted(slices.Values(eventIDs(got)))
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(ids, want) {
		t.Fatalf("got %d events (%d distinct), want the %d events each once", len(ids), len(slices.Compact(slices.Clone(ids))), len(want))
	}
}

// TestBrokerDownDuringMutations stops the server while 1,000 mutations run
// and starts it again later: every event arrives, none twice.
func TestBrokerDownDuringMutations(t *testing.T) {
	const n = 1000
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			br := natstest.Start(t)
			nc := connect(t, br.URL())
			bus := newBus(t, nc, "DECKY")
			s := b.open(t, b.fresh(t))
			seed(t, s, 10)
			m := newManager(t, s, bus)
			ctx := context.Background()
			start := time.Now()
			var downFor time.Duration
			var downAt time.Time
			for i := range n {
				switch i {
				case n / 5:
					br.Stop()
					downAt = time.Now()
				case n * 7 / 10:
					downFor = time.Since(downAt)
					if left := len(pending(t, s)); left < n/2 {
						t.Fatalf("%d events in the outbox while the server is down, want the %d of the mutations since", left, n/2)
					}
					br.Restart()
				}
				if err := mutate(ctx, m, i); err != nil {
					t.Fatalf("mutation %d: %v", i, err)
				}
			}
			mutated := time.Since(start)
			// The stream first: polling the outbox claims its rows, which
			// a relay round running at that moment would skip (PostgreSQL's
			// SKIP LOCKED) and take for an empty outbox.
			waitStreamMsgs(t, nc, "DECKY", n, 30*time.Second)
			waitDrained(t, s, 5*time.Second)
			t.Logf("%d mutations in %v, the server down for %v of them; outbox drained %v later", n, mutated, downFor, time.Since(start)-mutated)

			ch, err := bus.Subscribe(ctx, "decky.>", natsbus.Durable("all"))
			if err != nil {
				t.Fatal(err)
			}
			got := receive(t, ch, n, 30*time.Second)
			quiet(t, ch, 300*time.Millisecond)
			ids := map[string]bool{}
			perDecky := map[string]int{}
			for i, e := range got {
				if ids[e.ID] {
					t.Fatalf("event %s delivered twice", e.ID)
				}
				if i > 0 && e.ID < got[i-1].ID {
					t.Fatalf("event %d (%s) stored after a later one (%s): the events of one Manager must keep their order", i, e.ID, got[i-1].ID)
				}
				ids[e.ID] = true
				perDecky[e.Decky]++
			}
			for d, c := range perDecky {
				if c != n/10 {
					t.Errorf("decky %s: %d events, want %d", d, c, n/10)
				}
			}
			if msgs := streamMsgs(t, nc, "DECKY"); msgs != n {
				t.Errorf("the stream holds %d messages, want %d", msgs, n)
			}
		})
	}
}

// The environment of the helper process of TestKilledWithPendingEvents.
const (
	helperEnv    = "NATSBUS_TEST_MUTATOR" // the backend's name
	helperDSNEnv = "NATSBUS_TEST_DSN"
	helperURLEnv = "NATSBUS_TEST_URL"
	helperNEnv   = "NATSBUS_TEST_N"
)

// mutatorHelper is the main of the helper process: it makes N mutations
// with a Bus whose server is down (each event stays in the Store's
// outbox), prints "done", and waits to be killed.
func mutatorHelper() int {
	fail := func(err error) int { fmt.Println("error:", err); return 1 }
	ctx := context.Background()
	var store servicelive.Store
	var err error
	switch dsn := os.Getenv(helperDSNEnv); os.Getenv(helperEnv) {
	case "file":
		store, err = servicelive.OpenFileStore(dsn)
	case "sqlite":
		store, err = sqlstore.Open(ctx, sqlstore.DriverSQLite, dsn)
	case "postgres":
		store, err = sqlstore.Open(ctx, sqlstore.DriverPostgres, dsn)
	}
	if err != nil {
		return fail(err)
	}
	nc, err := nats.Connect(os.Getenv(helperURLEnv), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1))
	if err != nil {
		return fail(err)
	}
	bus, err := natsbus.New(nc)
	if err != nil {
		return fail(err)
	}
	reg, err := servicelive.NewRegistry(services...)
	if err != nil {
		return fail(err)
	}
	// No redelivery before the kill: the events wait in the outbox,
	// unclaimed.
	m, err := servicelive.New(store, &servicelivetest.Composer{Lenient: true}, reg, servicelive.WithBus(bus), servicelive.WithRedelivery(time.Hour, time.Hour))
	if err != nil {
		return fail(err)
	}
	// New starts a round for what an earlier process left (nothing): let
	// it pass, so that it claims none of the events below.
	time.Sleep(200 * time.Millisecond)
	n, _ := strconv.Atoi(os.Getenv(helperNEnv))
	for i := range n {
		if err := mutate(ctx, m, i); err != nil {
			return fail(err)
		}
	}
	fmt.Println("done")
	select {}
}

// TestKilledWithPendingEvents kills (SIGKILL) a process that has made
// mutations while the server was down, its events still in the Store's
// outbox; the next Manager on the Store delivers them.
func TestKilledWithPendingEvents(t *testing.T) {
	const n = 20
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			br := natstest.Start(t)
			br.Stop() // the helper runs with the server down
			dsn := b.fresh(t)
			s := b.open(t, dsn)
			seed(t, s, 10)

			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"="+b.name, helperDSNEnv+"="+dsn, helperURLEnv+"="+br.URL(), helperNEnv+"="+strconv.Itoa(n))
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, _ := bufio.NewReader(out).ReadString('\n')
			if strings.TrimSpace(line) != "done" {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("helper: %q", line)
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
				t.Fatalf("helper exited with %v, want killed", err)
			}
			left := pending(t, s)
			if len(left) != n {
				t.Fatalf("%d events in the outbox after the kill, want %d", len(left), n)
			}

			br.Restart()
			nc := connect(t, br.URL())
			bus := newBus(t, nc, "DECKY")
			ch, err := bus.Subscribe(ctx, "decky.>", natsbus.Durable("all"))
			if err != nil {
				t.Fatal(err)
			}
			newManager(t, s, bus) // the restart: it publishes what is left
			got := receive(t, ch, n, 30*time.Second)
			checkOnce(t, got, left)
			quiet(t, ch, 200*time.Millisecond)
			waitDrained(t, s, 5*time.Second)
		})
	}
}

// TestCloseBrokerNeverBack checks that Manager.Close returns by its
// deadline when the server never comes back, the event kept in the outbox.
func TestCloseBrokerNeverBack(t *testing.T) {
	br := natstest.Start(t)
	nc := connect(t, br.URL())
	bus := newBus(t, nc, "DECKY", natsbus.WithFlushTimeout(200*time.Millisecond))
	s := backends[0].open(t, filepath.Join(t.TempDir(), "state.json"))
	seed(t, s, 1)
	m := newManager(t, s, bus)
	br.Stop()
	if _, err := m.AddService(context.Background(), servicelive.FleetDecky("web0"), "ssh"); err != nil {
		t.Fatal(err)
	}
	const deadline = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	err := m.Close(ctx)
	if d := time.Since(start); d > deadline+200*time.Millisecond {
		t.Errorf("Close returned after %v, its deadline is %v", d, deadline)
	}
	if err == nil {
		t.Error("Close with an event left: no error")
	}
	if left := pending(t, s); len(left) != 1 {
		t.Errorf("%d events in the outbox after Close, want the one kept", len(left))
	}
	start = time.Now()
	if err := bus.Close(); err == nil {
		t.Error("Bus.Close with the server gone: no error")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Bus.Close took %v, its flush timeout is 200ms", d)
	}
}
