package servicelive

import "context"

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
