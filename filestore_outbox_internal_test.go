package servicelive

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestFileOutboxQuarantine: an undecodable event file is renamed aside and
// the events around it still come out.
func TestFileOutboxQuarantine(t *testing.T) {
	s, err := OpenFileStore(filepath.Join(t.TempDir(), "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var ids []string
	for range 3 {
		ids = append(ids, NewEventID())
	}
	for _, id := range []string{ids[0], ids[2]} {
		if err := s.AppendEvent(ctx, Event{ID: id, Kind: ServiceAdded, Decky: "web1", Service: "ssh"}); err != nil {
			t.Fatal(err)
		}
	}
	bad := filepath.Join(s.outboxDir(), ids[1]+".json")
	if err := os.WriteFile(bad, []byte(`{"id": "trunc`), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 2 { // quarantined once, then gone from the list
		es, err := s.PendingEvents(ctx, 10)
		if err != nil {
			t.Fatalf("PendingEvents with an undecodable file: %v", err)
		}
		var got []string
		for _, e := range es {
			got = append(got, e.ID)
		}
		if want := []string{ids[0], ids[2]}; !slices.Equal(got, want) {
			t.Fatalf("PendingEvents = %v, want %v", got, want)
		}
	}
	if _, err := os.Stat(bad + ".bad"); err != nil {
		t.Errorf("the undecodable file was not set aside: %v", err)
	}
}

// TestFileOutboxSyncsParent: creating the outbox directory fsyncs its
// parent, once.
func TestFileOutboxSyncsParent(t *testing.T) {
	dir := t.TempDir()
	var synced []string
	syncDir = func(d string) error { synced = append(synced, d); return nil }
	defer func() { syncDir = realSyncDir }()
	s, err := OpenFileStore(filepath.Join(dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	synced = nil
	for range 2 {
		if err := s.AppendEvent(context.Background(), Event{ID: NewEventID(), Kind: ServiceAdded, Decky: "web1", Service: "ssh"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := slices.Index(synced, dir); n < 0 || slices.Index(synced[n+1:], dir) >= 0 {
		t.Errorf("fsynced directories %q: want the outbox's parent %s once", synced, dir)
	}
}
