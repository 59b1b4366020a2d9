// Package keylock provides mutexes keyed by string whose Lock honours a
// context.
package keylock

import (
	"context"
	"sync"
)

// Map is a set of mutexes keyed by string, created on first use and freed
// when their last holder or waiter leaves. A zero Map is ready to use; a Map
// must not be copied after first use.
type Map struct {
	mu    sync.Mutex
	locks map[string]*entry
}

type entry struct {
	ch   chan struct{} // holds one token while the key is locked
	refs int           // holders plus waiters
}

// Lock acquires key, waiting until it is free or ctx is done (then it
// returns ctx.Err()). On success it returns the function that releases key;
// call it exactly once.
func (l *Map) Lock(ctx context.Context, key string) (unlock func(), err error) {
	l.mu.Lock()
	if l.locks == nil {
		l.locks = make(map[string]*entry)
	}
	e := l.locks[key]
	if e == nil {
		e = &entry{ch: make(chan struct{}, 1)}
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

func (l *Map) leave(key string, e *entry) {
	l.mu.Lock()
	if e.refs--; e.refs == 0 {
		delete(l.locks, key)
	}
	l.mu.Unlock()
}

// Len reports how many keys are held or awaited.
func (l *Map) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.locks)
}
