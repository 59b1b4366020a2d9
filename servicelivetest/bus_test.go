package servicelivetest_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
)

func event(kind servicelive.EventKind, decky, service string, services ...string) servicelive.Event {
	return servicelive.Event{Kind: kind, Decky: decky, Service: service, Services: services}
}

func TestBusRecordsEvents(t *testing.T) {
	var b servicelivetest.Bus // the zero value is ready
	ctx := context.Background()
	services := []string{"ssh"}
	in := []servicelive.Event{
		event(servicelive.ServiceAdded, "web1", "ssh", services...),
		event(servicelive.ServiceRemoved, "web1", "ssh"),
		{Kind: servicelive.ServiceAdded, Decky: "web2", Service: "http", Topology: "lab", Services: []string{"http"}},
	}
	in[0].Services = services
	for _, e := range in {
		if err := b.Publish(ctx, e); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	services[0] = "mutated" // the publisher's slice is not aliased
	got := b.Events()
	if len(got) != len(in) {
		t.Fatalf("Events() has %d events, want %d", len(got), len(in))
	}
	for i := range in {
		w := in[i]
		if i == 0 {
			w.Services = []string{"ssh"}
		}
		g := got[i]
		if g.Kind != w.Kind || g.Decky != w.Decky || g.Service != w.Service || g.Topology != w.Topology ||
			!slices.Equal(g.Services, w.Services) {
			t.Errorf("event %d = %+v, want %+v", i, g, w)
		}
	}
	got[2].Services[0] = "mutated" // Events returns a copy
	if b.Events()[2].Services[0] != "http" {
		t.Error("changing Events()'s result changed the record")
	}
	if n := b.Attempts(); n != 3 {
		t.Errorf("Attempts() = %d, want 3", n)
	}
	b.Reset()
	if n, a := len(b.Events()), b.Attempts(); n != 0 || a != 0 {
		t.Errorf("after Reset: %d events, %d attempts", n, a)
	}
}

func TestBusFail(t *testing.T) {
	tests := []struct {
		name     string
		ctx      func() context.Context
		fail     error
		wantErr  error
		recorded bool
	}{
		{"ok", context.Background, nil, nil, true},
		{"injected failure", context.Background, errUnavailable, errUnavailable, false},
		{"cancelled context", func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, nil, context.Canceled, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b servicelivetest.Bus
			b.Fail(tt.fail)
			err := b.Publish(tt.ctx(), event(servicelive.ServiceAdded, "web1", "ssh", "ssh"))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Publish = %v, want %v", err, tt.wantErr)
			}
			if got := len(b.Events()) == 1; got != tt.recorded {
				t.Errorf("recorded = %v, want %v", got, tt.recorded)
			}
			if n := b.Attempts(); n != 1 {
				t.Errorf("Attempts() = %d, want 1", n)
			}
		})
	}
}

var errUnavailable = errors.New("bus unavailable")

func TestBusFailUntilCleared(t *testing.T) {
	var b servicelivetest.Bus
	ctx := context.Background()
	b.Fail(errUnavailable)
	for range 3 {
		if err := b.Publish(ctx, event(servicelive.ServiceAdded, "web1", "ssh")); err != errUnavailable {
			t.Fatalf("Publish = %v, want %v", err, errUnavailable)
		}
	}
	b.Reset() // keeps the failure
	if err := b.Publish(ctx, event(servicelive.ServiceAdded, "web1", "ssh")); err != errUnavailable {
		t.Fatalf("Publish after Reset = %v, want %v", err, errUnavailable)
	}
	b.Fail(nil)
	if err := b.Publish(ctx, event(servicelive.ServiceRemoved, "web1", "ssh")); err != nil {
		t.Fatalf("Publish after Fail(nil) = %v", err)
	}
	if n, a := len(b.Events()), b.Attempts(); n != 1 || a != 2 {
		t.Errorf("%d events and %d attempts, want 1 and 2", n, a)
	}
}

func TestBusConcurrent(t *testing.T) {
	defer goleak.VerifyNone(t)
	var b servicelivetest.Bus
	const workers, each = 8, 100
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				_ = b.Publish(context.Background(), event(servicelive.ServiceAdded, fmt.Sprintf("web%d", w), fmt.Sprintf("s%d", i)))
				_ = b.Events()
				_ = b.Attempts()
			}
		})
	}
	wg.Wait()
	if n, a := len(b.Events()), b.Attempts(); n != workers*each || a != workers*each {
		t.Errorf("%d events and %d attempts, want %d each", n, a, workers*each)
	}
}

func TestBusFailNext(t *testing.T) {
	var b servicelivetest.Bus
	ctx := context.Background()
	boom1, boom2, always := errors.New("boom 1"), errors.New("boom 2"), errors.New("down")
	b.FailNext(boom1)
	b.FailNext(boom2)
	for i, want := range []error{boom1, boom2, nil} {
		if err := b.Publish(ctx, event(servicelive.ServiceAdded, "web1", "ssh")); err != want {
			t.Fatalf("publish %d = %v, want %v", i, err, want)
		}
	}
	if n, a := len(b.Events()), b.Attempts(); n != 1 || a != 3 {
		t.Errorf("%d events and %d attempts, want 1 and 3", n, a)
	}

	// A nil error clears the queue; Reset keeps it.
	b.FailNext(boom1)
	b.FailNext(nil)
	b.FailNext(boom2)
	b.Reset()
	if err := b.Publish(ctx, event(servicelive.ServiceAdded, "web1", "ssh")); err != boom2 {
		t.Fatalf("publish = %v, want %v", err, boom2)
	}

	// The queued failure goes first, then Fail's.
	b.Fail(always)
	b.FailNext(boom1)
	for i, want := range []error{boom1, always} {
		if err := b.Publish(ctx, event(servicelive.ServiceAdded, "web1", "ssh")); err != want {
			t.Fatalf("publish %d = %v, want %v", i, err, want)
		}
	}
	b.Fail(nil)

	// A done ctx wins, and spends the queued failure.
	b.FailNext(boom1)
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.Publish(done, event(servicelive.ServiceAdded, "web1", "ssh")); !errors.Is(err, context.Canceled) {
		t.Fatalf("publish with a done ctx = %v", err)
	}
	if err := b.Publish(ctx, event(servicelive.ServiceAdded, "web1", "ssh")); err != nil {
		t.Fatalf("publish after = %v, want the failure spent", err)
	}
}

func TestBusTopics(t *testing.T) {
	var b servicelivetest.Bus
	if got := b.Topics(); got == nil || len(got) != 0 {
		t.Errorf("Topics() of a new Bus = %#v, want empty", got)
	}
	ctx := context.Background()
	_ = b.Publish(ctx, event(servicelive.ServiceAdded, "web1", "ssh", "ssh"))
	b.FailNext(errUnavailable)
	_ = b.Publish(ctx, event(servicelive.ServiceAdded, "web2", "ssh", "ssh")) // not recorded
	_ = b.Publish(ctx, servicelive.Event{Kind: servicelive.ServiceRemoved, Decky: "web1", Service: "ssh", Topology: "lab"})
	want := []string{"decky.web1.service_added", "decky.web1.service_removed"}
	if got := b.Topics(); !slices.Equal(got, want) {
		t.Errorf("Topics() = %q, want %q", got, want)
	}
}

func TestBusCopiesConfigKeys(t *testing.T) {
	var b servicelivetest.Bus
	keys := []string{"banner"}
	_ = b.Publish(context.Background(), servicelive.Event{Kind: servicelive.ServiceAdded, Decky: "web1", Service: "ssh", ConfigKeys: keys})
	keys[0] = "mutated"
	got := b.Events()
	got[0].ConfigKeys[0] = "mutated too"
	if k := b.Events()[0].ConfigKeys; !slices.Equal(k, []string{"banner"}) {
		t.Errorf("ConfigKeys = %q: aliased", k)
	}
}

func TestFormatEvent(t *testing.T) {
	for _, tt := range []struct {
		e    servicelive.Event
		want string
	}{
		{servicelive.Event{Kind: servicelive.ServiceAdded, Decky: "web1", Service: "ssh", Services: []string{"http", "ssh"}, ConfigKeys: []string{"banner", "port"}, Applied: true},
			"decky.web1.service_added service=ssh services=http,ssh config=banner,port applied=true"},
		{servicelive.Event{Kind: servicelive.ServiceRemoved, Decky: "web1", Service: "ssh", Topology: "lab", Services: []string{}, Applied: true},
			"decky.web1.service_removed topology=lab service=ssh services= applied=true"},
		{servicelive.Event{Kind: servicelive.ServiceConfigChanged, Decky: "web1", Service: "ssh", Services: []string{"ssh"}},
			"decky.web1.service_config_changed service=ssh services=ssh applied=false"},
	} {
		if got := servicelivetest.FormatEvent(tt.e); got != tt.want {
			t.Errorf("FormatEvent(%+v) =\n%s\nwant\n%s", tt.e, got, tt.want)
		}
		// Each line FormatEvent writes is a want that matches its event.
		if tb := runTB(t, func(tb testing.TB) { servicelivetest.AssertEvents(tb, []servicelive.Event{tt.e}, tt.want) }); len(tb.logs) != 0 {
			t.Errorf("AssertEvents of FormatEvent's own line failed: %q", tb.logs)
		}
	}
}

func TestAssertEvents(t *testing.T) {
	added := servicelive.Event{Kind: servicelive.ServiceAdded, Decky: "web1", Service: "ssh", Services: []string{"http", "ssh"}, ConfigKeys: []string{"banner"}, Applied: true}
	removed := servicelive.Event{Kind: servicelive.ServiceRemoved, Decky: "web1", Service: "ssh", Topology: "lab", Services: []string{}, Applied: true}
	got := []servicelive.Event{added, removed}
	for _, tt := range []struct {
		name  string
		got   []servicelive.Event
		want  []string
		ok    bool
		inLog string // a line the failure output must have
	}{
		{"topics", got, []string{"decky.web1.service_added", "decky.web1.service_removed"}, true, ""},
		{"patterns", got, []string{"decky.*.service_added", "decky.>"}, true, ""},
		{"fields", got, []string{"decky.web1.service_added service=ssh services=http,ssh config=banner applied=true",
			"decky.web1.service_removed topology=lab services= config="}, true, ""},
		{"none", nil, nil, true, ""},
		{"no event wanted", got[:1], nil, false, "want (no more events)"},
		{"missing event", got[:1], []string{"decky.web1.service_added", "decky.web1.service_removed"}, false,
			"  1: got  (no more events)\n     want decky.web1.service_removed"},
		{"wrong topic", got, []string{"decky.web1.service_added", "decky.web2.service_removed"}, false,
			"     (topic decky.web1.service_removed does not match decky.web2.service_removed)"},
		{"wrong service", got, []string{"decky.web1.service_added service=http", "decky.web1.service_removed"}, false,
			`(service is "ssh")`},
		{"wrong services", got, []string{"decky.web1.service_added services=ssh", "decky.web1.service_removed"}, false,
			`(services is "http,ssh")`},
		{"wrong topology", got, []string{"decky.web1.service_added topology=lab", "decky.web1.service_removed"}, false,
			`(topology is "")`},
		{"wrong applied", got, []string{"decky.web1.service_added applied=false", "decky.web1.service_removed"}, false,
			`(applied is "true")`},
		{"unknown field", got, []string{"decky.web1.service_added decky=web1", "decky.web1.service_removed"}, false,
			"unknown key decky"},
		{"field without =", got, []string{"decky.web1.service_added ssh", "decky.web1.service_removed"}, false,
			`bad field "ssh"`},
		{"bad applied", got, []string{"decky.web1.service_added applied=yes", "decky.web1.service_removed"}, false,
			"applied is true or false"},
		{"empty want", got, []string{"", "decky.web1.service_removed"}, false, "(empty want)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var ok bool
			tb := runTB(t, func(tb testing.TB) { ok = servicelivetest.AssertEvents(tb, tt.got, tt.want...) })
			if ok != tt.ok || (len(tb.logs) == 0) != tt.ok {
				t.Fatalf("AssertEvents = %v with reports %q, want %v", ok, tb.logs, tt.ok)
			}
			if tb.fatal {
				t.Error("AssertEvents stopped the test: it must use Errorf")
			}
			if tt.ok {
				return
			}
			out := strings.Join(tb.logs, "\n")
			if !strings.Contains(out, tt.inLog) {
				t.Errorf("report lacks %q:\n%s", tt.inLog, out)
			}
			// Every event is printed in full, so a want can be copied from it.
			for _, e := range tt.got {
				if !strings.Contains(out, servicelivetest.FormatEvent(e)) {
					t.Errorf("report lacks the event %q:\n%s", servicelivetest.FormatEvent(e), out)
				}
			}
		})
	}
}

// recordingTB is a testing.TB that records what is reported to it;
// Fatal* and Skip* end the goroutine, as with a real T (see runTB).
type recordingTB struct {
	testing.TB // the real test, for everything else
	mu         sync.Mutex
	logs       []string
	fatal      bool
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}

func (r *recordingTB) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	r.mu.Lock()
	r.fatal = true
	r.mu.Unlock()
	runtime.Goexit()
}

// runTB runs f with a recordingTB over t, in a goroutine of its own so
// that Fatalf can end it, and returns what f reported.
func runTB(t *testing.T, f func(testing.TB)) *recordingTB {
	t.Helper()
	tb := &recordingTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(tb)
	}()
	<-done
	return tb
}

func ExampleBus() {
	var bus servicelivetest.Bus
	ctx := context.Background()

	_ = bus.Publish(ctx, servicelive.Event{Kind: servicelive.ServiceAdded, Decky: "web1", Service: "ssh", Services: []string{"ssh"}})
	bus.FailNext(errors.New("nats: no servers available"))
	fmt.Println(bus.Publish(ctx, servicelive.Event{Kind: servicelive.ServiceRemoved, Decky: "web1", Service: "ssh"}))
	fmt.Println(bus.Publish(ctx, servicelive.Event{Kind: servicelive.ServiceRemoved, Decky: "web1", Service: "ssh"}))

	for _, e := range bus.Events() {
		fmt.Println(servicelivetest.FormatEvent(e))
	}
	fmt.Println(bus.Topics())
	fmt.Println("attempts:", bus.Attempts())
	// Output:
	// nats: no servers available
	// <nil>
	// decky.web1.service_added service=ssh services=ssh applied=false
	// decky.web1.service_removed service=ssh services= applied=false
	// [decky.web1.service_added decky.web1.service_removed]
	// attempts: 3
}
