package hosts_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	sl "github.com/decnet/servicelive"
	"github.com/decnet/servicelive/dockercompose"
	"github.com/decnet/servicelive/internal/dockerdtest"
	"github.com/decnet/servicelive/internal/enginetest"
)

// Benchmarks of dockercompose.Hosts on two real engines (the local one and
// the second dockerd of dockerdtest, on the same machine). Plain `go test`
// does not run them:
//
//	go test -run='^$' -bench='^BenchmarkHosts' -count=6 -benchtime=20x ./integration/hosts/
//
// Each top-level benchmark runs its variants one after the other within
// each -count round, so the variants interleave.

// BenchmarkHostsAddRemove: one AddService + RemoveService pair on a
// deployed decky of the local engine, through a single Composer and through
// a Hosts routing the decky's host to that same engine. The difference is
// the routing's cost.
func BenchmarkHostsAddRemove(b *testing.B) {
	api, image := enginetest.Require(b)
	socket := api.DaemonHost()
	for _, variant := range []string{"composer", "hosts"} {
		b.Run("via="+variant, func(b *testing.B) {
			var composer sl.Composer
			host := ""
			switch variant {
			case "composer":
				c, err := dockercompose.New(dockercompose.WithHost(socket))
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				composer = c
			case "hosts":
				h, err := dockercompose.NewHosts(func(string) ([]dockercompose.Option, error) {
					return []dockercompose.Option{dockercompose.WithHost(socket)}, nil
				})
				if err != nil {
					b.Fatal(err)
				}
				defer h.Close()
				composer, host = h, "site-a"
			}
			m, project := benchManager(b, image, composer, []sl.Decky{{Name: "bench1", Image: image, Host: host}})
			defer removeProject(context.Background(), nil, api, project)
			ctx := context.Background()
			if err := m.Deploy(ctx, ""); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := m.AddService(ctx, sl.FleetDecky("bench1"), "ssh"); err != nil {
					b.Fatal(err)
				}
				if _, err := m.RemoveService(ctx, sl.FleetDecky("bench1"), "ssh"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHostsDeploy: Deploy of 40 deckies (a base each) on one engine,
// against 2 × 20 on two engines through a Hosts. Both engines are private
// dockerds (dockerdtest), so that the benchmark neither disturbs nor is
// disturbed by the local engine's other users; 1×40 runs on the first.
// Each iteration deploys on empty engines; the teardown is not timed.
func BenchmarkHostsDeploy(b *testing.B) {
	d, image := dockerdtest.Require(b)
	api, _ := enginetest.Require(b)
	d2, err := dockerdtest.Start(context.Background(), api, image)
	if err != nil {
		b.Fatal(err)
	}
	defer d2.Close()
	daemons := map[string]*dockerdtest.Daemon{"b": d, "c": d2}
	for _, variant := range []string{"1x40", "2x20"} {
		b.Run("engines="+variant, func(b *testing.B) {
			h, err := dockercompose.NewHosts(func(host string) ([]dockercompose.Option, error) {
				return []dockercompose.Option{dockercompose.WithHost(daemons[host].Host)}, nil
			})
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			var deckies []sl.Decky
			for i := range 40 {
				dk := sl.Decky{Name: fmt.Sprintf("d%02d", i), Image: image, Host: "b"}
				if variant == "2x20" && i%2 == 1 {
					dk.Host = "c"
				}
				deckies = append(deckies, dk)
			}
			m, _ := benchManager(b, image, h, deckies)
			ctx := context.Background()
			defer m.Teardown(ctx, "")
			b.ResetTimer()
			for range b.N {
				if err := m.Deploy(ctx, ""); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				// Docker 20.10 under load sometimes keeps a stale endpoint of
				// a container just removed, and then refuses to remove the
				// network for good: once the containers are gone, the next
				// Deploy reuses the network.
				if err := m.Teardown(ctx, ""); err != nil {
					p, perr := m.Project(ctx, "")
					if perr != nil {
						b.Fatal(perr)
					}
					if cs, lerr := h.Containers(ctx, p); lerr != nil || len(cs) > 0 {
						b.Fatalf("teardown: %v; %d containers left (%v)", err, len(cs), lerr)
					}
					b.Logf("teardown left the network: %v", err)
				}
				time.Sleep(time.Second) // let the engines settle
				b.StartTimer()
			}
		})
	}
}

// benchManager returns a Manager over composer and deckies (the fleet of a
// project of its own) with the ssh banner service, and the project's name.
func benchManager(b *testing.B, image string, composer sl.Composer, deckies []sl.Decky) (*sl.Manager, string) {
	b.Helper()
	reg := registry(b, image)
	project := randomName("slbhost")
	m, err := sl.New(sl.NewMemoryStore(map[string][]sl.Decky{"": deckies}), composer, reg, sl.WithFleetProject(project))
	if err != nil {
		b.Fatal(err)
	}
	return m, project
}
