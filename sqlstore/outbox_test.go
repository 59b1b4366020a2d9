package sqlstore_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
)

// TestOutboxClaims checks that handles on one database (as processes
// would be) do not both get the events one of them has claimed.
func TestOutboxClaims(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		a := openFresh(t, b)
		other := reopen(t, a)
		ctx := context.Background()
		var ids []string
		for range 5 {
			e := servicelive.Event{ID: servicelive.NewEventID(), Kind: servicelive.ServiceAdded, Decky: "web1", Service: "ssh"}
			if err := a.AppendEvent(ctx, e); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, e.ID)
		}
		claim := func(s interface {
			PendingEvents(context.Context, int) ([]servicelive.Event, error)
		}, limit int) []string {
			t.Helper()
			es, err := s.PendingEvents(ctx, limit)
			if err != nil {
				t.Fatal(err)
			}
			out := []string{}
			for _, e := range es {
				out = append(out, e.ID)
			}
			return out
		}
		if got := claim(a, 3); !slices.Equal(got, ids[:3]) {
			t.Fatalf("first handle claimed %v, want the 3 oldest %v", got, ids[:3])
		}
		if got := claim(other, 10); !slices.Equal(got, ids[3:]) {
			t.Fatalf("second handle got %v, want only the 2 unclaimed %v", got, ids[3:])
		}
		if got := claim(a, 10); !slices.Equal(got, ids[:3]) {
			t.Fatalf("first handle got %v back, want its own claims %v", got, ids[:3])
		}
		if err := other.DeleteEvents(ctx, ids[3:]...); err != nil {
			t.Fatal(err)
		}
		if got := claim(other, 10); len(got) != 0 {
			t.Fatalf("second handle got %v after deleting its claims, want none (the rest is leased)", got)
		}
	})
}

// TestCloseReleasesClaims: a Manager closed with events its Bus refused
// releases their claims, so that the next Manager (another handle, as
// after a restart) publishes them at once, not OutboxLease later.
func TestCloseReleasesClaims(t *testing.T) {
	a := openFresh(t, backends[0]) // SQLite: the claims are the same SQL on both
	ctx := context.Background()
	seed(t, a, map[string][]servicelive.Decky{"": {{Name: "web1", Image: "decnet/base"}}})
	reg, err := servicelive.NewRegistry(servicelive.Service{Name: "ssh", Image: "decnet/ssh"})
	if err != nil {
		t.Fatal(err)
	}
	bus := &servicelivetest.Bus{}
	bus.Fail(errors.New("broker down"))
	m, err := servicelive.New(a, &servicelivetest.Composer{Lenient: true}, reg, servicelive.WithBus(bus), servicelive.WithRedelivery(time.Millisecond, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.AddService(ctx, servicelive.FleetDecky("web1"), "ssh"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // failed rounds claim the event
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := m.Close(cctx); err == nil {
		t.Fatal("Close with an event the Bus refuses: no error")
	}
	bus.Fail(nil)
	m2, err := servicelive.New(reopen(t, a), &servicelivetest.Composer{Lenient: true}, reg, servicelive.WithBus(bus))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(bus.Events()) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := m2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	servicelivetest.AssertEvents(t, bus.Events(), "decky.web1.service_added service=ssh")
}
