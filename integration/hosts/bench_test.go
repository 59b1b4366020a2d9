package hosts_test

import (
	"context"
	"fmt"
	"slices"
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
//	go test -run='^$' -bench='^BenchmarkHostsAddRemove$' -count=5 -benchtime=40x ./integration/hosts/
//	go test -run='^$' -bench='^BenchmarkHostsDeploy$' -count=6 -benchtime=2x ./integration/hosts/

// BenchmarkHostsAddRemove: one AddService + RemoveService pair on a
// deployed decky of the local engine, through a single Composer and through
// a Hosts routing the decky's host to that same engine. Each iteration runs
// one pair of each, in alternating order, so that both see the same load;
// it reports the median pair of each (composer-ms, hosts-ms) and the median
// of the per-iteration differences (diff-ms: the routing's cost plus noise).
func BenchmarkHostsAddRemove(b *testing.B) {
	api, image := enginetest.Require(b)
	socket := api.DaemonHost()
	c, err := dockercompose.New(dockercompose.WithHost(socket))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	h, err := dockercompose.NewHosts(func(string) ([]dockercompose.Option, error) {
		return []dockercompose.Option{dockercompose.WithHost(socket)}, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	ctx := context.Background()
	viaComposer, p1 := benchManager(b, image, c, []sl.Decky{{Name: "bench1", Image: image}})
	defer removeProject(ctx, nil, api, p1)
	viaHosts, p2 := benchManager(b, image, h, []sl.Decky{{Name: "bench1", Image: image, Host: "site-a"}})
	defer removeProject(ctx, nil, api, p2)
	for _, m := range []*sl.Manager{viaComposer, viaHosts} {
		if err := m.Deploy(ctx, ""); err != nil {
			b.Fatal(err)
		}
	}
	pair := func(m *sl.Manager) time.Duration {
		t0 := time.Now()
		if _, err := m.AddService(ctx, sl.FleetDecky("bench1"), "ssh"); err != nil {
			b.Fatal(err)
		}
		if _, err := m.RemoveService(ctx, sl.FleetDecky("bench1"), "ssh"); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	var tc, th, diff []float64
	b.ResetTimer()
	for i := range b.N {
		var dc, dh time.Duration
		if i%2 == 0 {
			dc, dh = pair(viaComposer), pair(viaHosts)
		} else {
			dh, dc = pair(viaHosts), pair(viaComposer)
		}
		tc = append(tc, ms(dc))
		th = append(th, ms(dh))
		diff = append(diff, ms(dh)-ms(dc))
	}
	b.ReportMetric(median(tc), "composer-ms")
	b.ReportMetric(median(th), "hosts-ms")
	b.ReportMetric(median(diff), "diff-ms")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
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
