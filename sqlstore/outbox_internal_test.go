package sqlstore

import (
	"context"
	"slices"
	"testing"

	"github.com/decnet/servicelive"
)

// TestOutboxQuarantineLeaseRelease checks, on both databases, that an
// undecodable row is quarantined (the events around it still come out),
// that a claim's lease runs OutboxLease on the database's clock, and that
// ReleaseEvents frees a handle's claims for another handle at once.
func TestOutboxQuarantineLeaseRelease(t *testing.T) {
	onEachDatabase(t, func(t *testing.T, driver, dsn string) {
		ctx := context.Background()
		var handles [2]*Store
		for i := range handles {
			s, err := Open(ctx, driver, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			handles[i] = s
		}
		a, b := handles[0], handles[1]
		ids := []string{servicelive.NewEventID(), servicelive.NewEventID(), servicelive.NewEventID()}
		for _, id := range []string{ids[0], ids[2]} {
			if err := a.AppendEvent(ctx, servicelive.Event{ID: id, Kind: servicelive.ServiceAdded, Decky: "web1", Service: "ssh"}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := a.db.ExecContext(ctx, a.query(`INSERT INTO servicelive_outbox (id, doc) VALUES ($1, '{"id": "trunc')`), ids[1]); err != nil {
			t.Fatal(err)
		}
		claim := func(s *Store) []string {
			t.Helper()
			es, err := s.PendingEvents(ctx, 10)
			if err != nil {
				t.Fatalf("PendingEvents: %v", err)
			}
			got := []string{}
			for _, e := range es {
				got = append(got, e.ID)
			}
			return got
		}
		want := []string{ids[0], ids[2]}
		if got := claim(a); !slices.Equal(got, want) {
			t.Fatalf("PendingEvents with an undecodable row = %v, want %v", got, want)
		}
		var owner string
		if err := a.db.QueryRowContext(ctx, a.query(`SELECT owner FROM servicelive_outbox WHERE id = $1`), ids[1]).Scan(&owner); err != nil || owner != QuarantineOwner {
			t.Errorf("the undecodable row's owner = %q (%v), want %q", owner, err, QuarantineOwner)
		}
		now := pgNowMillis
		if a.d != postgres {
			now = sqliteNowMillis
		}
		var left int64
		if err := a.db.QueryRowContext(ctx, a.query(`SELECT lease_until - `+now+` FROM servicelive_outbox WHERE id = $1`), ids[0]).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if lease := OutboxLease.Milliseconds(); left > lease || left < lease-5000 {
			t.Errorf("lease left on the database's clock: %d ms, want about %d", left, lease)
		}
		if got := claim(b); len(got) != 0 {
			t.Fatalf("another handle got %v while leased", got)
		}
		if err := a.ReleaseEvents(ctx); err != nil {
			t.Fatal(err)
		}
		if got := claim(b); !slices.Equal(got, want) {
			t.Fatalf("another handle got %v after the release, want %v at once", got, want)
		}
	})
}
