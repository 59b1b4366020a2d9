package natsbus_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/internal/natstest"
	"github.com/decnet/servicelive/natsbus"
	"github.com/nats-io/nats.go"

	"github.com/decnet/servicelive/servicelivetest"
)

// BenchmarkPublish measures events per second through a Bus, one publisher
// publishing one event after the other: on core NATS (each Publish flushes:
// a round trip to the server), and into a JetStream stream (each Publish
// waits for the stream's acknowledgment).
func BenchmarkPublish(b *testing.B) {
	for _, mode := range modes {
		b.Run("mode="+mode.name, func(b *testing.B) {
			br := natstest.Start(b)
			nc := connect(b, br.URL())
			bus := newBus(b, nc, mode.stream)
			e := servicelive.Event{Kind: servicelive.ServiceAdded, Decky: "web1", Service: "ssh", Services: []string{"http", "ssh"}, ConfigKeys: []string{"banner"}, Applied: true, Time: time.Now().UTC()}
			ids := make([]string, b.N)
			for i := range ids {
				ids[i] = servicelive.NewEventID()
			}
			ctx := context.Background()
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				e.ID = ids[i]
				if err := bus.Publish(ctx, e); err != nil {
					b.Fatal(err)
				}
			}
			if err := nc.Flush(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}

// BenchmarkAddService measures Manager.AddService (MemoryStore, the fake
// engine servicelivetest.Composer) with each Bus: none, LocalBus, natsbus on
// core NATS and on JetStream, and natsbus with its server down (every event
// goes to the in-memory outbox), and LocalBus and natsbus with its server
// down on a FileStore (-file) and a SQLite sqlstore (-sqlite), whose
// outboxes are durable. Each iteration times one
// AddService; the RemoveService that undoes it is not timed.
func BenchmarkAddService(b *testing.B) {
	for _, name := range []string{"none", "local", "core", "jetstream", "down", "local-file", "down-file", "local-sqlite", "down-sqlite"} {
		b.Run("bus="+name, func(b *testing.B) {
			var store servicelive.Store = servicelive.NewMemoryStore(map[string][]servicelive.Decky{"": {{Name: "web0", Image: "decnet/base", Services: []string{"http"}}}})
			bus, kind, _ := strings.Cut(name, "-")
			switch kind {
			case "file":
				store = backends[0].open(b, backends[0].fresh(b))
			case "sqlite":
				store = backends[1].open(b, backends[1].fresh(b))
			}
			if p, ok := store.(putter); ok {
				if err := p.Put(context.Background(), "", servicelive.Decky{Name: "web0", Image: "decnet/base", Services: []string{"http"}}); err != nil {
					b.Fatal(err)
				}
			}
			reg, err := servicelive.NewRegistry(services...)
			if err != nil {
				b.Fatal(err)
			}
			var opts []servicelive.Option
			switch bus {
			case "local":
				lb := servicelive.NewLocalBus()
				b.Cleanup(func() { lb.Close() })
				opts = append(opts, servicelive.WithBus(lb))
			case "core", "jetstream", "down":
				br := natstest.Start(b)
				nc := connect(b, br.URL())
				stream := ""
				if bus != "core" {
					stream = "DECKY"
				}
				// Close does not wait long for a server that is gone.
				opts = append(opts, servicelive.WithBus(newBus(b, nc, stream, natsbus.WithFlushTimeout(100*time.Millisecond))))
				if bus == "down" {
					br.Stop()
					waitStatus(b, nc, nats.CONNECTED)
				}
			}
			m, err := servicelive.New(store, &servicelivetest.Composer{Lenient: true}, reg, opts...)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			ref := servicelive.FleetDecky("web0")
			b.ResetTimer()
			for range b.N {
				if _, err := m.AddService(ctx, ref, "ssh"); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if _, err := m.RemoveService(ctx, ref, "ssh"); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.StopTimer()
			if bus == "down" {
				ctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
				defer cancel()
				_ = m.Close(ctx) // the server is gone: let the events go
			}
		})
	}
}
