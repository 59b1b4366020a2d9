package servicelivetest_test

import (
	"context"
	"sync"
	"testing"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
)

// TestTestStore runs the suite on the reference implementation, so that a
// change to the suite that no correct store can pass shows up here first;
// and on a MemoryStore with a DeckyLocker, so that the locker checks, which
// the stores of this module may not reach yet, run too.
func TestTestStore(t *testing.T) {
	newMemoryStore := func(t *testing.T, seed map[string][]servicelive.Decky) servicelive.Store {
		return servicelive.NewMemoryStore(seed)
	}
	t.Run("MemoryStore", func(t *testing.T) {
		servicelivetest.TestStore(t, newMemoryStore)
	})
	t.Run("MemoryStore reopened", func(t *testing.T) {
		// The second handle on a MemoryStore is the store itself.
		servicelivetest.TestStore(t, newMemoryStore, servicelivetest.WithReopen(func(t *testing.T, s servicelive.Store) servicelive.Store {
			return s
		}))
	})
	newLockingStore := func(t *testing.T, seed map[string][]servicelive.Decky) servicelive.Store {
		return &lockingStore{MemoryStore: servicelive.NewMemoryStore(seed), locks: new(refLocks)}
	}
	t.Run("locking", func(t *testing.T) {
		servicelivetest.TestStore(t, newLockingStore)
	})
	t.Run("locking reopened", func(t *testing.T) {
		servicelivetest.TestStore(t, newLockingStore, servicelivetest.WithReopen(func(t *testing.T, s servicelive.Store) servicelive.Store {
			ls := s.(*lockingStore)
			return &lockingStore{MemoryStore: ls.MemoryStore, locks: ls.locks}
		}))
	})
}

// lockingStore is a MemoryStore that is a DeckyLocker. A second handle on
// it is another lockingStore sharing the MemoryStore and the locks.
type lockingStore struct {
	*servicelive.MemoryStore
	locks *refLocks
}

var _ servicelive.DeckyLocker = (*lockingStore)(nil)

func (s *lockingStore) LockDecky(ctx context.Context, ref servicelive.Ref) (unlock func(), err error) {
	return s.locks.lock(ctx, ref)
}

// refLocks is a mutex per Ref, created on first use, whose Lock honours
// ctx. A zero refLocks is ready to use.
type refLocks struct {
	mu    sync.Mutex
	locks map[servicelive.Ref]chan struct{} // holds one token while ref is locked
}

func (l *refLocks) lock(ctx context.Context, ref servicelive.Ref) (unlock func(), err error) {
	l.mu.Lock()
	if l.locks == nil {
		l.locks = make(map[servicelive.Ref]chan struct{})
	}
	ch := l.locks[ref]
	if ch == nil {
		ch = make(chan struct{}, 1)
		l.locks[ref] = ch
	}
	l.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
