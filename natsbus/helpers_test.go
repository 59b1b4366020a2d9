package natsbus_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/internal/pgtest"
	"github.com/decnet/servicelive/natsbus"
	"github.com/decnet/servicelive/servicelivetest"
	"github.com/decnet/servicelive/sqlstore"
)

// waitStatus waits until nc's status is not st.
func waitStatus(t testing.TB, nc *nats.Conn, st nats.Status) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for nc.Status() == st {
		if time.Now().After(deadline) {
			t.Fatalf("connection still %s after 10 s", st)
		}
		time.Sleep(time.Millisecond)
	}
}

// connect returns a connection to url that reconnects for ever, every
// 20 ms, closed when t ends. The server may be down.
func connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond),
		nats.RetryOnFailedConnect(true), nats.ReconnectJitter(0, 0))
	if err != nil {
		t.Fatalf("nats connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// newBus returns a natsbus.Bus on nc (on stream when it is not ""),
// closed when t ends.
func newBus(t testing.TB, nc *nats.Conn, stream string, opts ...natsbus.Option) *natsbus.Bus {
	t.Helper()
	if stream != "" {
		opts = append(opts, natsbus.WithJetStream(stream))
	}
	b, err := natsbus.New(nc, opts...)
	if err != nil {
		t.Fatalf("natsbus.New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// services is the registry of the tests.
var services = []servicelive.Service{
	{Name: "ssh", Image: "decnet/ssh", Schema: []servicelive.Field{{Key: "banner", Type: servicelive.FieldString}}},
	{Name: "http", Image: "decnet/http"},
}

// newManager returns a Manager over store, a lenient fake engine and bus,
// closed (with a 5 s deadline) when t ends.
func newManager(t testing.TB, store servicelive.Store, bus servicelive.Bus, opts ...servicelive.Option) *servicelive.Manager {
	t.Helper()
	reg, err := servicelive.NewRegistry(services...)
	if err != nil {
		t.Fatal(err)
	}
	m, err := servicelive.New(store, &servicelivetest.Composer{Lenient: true}, reg,
		append([]servicelive.Option{servicelive.WithBus(bus), servicelive.WithRedelivery(20*time.Millisecond, 200*time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
	return m
}

// putter is a Store deckies can be put into.
type putter interface {
	servicelive.Store
	Put(ctx context.Context, topology string, d servicelive.Decky) error
}

// backend is a Store with an Outbox the tests run on.
type backend struct {
	name string
	// open opens (creating if needed) the store that dsn names; fresh
	// returns the dsn of a new one.
	open  func(t testing.TB, dsn string) putter
	fresh func(t testing.TB) string
}

var backends = []backend{
	{"file", func(t testing.TB, dsn string) putter {
		s, err := servicelive.OpenFileStore(dsn)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, func(t testing.TB) string { return filepath.Join(t.TempDir(), "state.json") }},
	{"sqlite", func(t testing.TB, dsn string) putter {
		return openSQL(t, sqlstore.DriverSQLite, dsn)
	}, func(t testing.TB) string { return filepath.Join(t.TempDir(), "state.db") }},
	{"postgres", func(t testing.TB, dsn string) putter {
		return openSQL(t, sqlstore.DriverPostgres, dsn)
	}, func(t testing.TB) string { return pgtest.NewDatabase(t, PG.DSN(t)) }},
}

func openSQL(t testing.TB, driver, dsn string) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.Open(context.Background(), driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// seed puts n bare fleet deckies web0..web<n-1> into s.
func seed(t testing.TB, s putter, n int) {
	t.Helper()
	for i := range n {
		if err := s.Put(context.Background(), "", servicelive.Decky{Name: fmt.Sprintf("web%d", i), Image: "decnet/base"}); err != nil {
			t.Fatal(err)
		}
	}
}

// receive reads events from ch until it has n, or fails t after timeout.
func receive(t testing.TB, ch <-chan servicelive.Event, n int, timeout time.Duration) []servicelive.Event {
	t.Helper()
	var got []servicelive.Event
	deadline := time.After(timeout)
	for len(got) < n {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("subscription closed after %d events, want %d", len(got), n)
			}
			got = append(got, e)
		case <-deadline:
			t.Fatalf("%d events after %v, want %d", len(got), timeout, n)
		}
	}
	return got
}

// quiet fails t if ch delivers an event within d.
func quiet(t testing.TB, ch <-chan servicelive.Event, d time.Duration) {
	t.Helper()
	select {
	case e := <-ch:
		t.Fatalf("an unexpected event: %s %s", e.Topic(), e.ID)
	case <-time.After(d):
	}
}
