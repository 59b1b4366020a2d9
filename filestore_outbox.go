package servicelive

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/decnet/servicelive/internal/atomicfile"
)

var _ Outbox = (*FileStore)(nil)

// outboxDir is the directory of the Outbox of s: "<path>.outbox".
func (s *FileStore) outboxDir() string { return s.path + ".outbox" }

// AppendEvent writes e to "<path>.outbox/<e.ID>.json" (mode 0600), atomically
// and durably (the file and the directory are fsynced), creating the
// directory (mode 0700) if needed. See Outbox.
func (s *FileStore) AppendEvent(ctx context.Context, e Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !validEventID(e.ID) {
		return s.errorf("outbox: bad event ID %q", e.ID)
	}
	data, err := json.Marshal(e)
	if err != nil {
		return s.errorf("outbox: encode event %s: %w", e.ID, err)
	}
	dir := s.outboxDir()
	if err := s.makeOutboxDir(dir); err != nil {
		return s.errorf("outbox: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, e.ID+".json"), data, 0o600); err != nil {
		return s.errorf("outbox: %w", err)
	}
	return nil
}

// makeOutboxDir creates dir if missing and then fsyncs its parent, so that
// the directory survives an OS crash along with the event files in it.
func (s *FileStore) makeOutboxDir(dir string) error {
	err := os.Mkdir(dir, 0o700)
	switch {
	case errors.Is(err, fs.ErrExist):
		return nil
	case err != nil:
		return err
	}
	return syncDir(filepath.Dir(dir))
}

// syncDir fsyncs a directory (a variable for the tests).
var syncDir = realSyncDir

// realSyncDir is atomicfile.SyncDir.
var realSyncDir = atomicfile.SyncDir

// PendingEvents returns up to limit events of the outbox directory, by ID.
// It claims nothing: several processes sharing the file may publish the
// same event (at least once; consumers deduplicate by ID). A file that
// cannot be parsed as the event of its name is quarantined: renamed
// "<id>.json.bad" (left for an operator) and skipped, so that the events
// after it flow.
func (s *FileStore) PendingEvents(ctx context.Context, limit int) ([]Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(s.outboxDir()) // sorted by name, so by ID
	if errors.Is(err, fs.ErrNotExist) {
		return []Event{}, nil
	}
	if err != nil {
		return nil, s.errorf("outbox: %w", err)
	}
	out := []Event{}
	for _, ent := range entries {
		if len(out) >= limit {
			break
		}
		id, ok := strings.CutSuffix(ent.Name(), ".json")
		if !ok || !validEventID(id) {
			continue // a temporary file of a write in progress, or not ours
		}
		data, err := os.ReadFile(filepath.Join(s.outboxDir(), ent.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, s.errorf("outbox: %w", err)
		}
		var e Event
		if err := json.Unmarshal(data, &e); err != nil || e.ID != id {
			name := filepath.Join(s.outboxDir(), ent.Name())
			if err := os.Rename(name, name+".bad"); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, s.errorf("outbox: quarantine the undecodable event file %s: %w", ent.Name(), err)
			}
			continue
		}
		out = append(out, e)
	}
	return out, nil
}

// DeleteEvents removes the files of these events from the outbox
// directory. An event deleted just before an OS crash may come back
// (and be published again); never the other way round.
func (s *FileStore) DeleteEvents(ctx context.Context, ids ...string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, id := range ids {
		if !validEventID(id) {
			continue
		}
		if err := os.Remove(filepath.Join(s.outboxDir(), id+".json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return s.errorf("outbox: %w", err)
		}
	}
	return nil
}

// validEventID reports whether id can name a file of the outbox: a
// non-empty string of letters, digits and "-", as NewEventID makes.
func validEventID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
