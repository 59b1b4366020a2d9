package servicelive_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/decnet/servicelive"
)

// newBus returns a LocalBus closed at the end of the test.
func newBus(t *testing.T, opts ...servicelive.LocalBusOption) *servicelive.LocalBus {
	t.Helper()
	b := servicelive.NewLocalBus(opts...)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// subscribe subscribes to pattern or fails the test.
func subscribe(t *testing.T, b *servicelive.LocalBus, pattern string) *servicelive.Subscription {
	t.Helper()
	s, err := b.Subscribe(pattern)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", pattern, err)
	}
	return s
}

// publish publishes e or fails the test.
func publish(t *testing.T, b servicelive.Bus, e servicelive.Event) {
	t.Helper()
	if err := b.Publish(context.Background(), e); err != nil {
		t.Fatalf("Publish(%s): %v", e.Topic(), err)
	}
}

// drain returns the events buffered in s without waiting for more.
func drain(t *testing.T, s *servicelive.Subscription) []servicelive.Event {
	t.Helper()
	var out []servicelive.Event
	for {
		select {
		case e, ok := <-s.C():
			if !ok {
				return out
			}
			out = append(out, e)
		default:
			return out
		}
	}
}

func topics(events []servicelive.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.Topic()
	}
	return out
}

func added(decky, service string) servicelive.Event {
	return servicelive.Event{Kind: servicelive.ServiceAdded, Decky: decky, Service: service, Services: []string{service}}
}

func removed(decky, service string) servicelive.Event {
	return servicelive.Event{Kind: servicelive.ServiceRemoved, Decky: decky, Service: service}
}

func TestLocalBusPatternFiltering(t *testing.T) {
	defer goleak.VerifyNone(t)
	events := []servicelive.Event{
		added("web1", "ssh"),
		added("web2", "http"),
		removed("web1", "ssh"),
		removed("db1", "mysql"),
	}
	tests := []struct {
		pattern string
		want    []string
	}{
		{">", []string{"decky.web1.service_added", "decky.web2.service_added", "decky.web1.service_removed", "decky.db1.service_removed"}},
		{"decky.>", []string{"decky.web1.service_added", "decky.web2.service_added", "decky.web1.service_removed", "decky.db1.service_removed"}},
		{"decky.web1.>", []string{"decky.web1.service_added", "decky.web1.service_removed"}},
		{"decky.*.service_added", []string{"decky.web1.service_added", "decky.web2.service_added"}},
		{"decky.db1.service_removed", []string{"decky.db1.service_removed"}},
		{"*.*.service_removed", []string{"decky.web1.service_removed", "decky.db1.service_removed"}},
		{"decky.web3.>", nil},
		{"decky.*", nil},
		{"decky.web1.service_added.>", nil},
	}
	b := newBus(t)
	subs := make([]*servicelive.Subscription, len(tests))
	for i, tt := range tests {
		subs[i] = subscribe(t, b, tt.pattern)
	}
	for _, e := range events {
		publish(t, b, e)
	}
	for i, tt := range tests {
		if got := topics(drain(t, subs[i])); !slices.Equal(got, tt.want) {
			t.Errorf("pattern %q received %q, want %q", tt.pattern, got, tt.want)
		}
		if d := subs[i].Dropped(); d != 0 {
			t.Errorf("pattern %q: Dropped() = %d, want 0", tt.pattern, d)
		}
		if p := subs[i].Pattern(); p != tt.pattern {
			t.Errorf("Pattern() = %q, want %q", p, tt.pattern)
		}
	}
}

func TestLocalBusSubscribeInvalidPattern(t *testing.T) {
	defer goleak.VerifyNone(t)
	b := newBus(t)
	for _, p := range []string{"", ".", "decky.", "decky..web1", ">.decky", "decky.>.x", "decky.web*", "decky web1"} {
		s, err := b.Subscribe(p)
		if err == nil || s != nil {
			t.Errorf("Subscribe(%q) = %v, %v; want nil and an error", p, s, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), "servicelive: ") {
			t.Errorf("Subscribe(%q) error %q lacks the servicelive: prefix", p, err)
		}
	}
}

func TestLocalBusPublishInvalidTopic(t *testing.T) {
	defer goleak.VerifyNone(t)
	b := newBus(t)
	s := subscribe(t, b, ">")
	for _, e := range []servicelive.Event{
		{Kind: servicelive.ServiceAdded},                                                 // no decky
		{Kind: servicelive.ServiceAdded, Decky: "a..b"},                                  // empty token
		{Kind: servicelive.ServiceAdded, Decky: "web 1"},                                 // whitespace
		{Kind: servicelive.ServiceAdded, Decky: "*"},                                     // wildcard
		{Kind: "", Decky: "web1", Service: "ssh"},                                        // no kind
		{Kind: servicelive.ServiceAdded, Decky: "web1\n"},                                // control character
		{Kind: servicelive.ServiceRemoved, Decky: "web1.>"},                              // wildcard token
		{Kind: servicelive.ServiceRemoved, Decky: "web1", Service: "ssh", Services: nil}, // valid
	} {
		err := b.Publish(context.Background(), e)
		if valid := servicelive.ValidTopic(e.Topic()); (err == nil) != valid {
			t.Errorf("Publish(%q) = %v, ValidTopic = %v", e.Topic(), err, valid)
		}
	}
	if got := topics(drain(t, s)); !slices.Equal(got, []string{"decky.web1.service_removed"}) {
		t.Errorf("received %q, want only the valid event", got)
	}
}

func TestLocalBusOrder(t *testing.T) {
	defer goleak.VerifyNone(t)
	const n = 200
	b := newBus(t, servicelive.WithSubscriptionBuffer(n))
	all := subscribe(t, b, ">")
	web1 := subscribe(t, b, "decky.web1.>")
	var want, wantWeb1 []string
	for i := range n {
		e := added(fmt.Sprintf("web%d", i%3), fmt.Sprintf("svc%d", i))
		publish(t, b, e)
		want = append(want, e.Service)
		if e.Decky == "web1" {
			wantWeb1 = append(wantWeb1, e.Service)
		}
	}
	services := func(events []servicelive.Event) []string {
		out := make([]string, len(events))
		for i, e := range events {
			out[i] = e.Service
		}
		return out
	}
	if got := services(drain(t, all)); !slices.Equal(got, want) {
		t.Errorf("\">\" received %q, want %q", got, want)
	}
	if got := services(drain(t, web1)); !slices.Equal(got, wantWeb1) {
		t.Errorf("\"decky.web1.>\" received %q, want %q", got, wantWeb1)
	}
}

// Concurrent publishers are seen in one order by every subscriber.
func TestLocalBusSameOrderForAll(t *testing.T) {
	defer goleak.VerifyNone(t)
	const publishers, each = 4, 100
	b := newBus(t, servicelive.WithSubscriptionBuffer(publishers*each))
	s1, s2 := subscribe(t, b, ">"), subscribe(t, b, "decky.>")
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				_ = b.Publish(context.Background(), added(fmt.Sprintf("web%d", p), fmt.Sprintf("s%d", i)))
			}
		})
	}
	wg.Wait()
	got1, got2 := drain(t, s1), drain(t, s2)
	if len(got1) != publishers*each {
		t.Fatalf("received %d events, want %d", len(got1), publishers*each)
	}
	for i := range got1 {
		if got1[i].Topic() != got2[i].Topic() || got1[i].Service != got2[i].Service {
			t.Fatalf("event %d: %v vs %v: subscribers disagree on the order", i, got1[i], got2[i])
		}
	}
}

func TestLocalBusDropsNewEventsWhenFull(t *testing.T) {
	defer goleak.VerifyNone(t)
	const buffer, n = 4, 1000
	b := newBus(t, servicelive.WithSubscriptionBuffer(buffer))
	stuck := subscribe(t, b, ">")            // never read
	other := subscribe(t, b, "decky.web2.>") // matches nothing published: never fills
	done := make(chan error, 1)
	go func() {
		for i := range n {
			if err := b.Publish(context.Background(), added("web1", fmt.Sprintf("s%d", i))); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked on a subscriber whose buffer is full")
	}
	if d := stuck.Dropped(); d != n-buffer {
		t.Errorf("Dropped() = %d, want %d", d, n-buffer)
	}
	if d := other.Dropped(); d != 0 {
		t.Errorf("non-matching subscription: Dropped() = %d, want 0", d)
	}
	// The oldest events were kept: the new ones were dropped.
	got := drain(t, stuck)
	var services []string
	for _, e := range got {
		services = append(services, e.Service)
	}
	if want := []string{"s0", "s1", "s2", "s3"}; !slices.Equal(services, want) {
		t.Errorf("buffered %q, want %q", services, want)
	}
	// Once read, the subscription receives again.
	publish(t, b, added("web1", "again"))
	if got := drain(t, stuck); len(got) != 1 || got[0].Service != "again" {
		t.Errorf("after draining received %v, want the new event", got)
	}
	if d := stuck.Dropped(); d != n-buffer {
		t.Errorf("Dropped() = %d after a delivered event, want %d", d, n-buffer)
	}
}

func TestLocalBusBufferOption(t *testing.T) {
	defer goleak.VerifyNone(t)
	tests := []struct {
		name string
		bus  *servicelive.LocalBus
		want int
	}{
		{"default", servicelive.NewLocalBus(), 64},
		{"zero value", &servicelive.LocalBus{}, 64},
		{"WithBuffer(1)", servicelive.NewLocalBus(servicelive.WithSubscriptionBuffer(1)), 1},
		{"WithBuffer(10)", servicelive.NewLocalBus(servicelive.WithSubscriptionBuffer(10)), 10},
		{"WithBuffer(0)", servicelive.NewLocalBus(servicelive.WithSubscriptionBuffer(0)), 1},
		{"WithBuffer(-5)", servicelive.NewLocalBus(servicelive.WithSubscriptionBuffer(-5)), 1},
		{"deprecated WithBuffer(7)", servicelive.NewLocalBus(servicelive.WithBuffer(7)), 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Cleanup(func() { _ = tt.bus.Close() })
			s := subscribe(t, tt.bus, ">")
			for range tt.want + 3 {
				publish(t, tt.bus, added("web1", "ssh"))
			}
			if got := len(drain(t, s)); got != tt.want {
				t.Errorf("buffered %d events, want %d", got, tt.want)
			}
			if d := s.Dropped(); d != 3 {
				t.Errorf("Dropped() = %d, want 3", d)
			}
		})
	}
}

func TestLocalBusServicesAreCopied(t *testing.T) {
	defer goleak.VerifyNone(t)
	b := newBus(t)
	s := subscribe(t, b, ">")
	services := []string{"ssh", "http"}
	publish(t, b, servicelive.Event{Kind: servicelive.ServiceAdded, Decky: "web1", Service: "http", Services: services})
	services[0] = "mutated"
	got := drain(t, s)
	if len(got) != 1 || !slices.Equal(got[0].Services, []string{"ssh", "http"}) {
		t.Errorf("received %v: the publisher's later change leaked to the subscriber", got)
	}
}

func TestSubscriptionClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	b := newBus(t)
	s := subscribe(t, b, ">")
	keep := subscribe(t, b, ">")
	publish(t, b, added("web1", "ssh"))
	s.Close()
	s.Close() // idempotent
	publish(t, b, added("web1", "http"))
	// The event buffered before Close is still there, then the channel is closed.
	e, ok := <-s.C()
	if !ok || e.Service != "ssh" {
		t.Fatalf("first receive = %v, %v; want the buffered event", e, ok)
	}
	if e, ok := <-s.C(); ok {
		t.Fatalf("received %v after Close; want a closed channel", e)
	}
	if d := s.Dropped(); d != 0 {
		t.Errorf("closed subscription: Dropped() = %d, want 0 (missed events after Close are not drops)", d)
	}
	if got := len(drain(t, keep)); got != 2 {
		t.Errorf("other subscription received %d events, want 2", got)
	}
}

func TestLocalBusClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	b := servicelive.NewLocalBus()
	s1 := subscribe(t, b, ">")
	s2 := subscribe(t, b, "decky.web1.>")
	publish(t, b, added("web1", "ssh"))
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, s := range []*servicelive.Subscription{s1, s2} {
		if got := drain(t, s); len(got) != 1 {
			t.Errorf("%q: %d buffered events after Close, want 1", s.Pattern(), len(got))
		}
		if _, ok := <-s.C(); ok {
			t.Errorf("%q: channel open after the bus closed", s.Pattern())
		}
		s.Close() // after the bus's Close: no panic
	}
	if err := b.Publish(context.Background(), added("web1", "ssh")); !errors.Is(err, servicelive.ErrBusClosed) {
		t.Errorf("Publish after Close = %v, want ErrBusClosed", err)
	}
	if s, err := b.Subscribe(">"); !errors.Is(err, servicelive.ErrBusClosed) || s != nil {
		t.Errorf("Subscribe after Close = %v, %v; want nil, ErrBusClosed", s, err)
	}
}

// Publish, Subscribe, Subscription.Close and LocalBus.Close all race; run
// with -race. Nothing may panic (no send on a closed channel) and every
// reader must see its channel closed in the end.
func TestLocalBusConcurrent(t *testing.T) {
	defer goleak.VerifyNone(t)
	for round := range 20 {
		b := servicelive.NewLocalBus(servicelive.WithSubscriptionBuffer(8))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for p := range 4 {
			wg.Go(func() {
				<-start
				for i := 0; ; i++ {
					err := b.Publish(context.Background(), added(fmt.Sprintf("web%d", p), fmt.Sprintf("s%d", i)))
					if errors.Is(err, servicelive.ErrBusClosed) {
						return
					}
					if err != nil {
						t.Errorf("Publish: %v", err)
						return
					}
				}
			})
		}
		for r := range 8 {
			wg.Go(func() {
				<-start
				for i := 0; ; i++ {
					s, err := b.Subscribe([]string{">", "decky.*.service_added", fmt.Sprintf("decky.web%d.>", r%4)}[i%3])
					if errors.Is(err, servicelive.ErrBusClosed) {
						return
					}
					if err != nil {
						t.Errorf("Subscribe: %v", err)
						return
					}
					// Read a few events, then either close or let the bus do it.
					for range 3 {
						if _, ok := <-s.C(); !ok {
							break
						}
					}
					_ = s.Dropped()
					if i%2 == 0 {
						s.Close()
					} else {
						for range s.C() {
						}
					}
				}
			})
		}
		close(start)
		time.Sleep(time.Duration(round%5) * time.Millisecond)
		if err := b.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		wg.Wait()
	}
}

func TestEventJSON(t *testing.T) {
	tests := []struct {
		name string
		e    servicelive.Event
		want string
	}{
		{
			"fleet",
			servicelive.Event{Kind: servicelive.ServiceAdded, Decky: "web1", Service: "ssh", Services: []string{"ssh"}, ConfigKeys: []string{"banner"}, Applied: true},
			`{"kind":"service_added","decky_name":"web1","service_name":"ssh","services":["ssh"],"config_keys":["banner"],"applied":true}`,
		},
		{
			"topology",
			servicelive.Event{Kind: servicelive.ServiceRemoved, Decky: "web1", Service: "ssh", Topology: "lab-1", Services: []string{"http"}},
			`{"kind":"service_removed","decky_name":"web1","service_name":"ssh","topology_id":"lab-1","services":["http"],"applied":false}`,
		},
		{
			"last service removed",
			servicelive.Event{Kind: servicelive.ServiceRemoved, Decky: "web1", Service: "ssh", Services: []string{}},
			`{"kind":"service_removed","decky_name":"web1","service_name":"ssh","services":[],"applied":false}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(tt.e)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("json.Marshal = %s, want %s", got, tt.want)
			}
			var back servicelive.Event
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatal(err)
			}
			if back.Kind != tt.e.Kind || back.Decky != tt.e.Decky || back.Service != tt.e.Service ||
				back.Topology != tt.e.Topology || !slices.Equal(back.Services, tt.e.Services) ||
				!slices.Equal(back.ConfigKeys, tt.e.ConfigKeys) || back.Applied != tt.e.Applied {
				t.Errorf("round trip = %+v, want %+v", back, tt.e)
			}
		})
	}
}

func TestEventTopic(t *testing.T) {
	tests := []struct {
		e    servicelive.Event
		want string
	}{
		{servicelive.Event{Kind: servicelive.ServiceAdded, Decky: "web1"}, "decky.web1.service_added"},
		{servicelive.Event{Kind: servicelive.ServiceRemoved, Decky: "web1", Topology: "lab-1"}, "decky.web1.service_removed"},
		{servicelive.Event{Kind: servicelive.ServiceAdded, Decky: "0"}, "decky.0.service_added"},
	}
	for _, tt := range tests {
		if got := tt.e.Topic(); got != tt.want {
			t.Errorf("Topic() = %q, want %q", got, tt.want)
		}
	}
	// Every valid decky name gives a valid topic, for every kind.
	names := []string{"a", "0", "web1", "web-1", "a-", "x" + strings.Repeat("-", 62), strings.Repeat("z", 63)}
	alphabet := "abcdefghijklmnopqrstuvwxyz0123456789-"
	for i := range 500 {
		var sb strings.Builder
		sb.WriteByte(alphabet[i%36]) // first: not "-"
		for j := range i % 63 {
			sb.WriteByte(alphabet[(i*7+j*13)%len(alphabet)])
		}
		names = append(names, sb.String())
	}
	for _, name := range names {
		if !servicelive.ValidDeckyName(name) {
			t.Fatalf("test bug: %q is not a valid decky name", name)
		}
		for _, kind := range []servicelive.EventKind{servicelive.ServiceAdded, servicelive.ServiceRemoved} {
			topic := servicelive.Event{Kind: kind, Decky: name}.Topic()
			if !servicelive.ValidTopic(topic) {
				t.Errorf("Topic() = %q is not a ValidTopic", topic)
			}
			if !servicelive.Match("decky."+name+".>", topic) || !servicelive.Match("decky.*."+string(kind), topic) {
				t.Errorf("Topic() = %q does not match its decky's patterns", topic)
			}
		}
	}
}

func ExampleLocalBus() {
	bus := servicelive.NewLocalBus(servicelive.WithSubscriptionBuffer(16))
	defer bus.Close()

	// Watch services being added to any decky.
	sub, err := bus.Subscribe("decky.*.service_added")
	if err != nil {
		panic(err)
	}
	defer sub.Close()

	ctx := context.Background()
	_ = bus.Publish(ctx, servicelive.Event{Kind: servicelive.ServiceAdded, Decky: "web1", Service: "ssh", Services: []string{"ssh"}})
	_ = bus.Publish(ctx, servicelive.Event{Kind: servicelive.ServiceRemoved, Decky: "web1", Service: "ssh", Services: []string{}})
	_ = bus.Publish(ctx, servicelive.Event{Kind: servicelive.ServiceAdded, Decky: "db1", Service: "mysql", Services: []string{"mysql"}})

	for range 2 {
		e := <-sub.C()
		fmt.Println(e.Topic(), e.Services)
	}
	fmt.Println("dropped:", sub.Dropped())
	// Output:
	// decky.web1.service_added [ssh]
	// decky.db1.service_added [mysql]
	// dropped: 0
}
