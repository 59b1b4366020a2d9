package servicelivetest_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

func ExampleBus() {
	var bus servicelivetest.Bus
	ctx := context.Background()

	_ = bus.Publish(ctx, servicelive.Event{Kind: servicelive.ServiceAdded, Decky: "web1", Service: "ssh", Services: []string{"ssh"}})
	bus.Fail(errors.New("nats: no servers available"))
	fmt.Println(bus.Publish(ctx, servicelive.Event{Kind: servicelive.ServiceRemoved, Decky: "web1", Service: "ssh"}))

	for _, e := range bus.Events() {
		fmt.Println(e.Topic(), e.Services)
	}
	fmt.Println("attempts:", bus.Attempts())
	// Output:
	// nats: no servers available
	// decky.web1.service_added [ssh]
	// attempts: 2
}
