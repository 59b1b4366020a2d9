package sqlstore_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
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

// TestConcurrentUpdatesTwoHandles checks that Updates of one decky made at
// once through two handles on one database (as two processes would) lose
// nothing, and that each handle sees them all.
func TestConcurrentUpdatesTwoHandles(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		a := openFresh(t, b)
		handles := []*sqlstore.Store{a, reopen(t, a)}
		seed(t, a, map[string][]servicelive.Decky{"t1": {{Name: "web1"}}})
		ref := servicelive.TopologyDecky("t1", "web1")
		const goroutines, each = 8, 10
		var wg sync.WaitGroup
		for g := range goroutines {
			s := handles[g%2]
			wg.Go(func() {
				for i := range each {
					token := fmt.Sprintf("g%d-%d", g, i)
					if _, err := s.Update(context.Background(), ref, func(d *servicelive.Decky) error {
						d.Services = append(d.Services, token)
						return nil
					}); err != nil {
						t.Errorf("Update adding %s: %v", token, err)
						return
					}
				}
			})
		}
		wg.Wait()
		for i, s := range handles {
			d, err := s.Get(context.Background(), ref)
			if err != nil {
				t.Fatal(err)
			}
			got := slices.Sorted(slices.Values(d.Services))
			var want []string
			for g := range goroutines {
				for i := range each {
					want = append(want, fmt.Sprintf("g%d-%d", g, i))
				}
			}
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("handle %d sees %d services, want the %d tokens each once", i, len(got), len(want))
			}
		}
	})
}
