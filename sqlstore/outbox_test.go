package sqlstore_test

import (
	"context"
	"slices"
	"testing"

	"github.com/decnet/servicelive"
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
