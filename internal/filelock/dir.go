package filelock

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
	path string

	mu    sync.Mutex
	names map[string]*entry
}

type entry struct {
	token chan struct{} // holds one token while a caller of this Dir has the name
	refs  int           // holders plus waiters
}

// NewDir returns a Dir on the directory at path, creating it (mode 0700) if
// needed.
func NewDir(path string) (*Dir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("lock directory: %w", err)
	}
	return &Dir{path: path, names: make(map[string]*entry)}, nil
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
	d.mu.Lock()
	e := d.names[name]
	if e == nil {
		e = &entry{token: make(chan struct{}, 1)}
		d.names[name] = e
	}
	e.refs++
	d.mu.Unlock()

	select {
	case e.token <- struct{}{}:
	case <-ctx.Done():
		d.leave(name, e)
		return nil, ctx.Err()
	}
	release, err := Lock(ctx, filepath.Join(d.path, name+".lock"), false)
	if err != nil {
		<-e.token
		d.leave(name, e)
		return nil, err
	}
	return func() {
		release()
		<-e.token
		d.leave(name, e)
	}, nil
}

func (d *Dir) leave(name string, e *entry) {
	d.mu.Lock()
	if e.refs--; e.refs == 0 {
		delete(d.names, name)
	}
	d.mu.Unlock()
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
