package servicelive

import (
	"cmp"
	"context"
	"fmt"
	"slices"
)

// DeckyLocker is implemented by a Store that can serialise the mutations of
// one decky across every handle and every process sharing the store.
//
// The Manager takes a decky's lock around each of its mutations (AddService,
// RemoveService, and the per-decky work of Deploy and Reconcile, compose
// files included) after its own in-process lock; an AddService also takes the
// locks of the deckies whose names its compose key could collide with, in
// sorted order. With a Store that is not a DeckyLocker the Manager's
// in-process lock is all there is: mutations of one decky are serialised
// within the Manager only, and Store.Update stays the only guarantee across
// processes (see the README's "Running several processes").
//
// FileStore and the SQL stores (package sqlstore) implement it.
type DeckyLocker interface {
	// LockDecky waits until the caller holds the lock of ref, or ctx is
	// done (then it returns an error matching ctx.Err()). The decky need
	// not exist. unlock releases the lock and must be called exactly once.
	// The lock is not reentrant: a holder that asks again for the same ref
	// waits for itself.
	LockDecky(ctx context.Context, ref Ref) (unlock func(), err error)
}

// lockDeckies takes the locks of refs in a fixed order (sorted, duplicates
// once), so that two callers locking overlapping sets never deadlock: for
// each, the Manager's in-process lock first (callers of one Manager queue
// in memory), then the Store's own lock when it is a DeckyLocker. It returns
// the function that releases them all, in reverse order. If a lock cannot
// be had (ctx done, store error, a panic of the store) every lock already
// taken is released.
func (m *Manager) lockDeckies(ctx context.Context, refs ...Ref) (unlock func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err // a done ctx never gets a lock, even a free one
	}
	slices.SortFunc(refs, func(a, b Ref) int {
		return cmp.Or(cmp.Compare(a.Topology, b.Topology), cmp.Compare(a.Decky, b.Decky))
	})
	refs = slices.Compact(refs)
	held := make([]func(), 0, 2*len(refs))
	release := func() {
		for i := len(held) - 1; i >= 0; i-- {
			held[i]()
		}
	}
	ok := false
	defer func() {
		if !ok {
			release()
		}
	}()
	for _, ref := range refs {
		u, err := m.locks.Lock(ctx, ref.String())
		if err != nil {
			return nil, err
		}
		held = append(held, u)
		if m.locker == nil {
			continue
		}
		if u, err = m.locker.LockDecky(ctx, ref); err != nil {
			return nil, fmt.Errorf("lock %s: %w", ref, err)
		}
		held = append(held, u)
	}
	ok = true
	return release, nil
}
