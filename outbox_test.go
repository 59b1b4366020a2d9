package servicelive_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
)

// outboxHarness is a deployed fleet decky web1 behind a fake Bus, with a
// fast relay; store wraps the harness's MemoryStore (nil: as it is).
func outboxHarness(t *testing.T, opts ...servicelivetest.HarnessOption) *servicelivetest.Harness {
	t.Helper()
	return servicelivetest.NewHarness(t,
		map[string][]servicelive.Decky{"": {{Name: "web1", Image: "decnet/base"}}},
		[]servicelive.Service{{Name: "ssh", Image: "decnet/ssh"}, {Name: "http", Image: "decnet/http"}},
		append([]servicelivetest.HarnessOption{servicelivetest.Deployed(), servicelivetest.WithManagerOptions(servicelive.WithRedelivery(5*time.Millisecond, 20*time.Millisecond))}, opts...)...)
}

// waitEvents waits until bus has recorded n events.
func waitEvents(t *testing.T, bus *servicelivetest.Bus, n int) []servicelive.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if es := bus.Events(); len(es) >= n {
			return es
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events after 10 s, want %d", len(bus.Events()), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestOutboxRedeliversInOrder(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	h := outboxHarness(t)
	ctx := context.Background()
	web1 := servicelive.FleetDecky("web1")
	h.Bus.Fail(errors.New("broker down"))
	for _, s := range []string{"ssh", "http"} {
		if _, err := h.Manager.AddService(ctx, web1, s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.Manager.RemoveService(ctx, web1, "ssh"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond) // a few failed rounds
	if n := len(h.Bus.Events()); n != 0 {
		t.Fatalf("%d events through a failing Bus", n)
	}
	h.Bus.Fail(nil)
	es := waitEvents(t, h.Bus, 3)
	h.AssertEvents(
		"decky.web1.service_added service=ssh services=ssh",
		"decky.web1.service_added service=http services=ssh,http",
		"decky.web1.service_removed service=ssh services=http",
	)
	for i, e := range es {
		if e.ID == "" || e.Time.IsZero() || i > 0 && e.ID <= es[i-1].ID {
			t.Errorf("event %d: ID %q, Time %v: want increasing IDs and a time", i, e.ID, e.Time)
		}
	}
	time.Sleep(30 * time.Millisecond)
	if n := len(h.Bus.Events()); n != 3 {
		t.Errorf("%d events in the end, want each of the 3 once", n)
	}
	if err := h.Manager.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestCloseFlushes(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	h := outboxHarness(t, servicelivetest.WithManagerOptions(servicelive.WithRedelivery(time.Hour, time.Hour)))
	ctx := context.Background()
	h.Bus.Fail(errors.New("broker down"))
	if _, err := h.Manager.AddService(ctx, servicelive.FleetDecky("web1"), "ssh"); err != nil {
		t.Fatal(err)
	}
	// The Bus never comes back: Close gives up at its deadline.
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := h.Manager.Close(cctx); err == nil {
		t.Fatal("Close with an event the Bus refuses: no error")
	}
	h.Bus.Fail(nil)
	if err := h.Manager.Close(ctx); err != nil {
		t.Fatalf("Close once the Bus is back: %v", err)
	}
	h.AssertEvents("decky.web1.service_added service=ssh")
}

func TestCloseLeavesEventsInFileOutbox(t *testing.T) {
	store, err := servicelive.OpenFileStore(filepath.Join(t.TempDir(), "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := store.Put(ctx, "", servicelive.Decky{Name: "web1", Image: "decnet/base"}); err != nil {
		t.Fatal(err)
	}
	reg, err := servicelive.NewRegistry(servicelive.Service{Name: "ssh", Image: "decnet/ssh"})
	if err != nil {
		t.Fatal(err)
	}
	bus := &servicelivetest.Bus{}
	bus.Fail(errors.New("broker down"))
	m, err := servicelive.New(store, &servicelivetest.Composer{Lenient: true}, reg, servicelive.WithBus(bus), servicelive.WithRedelivery(time.Hour, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.AddService(ctx, servicelive.FleetDecky("web1"), "ssh"); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := m.Close(cctx); err == nil {
		t.Error("Close: no error")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v past a 50 ms deadline", d)
	}
	// The event stays in the FileStore's outbox: the next Manager on the
	// file publishes it.
	bus.Fail(nil)
	if _, err := servicelive.New(store, &servicelivetest.Composer{Lenient: true}, reg, servicelive.WithBus(bus)); err != nil {
		t.Fatal(err)
	}
	waitEvents(t, bus, 1)
	servicelivetest.AssertEvents(t, bus.Events(), "decky.web1.service_added service=ssh")
}

// TestCloseRetries: Close retries a Bus that fails at first until its
// deadline, instead of giving up at the first failed round.
func TestCloseRetries(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	h := outboxHarness(t, servicelivetest.WithManagerOptions(servicelive.WithRedelivery(time.Hour, time.Hour)))
	ctx := context.Background()
	h.Bus.Fail(errors.New("broker down"))
	for _, s := range []string{"ssh", "http"} {
		if _, err := h.Manager.AddService(ctx, servicelive.FleetDecky("web1"), s); err != nil {
			t.Fatal(err)
		}
	}
	back := time.AfterFunc(200*time.Millisecond, func() { h.Bus.Fail(nil) })
	defer back.Stop()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := h.Manager.Close(cctx); err != nil {
		t.Fatalf("Close with a Bus back after 200 ms and a 5 s deadline: %v", err)
	}
	h.AssertEvents("decky.web1.service_added service=ssh", "decky.web1.service_added service=http")
}

// hangingBus answers no Publish while hang is set: it waits for ctx (a
// broker gone without the connection noticing yet).
type hangingBus struct {
	servicelivetest.Bus
	hang atomic.Bool
}

func (b *hangingBus) Publish(ctx context.Context, e servicelive.Event) error {
	if b.hang.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	return b.Bus.Publish(ctx, e)
}

// TestHangingBusCostsOneCall: a Bus that does not answer holds the first
// mutation for the inline publish timeout (1 s), and the next not at all
// (its event joins the outbox behind the first).
func TestHangingBusCostsOneCall(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	bus := &hangingBus{}
	bus.hang.Store(true)
	h := outboxHarness(t, servicelivetest.WithManagerOptions(servicelive.WithBus(bus), servicelive.WithRedelivery(time.Hour, time.Hour)))
	ctx := context.Background()
	web1 := servicelive.FleetDecky("web1")
	var took []time.Duration
	for _, s := range []string{"ssh", "http"} {
		start := time.Now()
		if _, err := h.Manager.AddService(ctx, web1, s); err != nil {
			t.Fatal(err)
		}
		took = append(took, time.Since(start))
	}
	if took[0] > 2*time.Second || took[1] > 200*time.Millisecond {
		t.Errorf("AddService took %v then %v with a Bus that hangs: want at most ~1 s, then nothing", took[0], took[1])
	}
	bus.hang.Store(false)
	if err := h.Manager.Close(ctx); err != nil {
		t.Fatal(err)
	}
	servicelivetest.AssertEvents(t, bus.Events(), "decky.web1.service_added service=ssh", "decky.web1.service_added service=http")
}

// refusingStore is a FileStore whose Outbox refuses events while fail is
// set.
type refusingStore struct {
	*servicelive.FileStore
	fail atomic.Bool
}

func (s *refusingStore) AppendEvent(ctx context.Context, e servicelive.Event) error {
	if s.fail.Load() {
		return errors.New("disk full")
	}
	return s.FileStore.AppendEvent(ctx, e)
}

// TestOutboxRefusesToo: an event that the Bus and then the Outbox refuse
// is kept in memory and delivered in order with the Outbox's.
func TestOutboxRefusesToo(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	fs, err := servicelive.OpenFileStore(filepath.Join(t.TempDir(), "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	store := &refusingStore{FileStore: fs}
	ctx := context.Background()
	if err := store.Put(ctx, "", servicelive.Decky{Name: "web1", Image: "decnet/base"}); err != nil {
		t.Fatal(err)
	}
	reg, err := servicelive.NewRegistry(servicelive.Service{Name: "ssh", Image: "decnet/ssh"}, servicelive.Service{Name: "http", Image: "decnet/http"})
	if err != nil {
		t.Fatal(err)
	}
	bus := &servicelivetest.Bus{}
	bus.Fail(errors.New("broker down"))
	m, err := servicelive.New(store, &servicelivetest.Composer{Lenient: true}, reg, servicelive.WithBus(bus), servicelive.WithRedelivery(5*time.Millisecond, 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	web1 := servicelive.FleetDecky("web1")
	for i, s := range []string{"ssh", "http"} {
		store.fail.Store(i == 1)
		if _, err := m.AddService(ctx, web1, s); err != nil {
			t.Fatal(err)
		}
	}
	store.fail.Store(false)
	if _, err := m.RemoveService(ctx, web1, "ssh"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond) // a few failed rounds
	bus.Fail(nil)
	waitEvents(t, bus, 3)
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	servicelivetest.AssertEvents(t, bus.Events(),
		"decky.web1.service_added service=ssh",
		"decky.web1.service_added service=http",
		"decky.web1.service_removed service=ssh",
	)
}

// TestNoRoundAfterClose: a timer round that fired just before Close runs
// nothing after Close has returned.
func TestNoRoundAfterClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	h := outboxHarness(t, servicelivetest.WithManagerOptions(servicelive.WithRedelivery(time.Millisecond, time.Millisecond)))
	ctx := context.Background()
	fired, resume := make(chan struct{}), make(chan struct{})
	var once sync.Once
	servicelive.SetTestHookTick(func(m *servicelive.Manager) {
		if m != h.Manager { // another test's Manager, still retrying
			return
		}
		once.Do(func() {
			close(fired)
			<-resume
		})
	})
	defer servicelive.SetTestHookTick(nil)
	h.Bus.Fail(errors.New("broker down"))
	if _, err := h.Manager.AddService(ctx, servicelive.FleetDecky("web1"), "ssh"); err != nil {
		t.Fatal(err)
	}
	<-fired // the timer's round has started, before its semaphore
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := h.Manager.Close(cctx); err == nil {
		t.Fatal("Close with an event the Bus refuses: no error")
	}
	attempts := h.Bus.Attempts()
	h.Bus.Fail(nil)
	close(resume)
	time.Sleep(20 * time.Millisecond)
	if n := h.Bus.Attempts(); n != attempts {
		t.Errorf("%d publish attempts after Close returned, want none", n-attempts)
	}
}
