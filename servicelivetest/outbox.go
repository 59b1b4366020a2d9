package servicelivetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/decnet/servicelive"
)

// outboxEvents returns n events with increasing IDs, of every kind.
func outboxEvents(n int) []servicelive.Event {
	kinds := []servicelive.EventKind{servicelive.ServiceAdded, servicelive.ServiceRemoved, servicelive.ServiceConfigChanged}
	out := make([]servicelive.Event, n)
	base := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	for i := range out {
		out[i] = servicelive.Event{
			ID: servicelive.NewEventID(), Time: base.Add(time.Duration(i) * time.Millisecond),
			Kind: kinds[i%len(kinds)], Decky: "web1", Service: "ssh", Services: []string{"http", "ssh"}, Applied: i%2 == 0,
		}
		if i%2 == 1 {
			out[i].Topology = "lab"
			out[i].ConfigKeys = []string{"banner", "port"}
			out[i].Services = []string{}
		}
	}
	return out
}

// eventIDs returns the IDs of es.
func eventIDs(es []servicelive.Event) []string {
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = e.ID
	}
	return ids
}

// storeTestOutbox checks the servicelive.Outbox of a store that has one.
func storeTestOutbox(t *testing.T, c *storeSuite) {
	hs := c.handles(t, nil)
	ob, ok := hs[0].(servicelive.Outbox)
	if !ok {
		t.Skip("the store is not a servicelive.Outbox")
	}
	ctx := context.Background()
	pending := func(t *testing.T, ob servicelive.Outbox, limit int) []servicelive.Event {
		t.Helper()
		got, err := ob.PendingEvents(ctx, limit)
		if err != nil {
			t.Fatalf("PendingEvents(%d): %v", limit, err)
		}
		return got
	}
	equal := cmp.Options{cmpopts.EquateEmpty()}
	if got := pending(t, ob, 10); len(got) != 0 {
		t.Fatalf("PendingEvents of a new store = %v, want none", got)
	}
	es := outboxEvents(5)
	for _, i := range []int{3, 0, 4, 1, 2, 1} { // out of order, one twice
		if err := ob.AppendEvent(ctx, es[i]); err != nil {
			t.Fatalf("AppendEvent(%s): %v", es[i].ID, err)
		}
	}
	if d := cmp.Diff(es, pending(t, ob, 10), equal); d != "" {
		t.Fatalf("PendingEvents after 5 appends, one twice: want them once each, by ID (-want +got):\n%s", d)
	}
	if got := pending(t, ob, 2); !slices.Equal(eventIDs(got), eventIDs(es[:2])) {
		t.Fatalf("PendingEvents(2) = %v, want the 2 oldest %v", eventIDs(got), eventIDs(es[:2]))
	}
	if err := ob.DeleteEvents(ctx, es[1].ID, es[3].ID, servicelive.NewEventID()); err != nil {
		t.Fatalf("DeleteEvents: %v", err)
	}
	left := []servicelive.Event{es[0], es[2], es[4]}
	if d := cmp.Diff(left, pending(t, ob, 10), equal); d != "" {
		t.Fatalf("PendingEvents after deleting 2 (and an unknown ID) (-want +got):\n%s", d)
	}
	if len(hs) < 2 {
		return
	}
	// Another handle (another process) sees them; once each handle has
	// been given some, it keeps getting them back.
	other, ok := hs[1].(servicelive.Outbox)
	if !ok {
		t.Fatal("the reopened handle is not a servicelive.Outbox")
	}
	got := pending(t, other, 10)
	mine := pending(t, ob, 10)
	if len(got)+len(mine) < len(left) {
		t.Fatalf("two handles see %d and %d pending events, want all %d between them", len(got), len(mine), len(left))
	}
	if again := pending(t, other, 10); !slices.Equal(eventIDs(again), eventIDs(got)) {
		t.Fatalf("the reopened handle got %v, then %v: want its events back", eventIDs(got), eventIDs(again))
	}
	if rel, ok := ob.(servicelive.OutboxReleaser); ok {
		// Released claims are the other handle's at once.
		if err := rel.ReleaseEvents(ctx); err != nil {
			t.Fatalf("ReleaseEvents: %v", err)
		}
		if all := pending(t, other, 10); !slices.Equal(eventIDs(all), eventIDs(left)) {
			t.Fatalf("after the first handle released its claims, the other got %v, want all %v", eventIDs(all), eventIDs(left))
		}
	}
	if err := other.DeleteEvents(ctx, eventIDs(left)...); err != nil {
		t.Fatalf("DeleteEvents through the reopened handle: %v", err)
	}
	if got := pending(t, ob, 10); len(got) != 0 {
		t.Fatalf("PendingEvents after the other handle deleted them all = %v", eventIDs(got))
	}
}
