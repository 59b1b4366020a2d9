package natsbus_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/internal/natstest"
	"github.com/decnet/servicelive/natsbus"
)

var update = flag.Bool("update", false, "rewrite testdata/payload.golden.json")

// modes are the Bus's two modes: core NATS ("") and JetStream (a stream).
var modes = []struct{ name, stream string }{{"core", ""}, {"jetstream", "DECKY"}}

// TestRoundTrip runs every kind of mutation through a Manager on natsbus
// and checks that a subscriber gets each event whole.
func TestRoundTrip(t *testing.T) {
	br := natstest.Start(t)
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			nc := connect(t, br.URL())
			bus := newBus(t, nc, mode.stream)
			store := servicelive.NewMemoryStore(map[string][]servicelive.Decky{
				"":    {{Name: "web1", Image: "decnet/base", Services: []string{"http"}}},
				"lab": {{Name: "web1", Image: "decnet/base"}},
			})
			m := newManager(t, store, bus)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ch, err := bus.Subscribe(ctx, "decky.>")
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			web1, lab := servicelive.FleetDecky("web1"), servicelive.TopologyDecky("lab", "web1")
			if _, err := m.AddService(ctx, web1, "ssh", servicelive.WithConfig(servicelive.Config{"banner": "hi"})); err != nil {
				t.Fatal(err)
			}
			if err := m.UpdateServiceConfig(ctx, web1, "ssh", servicelive.Config{"banner": "ho"}, servicelive.WithRecreate()); err != nil {
				t.Fatal(err)
			}
			if _, err := m.RemoveService(ctx, web1, "http"); err != nil {
				t.Fatal(err)
			}
			if _, err := m.AddService(ctx, lab, "http"); err != nil {
				t.Fatal(err)
			}
			got := receive(t, ch, 4, 10*time.Second)
			want := []servicelive.Event{
				{Kind: servicelive.ServiceAdded, Decky: "web1", Service: "ssh", Services: []string{"http", "ssh"}, ConfigKeys: []string{"banner"}, Applied: true},
				{Kind: servicelive.ServiceConfigChanged, Decky: "web1", Service: "ssh", Services: []string{"http", "ssh"}, ConfigKeys: []string{"banner"}, Applied: true},
				{Kind: servicelive.ServiceRemoved, Decky: "web1", Service: "http", Services: []string{"ssh"}, Applied: true},
				{Kind: servicelive.ServiceAdded, Decky: "web1", Service: "http", Topology: "lab", Services: []string{"http"}, Applied: true},
			}
			if d := cmp.Diff(want, got, cmpopts.IgnoreFields(servicelive.Event{}, "ID", "Time"), cmpopts.EquateEmpty()); d != "" {
				t.Errorf("events (-want +got):\n%s", d)
			}
			ids := map[string]bool{}
			for i, e := range got {
				if e.ID == "" || ids[e.ID] || i > 0 && e.ID <= got[i-1].ID {
					t.Errorf("event %d: ID %q: want unique and increasing", i, e.ID)
				}
				ids[e.ID] = true
				if e.Time.Before(start.Add(-time.Second)) || e.Time.After(time.Now()) || e.Time.Location() != time.UTC {
					t.Errorf("event %d: Time %v, want a UTC time during the test", i, e.Time)
				}
			}
			quiet(t, ch, 100*time.Millisecond)
		})
	}
}

// TestWildcards checks that subscriptions get exactly the events whose
// topics their patterns match, as servicelive.Match says.
func TestWildcards(t *testing.T) {
	br := natstest.Start(t)
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			nc := connect(t, br.URL())
			bus := newBus(t, nc, mode.stream)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			patterns := []string{">", "decky.>", "decky.*.service_added", "decky.web1.>", "decky.web2.service_removed", "decky.*.*", "other.>"}
			subs := make([]<-chan servicelive.Event, len(patterns))
			for i, p := range patterns {
				var err error
				if subs[i], err = bus.Subscribe(ctx, p); err != nil {
					t.Fatal(err)
				}
			}
			var events []servicelive.Event
			for _, d := range []string{"web1", "web2", "web1-b"} {
				for _, k := range []servicelive.EventKind{servicelive.ServiceAdded, servicelive.ServiceRemoved, servicelive.ServiceConfigChanged} {
					events = append(events, servicelive.Event{ID: servicelive.NewEventID(), Time: time.Now().UTC(), Kind: k, Decky: d, Service: "ssh", Services: []string{}})
				}
			}
			for _, e := range events {
				if err := bus.Publish(ctx, e); err != nil {
					t.Fatal(err)
				}
			}
			for i, p := range patterns {
				var want []string
				for _, e := range events {
					if servicelive.Match(p, e.Topic()) {
						want = append(want, e.ID)
					}
				}
				got := receive(t, subs[i], len(want), 5*time.Second)
				if ids := eventIDs(got); !slices.Equal(ids, want) {
					t.Errorf("pattern %s: got %d events %v, want %d", p, len(ids), ids, len(want))
				}
				quiet(t, subs[i], 20*time.Millisecond)
			}
		})
	}
	if _, err := (&natsbus.Bus{}).Subscribe(context.Background(), "decky.web*"); err == nil {
		t.Error("Subscribe of an invalid pattern succeeded")
	}
}

// TestMatchAgreesWithServer checks servicelive.Match against the server's
// own subject matching.
func TestMatchAgreesWithServer(t *testing.T) {
	topics := []string{"decky", "decky.web1", "decky.web1.service_added", "decky.web1.service_added.x", "a.b.c", "decky.web-1.service_removed", "x"}
	patterns := []string{">", "*", "*.>", "decky", "decky.>", "decky.*", "decky.*.*", "decky.*.>", "*.*.service_added", "decky.web1.*", "decky.web1.service_added", "a.*.c", "*.b.>", "decky.>.x"}
	n := 0
	for _, p := range patterns {
		for _, topic := range topics {
			valid := server.IsValidSubject(p)
			if valid != servicelive.ValidPattern(p) {
				t.Errorf("pattern %q: server says valid=%v, ValidPattern %v", p, valid, !valid)
				continue
			}
			if !valid {
				continue
			}
			if got, want := servicelive.Match(p, topic), server.SubjectMatchesFilter(topic, p); got != want {
				t.Errorf("Match(%q, %q) = %v, server says %v", p, topic, got, want)
			}
			n++
		}
	}
	if n < 50 {
		t.Fatalf("only %d pairs compared", n)
	}
}

// goldenEvent is the event of the payload golden file.
var goldenEvent = servicelive.Event{
	ID: "01937f6c-1c2e-7b3a-9c1d-2f0e6a5b4c3d", Time: time.Date(2026, 11, 30, 6, 45, 0, 123456789, time.UTC),
	Kind: servicelive.ServiceAdded, Decky: "web1", Service: "ssh", Topology: "lab",
	Services: []string{"http", "ssh"}, ConfigKeys: []string{"banner", "port"}, Applied: true,
}

// TestPayloadGolden pins the payload's schema (see the package
// documentation): a change to it is a new version.
func TestPayloadGolden(t *testing.T) {
	got, err := natsbus.Encode(goldenEvent)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "payload.golden.json")
	if *update {
		if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bytes.TrimSpace(want)) {
		t.Errorf("payload changed:\n got %s\nwant %s", got, want)
	}
	e, err := natsbus.Decode(want)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(goldenEvent, e); d != "" {
		t.Errorf("Decode(golden) (-want +got):\n%s", d)
	}
	for _, bad := range []string{
		`{"version":2,"kind":"service_added","decky_name":"web1"}`,
		`{"kind":"service_added","decky_name":"web1"}`,
		`{"version":1,"kind":"service_added","decky_name":"web 1"}`,
		`not json`,
	} {
		if _, err := natsbus.Decode([]byte(bad)); err == nil {
			t.Errorf("Decode(%s) succeeded", bad)
		}
	}
}

// TestStreamMismatch checks that New never alters an existing stream that
// does not capture the events' subjects.
func TestStreamMismatch(t *testing.T) {
	br := natstest.Start(t)
	nc := connect(t, br.URL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}}); err != nil {
		t.Fatal(err)
	}
	_, err = natsbus.New(nc, natsbus.WithJetStream("OTHER"))
	var mm *natsbus.StreamMismatchError
	if !errors.As(err, &mm) || mm.Stream != "OTHER" || !slices.Equal(mm.Subjects, []string{"other.>"}) {
		t.Fatalf("New on a mismatched stream: %v, want a *StreamMismatchError", err)
	}
	s, err := js.Stream(ctx, "OTHER")
	if err != nil {
		t.Fatal(err)
	}
	if subj := s.CachedInfo().Config.Subjects; !slices.Equal(subj, []string{"other.>"}) {
		t.Fatalf("the stream was altered: subjects %q", subj)
	}
	// A stream New created is accepted by the next New.
	newBus(t, nc, "DECKY")
	newBus(t, nc, "DECKY")
}

// TestPublishFailsFastWhenDown checks that Publish does not wait (nor
// buffer) while the connection is down, in both modes.
func TestPublishFailsFastWhenDown(t *testing.T) {
	br := natstest.Start(t)
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			nc := connect(t, br.URL())
			bus := newBus(t, nc, mode.stream, natsbus.WithFlushTimeout(100*time.Millisecond))
			e := servicelive.Event{ID: servicelive.NewEventID(), Kind: servicelive.ServiceAdded, Decky: "web1", Service: "ssh"}
			br.Stop()
			defer br.Restart()
			waitStatus(t, nc, nats.CONNECTED)
			start := time.Now()
			err := bus.Publish(context.Background(), e)
			if !errors.Is(err, natsbus.ErrNotConnected) {
				t.Fatalf("Publish with the server down: %v, want ErrNotConnected", err)
			}
			if d := time.Since(start); d > 50*time.Millisecond {
				t.Errorf("Publish took %v with the server down", d)
			}
			start = time.Now()
			if err := bus.Close(); err == nil {
				t.Error("Close with the server down: no flush error")
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Close took %v, its flush timeout is 100ms", d)
			}
			if err := bus.Publish(context.Background(), e); !errors.Is(err, natsbus.ErrClosed) {
				t.Errorf("Publish after Close: %v, want ErrClosed", err)
			}
		})
	}
}

// TestDurable checks that a durable consumer gets the events published
// while no one listened, and resumes after the last one received.
func TestDurable(t *testing.T) {
	br := natstest.Start(t)
	nc := connect(t, br.URL())
	bus := newBus(t, nc, "DECKY")
	ctx := context.Background()
	var events []servicelive.Event
	for i := range 6 {
		e := servicelive.Event{ID: servicelive.NewEventID(), Kind: servicelive.ServiceAdded, Decky: "web1", Service: "s" + string(rune('a'+i)), Services: []string{}}
		if i%2 == 1 {
			e.Decky = "web2"
		}
		events = append(events, e)
		if err := bus.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	var web1 []string
	for _, e := range events {
		if e.Decky == "web1" {
			web1 = append(web1, e.ID)
		}
	}
	sctx, cancel := context.WithCancel(ctx)
	ch, err := bus.Subscribe(sctx, "decky.web1.>", natsbus.Durable("dash"), natsbus.AckWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := receive(t, ch, 2, 5*time.Second)
	cancel()
	for range ch {
	}
	// The third is delivered to the next subscriber of the consumer (at
	// once, or after AckWait if a pull was in flight when ctx ended).
	ch, err = bus.Subscribe(ctx, "decky.web1.>", natsbus.Durable("dash"), natsbus.AckWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, receive(t, ch, 1, 5*time.Second)...)
	if ids := eventIDs(got); !slices.Equal(ids, web1) {
		t.Errorf("durable consumer got %v, want %v", ids, web1)
	}
	quiet(t, ch, 200*time.Millisecond)
	if _, err := newBus(t, nc, "").Subscribe(ctx, ">", natsbus.Durable("x")); err == nil {
		t.Error("Durable on a core NATS Bus succeeded")
	}
}

// eventIDs returns the IDs of es.
func eventIDs(es []servicelive.Event) []string {
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = e.ID
	}
	return ids
}
