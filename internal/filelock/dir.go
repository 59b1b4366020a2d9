package filelock

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/decnet/servicelive/internal/keylock"
)

// Dir hands out exclusive locks named by strings, one lock file per name in
// one directory, shared by every Dir on that directory in any process.
//
// Callers of one Dir queue in the process first (honouring ctx), so that at
// most one of them per name waits in the kernel: a waiter costs a goroutine,
// not a blocked thread and a file descriptor.
//
// Lock files are never removed (removing a flock file while another process
// waits on it would let two holders in); there is one per name ever locked.
type Dir struct {
	path  string
	local keylock.Map // the callers of this Dir, per name
}

// NewDir returns a Dir on the directory at path, creating it (mode 0700) if
// needed.
func NewDir(path string) (*Dir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("lock directory: %w", err)
	}
	return &Dir{path: path}, nil
}

// Path returns the directory's path.
func (d *Dir) Path() string { return d.path }

// Lock takes the lock called name, waiting until it is held or ctx is done.
// name must be a plain file name (no "/", not "." or ".."). On success it
// returns the function that releases the lock.
func (d *Dir) Lock(ctx context.Context, name string) (unlock func(), err error) {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return nil, fmt.Errorf("lock: bad name %q", name)
	}
	unlockLocal, err := d.local.Lock(ctx, name)
	if err != nil {
		return nil, err
	}
	release, err := Lock(ctx, filepath.Join(d.path, name+".lock"), false)
	if err != nil {
		unlockLocal()
		return nil, err
	}
	return func() {
		release()
		unlockLocal()
	}, nil
}

// RefName returns the lock name of a decky: "fleet.<decky>" or
// "topology.<id>.<decky>". Neither a decky name nor a topology ID holds a
// ".", so distinct deckies never share a name.
func RefName(topology, decky string) string {
	if topology == "" {
		return "fleet." + decky
	}
	return "topology." + topology + "." + decky
}
