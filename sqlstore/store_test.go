package sqlstore_test

import (
	"testing"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
	"github.com/decnet/servicelive/sqlstore"
)

// TestStore runs the Store conformance suite on each database, every store
// on a fresh database, with a second handle on it for the checks of what
// two processes see of each other.
func TestStore(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		servicelivetest.TestStore(t, func(t *testing.T, sd map[string][]servicelive.Decky) servicelive.Store {
			s := openFresh(t, b)
			seed(t, s, sd)
			return s
		}, servicelivetest.WithReopen(func(t *testing.T, s servicelive.Store) servicelive.Store {
			return reopen(t, s.(*sqlstore.Store))
		}))
	})
}
