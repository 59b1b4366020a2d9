package sqlstore

import (
	"context"
	"sync"
)

// keyLock is a set of mutexes keyed by string, created on first use and
// freed when their last holder or waiter leaves. Lock honours ctx while
// waiting. A zero keyLock is ready to use.
type keyLock struct {
	mu    sync.Mutex
	locks map[string]*keyEntry
}

type keyEntry struct {
	ch   chan struct{} // holds one token while the key is locked
	refs int           // holders plus waiters
}

// memLocks holds the decky locks of every in-memory SQLite database of the
// process, keyed by the database's identity and the decky's lock name.
var memLocks keyLock

// Lock acquires key, waiting until it is free or ctx is done (then it
// returns ctx.Err()). On success it returns the function that releases key.
func (l *keyLock) Lock(ctx context.Context, key string) (unlock func(), err error) {
	l.mu.Lock()
	if l.locks == nil {
		l.locks = make(map[string]*keyEntry)
	}
	e := l.locks[key]
	if e == nil {
		e = &keyEntry{ch: make(chan struct{}, 1)}
		l.locks[key] = e
	}
	e.refs++
	l.mu.Unlock()

	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; l.leave(key, e) }, nil
	case <-ctx.Done():
		l.leave(key, e)
		return nil, ctx.Err()
	}
}

func (l *keyLock) leave(key string, e *keyEntry) {
	l.mu.Lock()
	if e.refs--; e.refs == 0 {
		delete(l.locks, key)
	}
	l.mu.Unlock()
}

// len reports how many keys are held or awaited (for tests).
func (l *keyLock) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.locks)
}
