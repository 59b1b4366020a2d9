package servicelivetest_test

import (
	"testing"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
)

// TestTestStore runs the suite on the reference implementation, so that a
// change to the suite that no correct store can pass shows up here first.
func TestTestStore(t *testing.T) {
	servicelivetest.TestStore(t, func(t *testing.T, seed map[string][]servicelive.Decky) servicelive.Store {
		return servicelive.NewMemoryStore(seed)
	})
}
