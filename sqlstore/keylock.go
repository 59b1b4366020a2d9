package sqlstore

import "github.com/decnet/servicelive/internal/keylock"

// memLocks holds the decky locks of every in-memory SQLite database of the
// process, keyed by the database's identity and the decky's lock name.
var memLocks keylock.Map
