package servicelive

import "context"

// Store is the source of truth for deckies: the fleet ("" topology) and any
// number of topologies. Implementations must be safe for concurrent use.
//
// The fleet scope always exists: List("") of an empty fleet returns an empty
// slice and no error. Config values are string, int, bool or []string, and
// every Store returns them with the Go types it was given.
//
// servicelivetest.TestStore checks any implementation against this contract.
type Store interface {
	// Get returns one decky; a missing topology or decky is an error matching ErrNotFound.
	Get(ctx context.Context, ref Ref) (Decky, error)
	// List returns every decky of one scope (topology "" = fleet), in a stable order;
	// a missing topology matches ErrNotFound.
	List(ctx context.Context, topology string) ([]Decky, error)
	// Update runs fn on the stored decky and saves the result atomically with respect
	// to every other Update of the same store (other processes included, for stores
	// that can be shared). fn may run more than once. If fn returns an error nothing
	// is written and Update returns that error unchanged. Missing: ErrNotFound.
	// fn cannot rename the decky: a changed Name is an error and nothing is written.
	Update(ctx context.Context, ref Ref, fn func(*Decky) error) (Decky, error)
}
