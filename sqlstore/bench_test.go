package sqlstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/decnet/servicelive"
)

// BenchmarkUpdate measures Update on each database with 1 and 8 writers
// (goroutines of one Store), each writer on a decky of its own
// ("deckies=own", the Manager's usual load: it serialises the mutations of
// one decky) or all on one decky ("deckies=one"). ns/op is wall time per
// Update of the whole group. The PostgreSQL server of the tests runs with
// fsync off (see internal/pgtest); set PG_DSN to measure a real one.
func BenchmarkUpdate(b *testing.B) {
	for _, be := range backends {
		for _, writers := range []int{1, 8} {
			for _, shared := range []bool{false, true} {
				if writers == 1 && shared {
					continue
				}
				which := "own"
				if shared {
					which = "one"
				}
				b.Run(fmt.Sprintf("%s/writers=%d/deckies=%s", be.name, writers, which), func(b *testing.B) {
					benchUpdate(b, be, writers, shared)
				})
			}
		}
	}
}

func benchUpdate(b *testing.B, be backend, writers int, shared bool) {
	s := openFresh(b, be)
	ctx := context.Background()
	refs := make([]servicelive.Ref, writers)
	for i := range refs {
		name := fmt.Sprintf("web%d", i)
		if shared {
			name = "web0"
		}
		refs[i] = servicelive.FleetDecky(name)
		if err := s.Put(ctx, "", servicelive.Decky{
			Name: name, Image: "alpine:3.20", Services: []string{"ssh", "http"},
			Config: map[string]servicelive.Config{"ssh": {"port": 22, "users": []string{"root"}}, "http": {"port": 80}},
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	var (
		wg   sync.WaitGroup
		next = make(chan struct{}, 64)
	)
	for w := range writers {
		wg.Go(func() {
			for range next {
				if _, err := s.Update(ctx, refs[w], bump); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	for range b.N {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
}

// bump is the change each benchmarked Update makes: one config value.
func bump(d *servicelive.Decky) error {
	p, _ := d.Config["http"]["port"].(int)
	d.Config["http"]["port"] = p + 1
	return nil
}
