package bench

import (
	"context"
	"fmt"
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	sl "github.com/decnet/servicelive"
	"github.com/decnet/servicelive/internal/testimage"
)

// Environment variables of BenchmarkFleetScale.
const (
	envScaleSizes  = "SERVICELIVE_BENCH_SCALE_SIZES"  // other containers per project, e.g. "500,2000" (the empty project is always there)
	envScaleRounds = "SERVICELIVE_BENCH_SCALE_ROUNDS" // paired rounds per phase (default 15)
)

// BenchmarkFleetScale measures what an add and a remove cost (Manager
// AddService / RemoveService, dockercompose defaults) as the project, and
// the engine, fill with other containers. One decky "a" in each of three
// scopes (compose projects) of one engine: the first holds only the
// decky's base, the others also hold 500 and 2,000 other containers
// (SERVICELIVE_BENCH_SCALE_SIZES), created and never started, labelled
// with the project and the labels of the library's own container as
// another decky's would be (created-but-stopped containers are in every
// `all` listing as much as running ones, and cost the engine no process).
//
// Two phases of SERVICELIVE_BENCH_SCALE_ROUNDS paired rounds (default 15),
// each round adding and removing the service on every scope back to back,
// in rotating order: first before the other containers exist (the three
// scopes are alike: the noise floor), then with them all. The ratio of a
// size to the empty scope is the median of per-round ratios; the empty
// scope's own figures before and after say what the engine's size costs.
// b.N is ignored.
func BenchmarkFleetScale(b *testing.B) {
	sizes := envInts(b, envScaleSizes, []int{500, 2000})
	rounds := envInt(b, envScaleRounds, 15)
	scopes := append([]int{0}, sizes...)
	deckies := map[string][]sl.Decky{}
	topo := func(n int) string { return fmt.Sprintf("s%d", n) }
	for _, n := range scopes {
		deckies[topo(n)] = []sl.Decky{{Name: "a"}}
	}
	e := setup(b, deckies)
	ctx := e.ctx
	c := e.composer(b)
	m := e.manager(b, c)

	type scope struct {
		n          int
		ref        sl.Ref
		project    string
		addr       string
		p          *path
		adds, rems [2]series // per phase
	}
	var scs []*scope
	for _, n := range scopes {
		if err := m.Deploy(ctx, topo(n)); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = m.Teardown(context.Background(), topo(n)) })
		s := &scope{n: n, ref: sl.TopologyDecky(topo(n), "a"), project: m.ProjectName(topo(n))}
		addr, err := bannerAddr(ctx, e, s.project+".a")
		if err != nil {
			b.Fatal(err)
		}
		s.addr = addr
		s.p = &path{
			name:   topo(n),
			add:    func() error { _, err := m.AddService(ctx, s.ref, serviceName); return err },
			remove: func() error { _, err := m.RemoveService(ctx, s.ref, serviceName); return err },
		}
		// Warm-up.
		if err := runOnce(ctx, s.p, s.addr, false); err != nil {
			b.Fatal(err)
		}
		scs = append(scs, s)
	}
	measure := func(phase int) {
		for r := range rounds {
			for i := range scs {
				s := scs[(r+i)%len(scs)]
				s.p.adds, s.p.rems = nil, nil
				if err := runOnce(ctx, s.p, s.addr, true); err != nil {
					b.Fatalf("phase %d round %d: %v", phase, r+1, err)
				}
				s.adds[phase] = append(s.adds[phase], s.p.adds[0])
				s.rems[phase] = append(s.rems[phase], s.p.rems[0])
			}
		}
	}
	measure(0)

	// The other containers, labelled as another decky's service container
	// of the scope (the labels of the library's own container).
	if err := scs[0].p.add(); err != nil {
		b.Fatal(err)
	}
	spec, err := e.rawSpecOf(ctx, containerName(scs[0].project, "a", serviceName), "unused")
	if err != nil {
		b.Fatal(err)
	}
	if err := scs[0].p.remove(); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	total := 0
	type job struct {
		project string
		i       int
	}
	var jobs []job
	for _, s := range scs[1:] {
		for i := range s.n {
			jobs = append(jobs, job{s.project, i})
		}
		total += s.n
	}
	sem := make(chan struct{}, 8)
	if _, err := all(len(jobs), func(k int) error {
		sem <- struct{}{}
		defer func() { <-sem }()
		j := jobs[k]
		cfg := *spec.cfg
		cfg.Labels = maps.Clone(spec.cfg.Labels)
		cfg.Labels["com.docker.compose.project"] = j.project
		cfg.Labels["com.docker.compose.service"] = fmt.Sprintf("filler%04d-%s", j.i, serviceName)
		cfg.Labels[sl.LabelDecky] = fmt.Sprintf("filler%04d", j.i)
		cfg.Cmd = testimage.Command(testimage.ModeBase)
		cfg.Hostname = ""
		_, err := e.api.ContainerCreate(ctx, client.ContainerCreateOptions{Config: &cfg, Name: fmt.Sprintf("%s.filler%04d", j.project, j.i)})
		return err
	}); err != nil {
		b.Fatalf("other containers: %v", err)
	}
	fillTook := time.Since(t0)
	engineHolds := func() int {
		res, err := e.api.ContainerList(ctx, client.ContainerListOptions{All: true})
		if err != nil {
			b.Fatal(err)
		}
		return len(res.Items)
	}
	holds := engineHolds()
	// What a label-filtered listing of each project costs now (what the
	// Compose SDK's observed state cost before the lookups by name).
	lists := map[int]time.Duration{}
	for _, s := range scs {
		var ts series
		for range 5 {
			t := time.Now()
			if _, err := e.api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", composeLabel+"="+s.project)}); err != nil {
				b.Fatal(err)
			}
			ts = append(ts, time.Since(t))
		}
		lists[s.n] = ts.median()
	}
	measure(1)
	b.StopTimer()

	var rep report
	rep.f("## Fleet scale: add and remove with 0, %v other containers in the project\n\n", sizes)
	rep.f("`BenchmarkFleetScale`: `AddService` + `RemoveService` (dockercompose defaults) of one service on decky `a` of %d scopes (compose projects) of one engine, holding %v other containers besides the decky's base. The other containers are created and never started, labelled with their scope's project and the labels of the library's container with another decky and service (%d created with the Engine API, 8 at a time, in %s s). %d paired rounds per phase; in each round every scope gets its add and remove back to back, in rotating order. Phase 1: before the other containers exist; phase 2: with them (the engine then holds %d containers in all, other work included).\n\n",
		len(scs), scopes, total, fmt.Sprintf("%.1f", fillTook.Seconds()), rounds, holds)
	rep.f("| scope holds (besides its base) | phase | add | remove | add / empty scope's | remove / empty scope's | label-filtered listing of the project |\n|---:|---|---:|---:|---:|---:|---:|\n")
	base := scs[0]
	for phase, label := range []string{"1: others absent", "2: others present"} {
		for _, s := range scs {
			listing := "–"
			if phase == 1 {
				listing = ms(lists[s.n]) + " ms"
			}
			rep.f("| %d | %s | %s | %s | %.3f | %.3f | %s |\n", s.n, label, ms(s.adds[phase].median()), ms(s.rems[phase].median()),
				pairedRatio(s.adds[phase], base.adds[phase]), pairedRatio(s.rems[phase], base.rems[phase]), listing)
		}
	}
	last := scs[len(scs)-1]
	rep.f("\nms, medians; ratios are medians of per-round ratios. The empty scope before and after the engine filled: add %s → %s ms, remove %s → %s ms.\n\n",
		ms(base.adds[0].median()), ms(base.adds[1].median()), ms(base.rems[0].median()), ms(base.rems[1].median()))
	rep.f("| figure | value | target | |\n|---|---:|---:|---|\n")
	rep.mark()
	addRatio, remRatio := pairedRatio(last.adds[1], base.adds[1]), pairedRatio(last.rems[1], base.rems[1])
	rep.f("| add with %d other containers / empty project (paired) | %.3f | ≤ 1.05 | %s |\n", last.n, addRatio, verdict(addRatio <= 1.05))
	rep.f("| remove with %d other containers / empty project (paired) | %.3f | ≤ 1.05 | %s |\n", last.n, remRatio, verdict(remRatio <= 1.05))
	rep.summary()
	rep.write(b, "scale")
}

// envInts returns the comma-separated positive integers in environment
// variable name, or def.
func envInts(b *testing.B, name string, def []int) []int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		var n int
		if _, err := fmt.Sscan(f, &n); err != nil || n < 1 {
			b.Fatalf("%s=%q: want positive integers, comma-separated", name, v)
		}
		out = append(out, n)
	}
	return out
}
