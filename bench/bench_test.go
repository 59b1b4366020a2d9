package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/client"

	sl "github.com/decnet/servicelive"
	"github.com/decnet/servicelive/dockercompose"
	"github.com/decnet/servicelive/internal/testimage"
)

// Targets of issue 3, item 5.
const (
	targetRatio       = 1.05                  // (a)/(c), add and remove
	targetOverhead    = 0.10                  // ((a)-(c)) / ((b)-(c))
	targetWaitCost    = 10 * time.Millisecond // (a wait) - (a no wait), add
	targetConcurrency = 1.3                   // 50 AddService / 50 raw create+start, wall
)

// path is one way of adding and removing the measured service.
type path struct {
	name        string
	add, remove func() error
	adds, rems  series
	// Composer time inside the library's AddService/RemoveService (library paths only).
	ups, downs series
	tc         *timedComposer
	// CPU used during the recorded adds and removes, summed.
	addCPU, remCPU cpuSample
}

// BenchmarkPaired measures one add and one remove of the same service
// container (test image, banner mode, in a running base's network
// namespace) by four paths, back to back in rotating order, for
// $SERVICELIVE_BENCH_ROUNDS rounds (default 100) after one warm-up round:
//
//	lib      Manager.AddService / RemoveService, dockercompose defaults (wait until running)
//	lib-nw   the same with dockercompose.WithWait(false)
//	cli      docker-compose v2 -p P -f F up -d --no-deps S; stop S + rm -f S
//	raw      ContainerCreate + ContainerStart; ContainerStop + ContainerRemove
//
// b.N is ignored: the rounds run once.
func BenchmarkPaired(b *testing.B) {
	composeBin := os.Getenv(envCompose)
	e := setup(b, map[string][]sl.Decky{"": {{Name: "a"}, {Name: "b"}}})
	if composeBin == "" {
		b.Fatalf("%s is not set: the path of a docker-compose v2 binary (bench/run.sh builds one)", envCompose)
	}
	rounds := envInt(b, envRounds, 100)
	ctx := e.ctx

	tcWait := &timedComposer{c: e.composer(b)}
	tcNoWait := &timedComposer{c: e.composer(b, dockercompose.WithWait(false))}
	mWait := e.manager(b, tcWait)
	mNoWait := e.manager(b, tcNoWait)
	// The CLI's decky b has the service in the store and in its compose
	// file, but no container: a Manager over a composer that does nothing
	// writes the file exactly as the library would (same renderer, same
	// project dir), without touching the engine.
	mFile := e.manager(b, nopComposer{})

	if err := mWait.Deploy(ctx, ""); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := mWait.Teardown(context.Background(), ""); err != nil {
			b.Logf("teardown: %v", err)
		}
	})
	if _, err := mFile.AddService(ctx, sl.FleetDecky("b"), serviceName); err != nil {
		b.Fatal(err)
	}
	file := e.composeFile(e.project)
	refA := sl.FleetDecky("a")
	nameA := containerName(e.project, "a", serviceName)
	keyB := sl.ServiceKey("b", serviceName)
	addrA, err := bannerAddr(ctx, e, e.project+".a")
	if err != nil {
		b.Fatal(err)
	}
	addrB, err := bannerAddr(ctx, e, e.project+".b")
	if err != nil {
		b.Fatal(err)
	}

	cli := func(args ...string) error {
		cmd := exec.CommandContext(ctx, composeBin, append([]string{"-p", e.project, "-f", file}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("docker-compose %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	var spec rawSpec // filled in by the warm-up from the library's container
	// The floor uses the library's own Engine API client (same transport,
	// same connection pool).
	rawClient := tcWait.c.Client()
	libPath := func(name string, m *sl.Manager, tc *timedComposer) *path {
		return &path{
			name:   name,
			add:    func() error { _, err := m.AddService(ctx, refA, serviceName); return err },
			remove: func() error { _, err := m.RemoveService(ctx, refA, serviceName); return err },
			tc:     tc,
		}
	}
	paths := []*path{
		libPath("lib", mWait, tcWait),
		libPath("lib-nw", mNoWait, tcNoWait),
		{
			name:   "cli",
			add:    func() error { return cli("up", "-d", "--no-deps", keyB) },
			remove: func() error { return errors.Join(cli("stop", keyB), cli("rm", "-f", keyB)) },
		},
		{
			name:   "raw",
			add:    func() error { return rawAdd(ctx, rawClient, spec) },
			remove: func() error { return rawRemove(ctx, rawClient, spec) },
		},
	}
	addrOf := func(p *path) string {
		if p.name == "cli" {
			return addrB
		}
		return addrA
	}

	// Warm-up round (not recorded); the library's first add gives the
	// floor its container config.
	if err := paths[0].add(); err != nil {
		b.Fatal(err)
	}
	if spec, err = e.rawSpecOf(ctx, nameA, nameA+"-raw"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = rawRemove(context.Background(), e.api, spec) })
	if err := waitBanner(ctx, addrA); err != nil {
		b.Fatal(err)
	}
	if err := paths[0].remove(); err != nil {
		b.Fatal(err)
	}
	for _, p := range paths[1:] {
		if err := runOnce(ctx, p, addrOf(p), false); err != nil {
			b.Fatal(err)
		}
	}

	b.ResetTimer()
	for r := range rounds {
		for i := range paths {
			p := paths[(r+i)%len(paths)]
			if err := runOnce(ctx, p, addrOf(p), true); err != nil {
				b.Fatalf("round %d: %v", r+1, err)
			}
		}
	}
	b.StopTimer()

	lib, libNW, cliP, raw := paths[0], paths[1], paths[2], paths[3]
	addRatio := pairedRatio(lib.adds, raw.adds)
	remRatio := pairedRatio(lib.rems, raw.rems)
	addOver := float64(pairedDiff(lib.adds, raw.adds)) / float64(pairedDiff(cliP.adds, raw.adds))
	remOver := float64(pairedDiff(lib.rems, raw.rems)) / float64(pairedDiff(cliP.rems, raw.rems))
	waitCost := pairedDiff(lib.adds, libNW.adds)
	b.ReportMetric(float64(lib.adds.median())/1e6, "lib-add-ms")
	b.ReportMetric(float64(lib.rems.median())/1e6, "lib-remove-ms")
	b.ReportMetric(float64(cliP.adds.median())/1e6, "cli-add-ms")
	b.ReportMetric(float64(raw.adds.median())/1e6, "raw-add-ms")
	b.ReportMetric(addRatio, "lib/raw-add")
	b.ReportMetric(remRatio, "lib/raw-remove")

	var rep report
	rep.f("## Add and remove, paired rounds\n\n")
	rep.f("%d rounds after one warm-up round; each round runs the four paths back to back, the order rotating by one path per round. ", rounds)
	rep.f("Same engine, same image (`%s`, banner mode), each container in a running base's network namespace (`network_mode: service:<base>`), same labels and logging.\n\n", e.image)
	rep.f("- **lib**: `Manager.AddService` / `RemoveService` (MemoryStore, compose files written to a project dir), `dockercompose.New()` defaults: Up waits until the container runs.\n")
	rep.f("- **lib-nw**: the same with `dockercompose.WithWait(false)`.\n")
	rep.f("- **cli**: the seed's way, the compose v2 CLI (v2.40.3, standalone binary) as a subprocess on the compose file the library wrote: `-p P -f F up -d --no-deps S`; remove = `stop S` + `rm -f S`.\n")
	rep.f("- **raw**: the floor, `ContainerCreate` + `ContainerStart`; `ContainerStop` + `ContainerRemove`, with the Config and HostConfig of the container the library created (inspected once), under another name, through the library's own API client (`Composer.Client()`).\n\n")
	rep.f("Between an add and its remove (untimed) the benchmark reads the banner from the container's port, which checks each path really runs the service.\n\n")
	rep.f("| path | add median | add min | add max | remove median | remove min | remove max |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range paths {
		rep.f("| %s | %s | %s | %s | %s | %s | %s |\n", p.name,
			ms(p.adds.median()), ms(p.adds.min()), ms(p.adds.max()),
			ms(p.rems.median()), ms(p.rems.min()), ms(p.rems.max()))
	}
	rep.f("\nms. Inside the library's calls, `Composer.Up` / `Composer.Down` (the engine side, dockercompose) took, median: ")
	rep.f("lib %s / %s, lib-nw %s / %s; the rest of AddService/RemoveService (store, rendering, compose file writes) %s / %s.\n\n",
		ms(lib.ups.median()), ms(lib.downs.median()), ms(libNW.ups.median()), ms(libNW.downs.median()),
		ms(pairedDiff(lib.adds, lib.ups)), ms(pairedDiff(lib.rems, lib.downs)))
	rep.f("CPU per operation (mean over the rounds; /proc accounting in 10 ms ticks, so only the mean means something):\n\n")
	rep.f("| path | add: this process | add: dockerd + containerd | add: whole machine | remove: this process | remove: dockerd + containerd | remove: whole machine |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range paths {
		a, r := p.addCPU.div(rounds), p.remCPU.div(rounds)
		rep.f("| %s | %s | %s | %s | %s | %s | %s |\n", p.name, ms(a.self), ms(a.engine), ms(a.machine), ms(r.self), ms(r.engine), ms(r.machine))
	}
	rep.f("\nms; \"this process\" is the benchmark's own process: for cli the subprocesses' CPU is in \"whole machine\" only.\n\n")
	rep.f("| figure | value | target | |\n|---|---:|---:|---|\n")
	rep.mark()
	rep.f("| add: lib / raw (median of per-round ratios) | %.3f | ≤ %.2f | %s |\n", addRatio, targetRatio, verdict(addRatio <= targetRatio))
	rep.f("| remove: lib / raw (median of per-round ratios) | %.3f | ≤ %.2f | %s |\n", remRatio, targetRatio, verdict(remRatio <= targetRatio))
	rep.f("| add: (lib − raw) / (cli − raw) (medians of per-round differences: %s ms / %s ms) | %.3f | ≤ %.2f | %s |\n",
		ms(pairedDiff(lib.adds, raw.adds)), ms(pairedDiff(cliP.adds, raw.adds)), addOver, targetOverhead, verdict(addOver <= targetOverhead))
	rep.f("| remove: (lib − raw) / (cli − raw) (%s ms / %s ms) | %.3f | ≤ %.2f | %s |\n",
		ms(pairedDiff(lib.rems, raw.rems)), ms(pairedDiff(cliP.rems, raw.rems)), remOver, targetOverhead, verdict(remOver <= targetOverhead))
	rep.f("| wait cost: lib add − lib-nw add (median of per-round differences) | %s ms | ≤ %s ms | %s |\n",
		ms(waitCost), ms(targetWaitCost), verdict(waitCost <= targetWaitCost))
	rep.summary()
	rep.f("\nRatio of medians, for comparison: add %.3f, remove %.3f.\n\n",
		float64(lib.adds.median())/float64(raw.adds.median()), float64(lib.rems.median())/float64(raw.rems.median()))
	rep.f("<details><summary>Per-round durations (ms, add/remove)</summary>\n\n| round |")
	for _, p := range paths {
		rep.f(" %s |", p.name)
	}
	rep.f("\n|---:|")
	for range paths {
		rep.f("---:|")
	}
	rep.f("\n")
	for r := range rounds {
		rep.f("| %d |", r+1)
		for _, p := range paths {
			rep.f(" %s / %s |", ms(p.adds[r]), ms(p.rems[r]))
		}
		rep.f("\n")
	}
	rep.f("\n</details>\n\n")
	rep.write(b, "paired")
}

// runOnce adds and removes p's service, recording the durations when
// record is set. Between the two it waits for the banner (untimed): the
// service must really run, and a stop must not race the program's signal
// handler setup.
func runOnce(ctx context.Context, p *path, addr string, record bool) error {
	c0 := sampleCPU()
	t0 := time.Now()
	if err := p.add(); err != nil {
		return fmt.Errorf("%s add: %w", p.name, err)
	}
	add := time.Since(t0)
	c1 := sampleCPU()
	if err := waitBanner(ctx, addr); err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	c2 := sampleCPU()
	t1 := time.Now()
	if err := p.remove(); err != nil {
		return fmt.Errorf("%s remove: %w", p.name, err)
	}
	rem := time.Since(t1)
	c3 := sampleCPU()
	if record {
		p.addCPU = p.addCPU.add(c1.sub(c0))
		p.remCPU = p.remCPU.add(c3.sub(c2))
		p.adds = append(p.adds, add)
		p.rems = append(p.rems, rem)
		if p.tc != nil {
			p.ups = append(p.ups, time.Duration(p.tc.lastUp.Load()))
			p.downs = append(p.downs, time.Duration(p.tc.lastDown.Load()))
		}
	}
	return nil
}

// bannerAddr returns the address of the banner port in base's network
// namespace.
func bannerAddr(ctx context.Context, e *env, base string) (string, error) {
	in, err := e.inspect(ctx, base)
	if err != nil {
		return "", err
	}
	if in.NetworkSettings != nil {
		for _, n := range in.NetworkSettings.Networks {
			if n.IPAddress.IsValid() {
				return net.JoinHostPort(n.IPAddress.String(), fmt.Sprint(testimage.DefaultPort)), nil
			}
		}
	}
	return "", fmt.Errorf("base %s has no IP address", base)
}

// waitBanner reads the test image's banner from addr, retrying for up to
// ten seconds.
func waitBanner(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var last error
	for {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			var line string
			line, err = bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if err == nil && line == testimage.Banner {
				return nil
			}
			if err == nil {
				err = fmt.Errorf("unexpected banner %q", line)
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("no banner on %s: %w", addr, last)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// timedComposer records how long the last Up and Down of the wrapped
// Composer took.
type timedComposer struct {
	c                *dockercompose.Composer
	lastUp, lastDown atomic.Int64
}

func (t *timedComposer) Up(ctx context.Context, p *types.Project, service string) error {
	t0 := time.Now()
	err := t.c.Up(ctx, p, service)
	t.lastUp.Store(int64(time.Since(t0)))
	return err
}

func (t *timedComposer) Down(ctx context.Context, p *types.Project, service string) error {
	t0 := time.Now()
	err := t.c.Down(ctx, p, service)
	t.lastDown.Store(int64(time.Since(t0)))
	return err
}

func (t *timedComposer) RemoveProject(ctx context.Context, p *types.Project) error {
	return t.c.RemoveProject(ctx, p)
}

// BenchmarkConcurrent measures the wall time of $SERVICELIVE_BENCH_CONC_N
// (default 50) AddService calls at once, on as many deckies of one scope
// (a topology), against as many concurrent raw ContainerCreate +
// ContainerStart calls of the same containers' configs in the same bases;
// $SERVICELIVE_BENCH_CONC_ROUNDS rounds (default 10), the order alternating,
// each timed phase a second after the previous removals.
// b.N is ignored.
func BenchmarkConcurrent(b *testing.B) {
	const (
		topology = "conc"
		settle   = time.Second
	)
	n := 50
	if os.Getenv(envEngine) == "1" {
		n = envInt(b, envConcN, 50)
	}
	ds := make([]sl.Decky, n)
	for i := range ds {
		ds[i] = sl.Decky{Name: fmt.Sprintf("c%02d", i)}
	}
	e := setup(b, map[string][]sl.Decky{topology: ds})
	rounds := envInt(b, envConcRounds, 10)
	ctx := e.ctx
	c := e.composer(b)
	m := e.manager(b, c)
	project := m.ProjectName(topology)

	t0 := time.Now()
	if err := m.Deploy(ctx, topology); err != nil {
		b.Fatal(err)
	}
	deployTook := time.Since(t0)
	b.Cleanup(func() {
		if err := m.Teardown(context.Background(), topology); err != nil {
			b.Logf("teardown: %v", err)
		}
	})
	refs := make([]sl.Ref, n)
	addrs := make([]string, n)
	for i, d := range ds {
		refs[i] = sl.TopologyDecky(topology, d.Name)
		var err error
		if addrs[i], err = bannerAddr(ctx, e, project+"."+d.Name); err != nil {
			b.Fatal(err)
		}
	}
	libAdd := func(i int) error { _, err := m.AddService(ctx, refs[i], serviceName); return err }
	libRemove := func(i int) error { _, err := m.RemoveService(ctx, refs[i], serviceName); return err }

	// Warm-up: the library adds every service once; the floor gets each
	// container's config.
	if _, err := all(n, libAdd); err != nil {
		b.Fatal(err)
	}
	specs := make([]rawSpec, n)
	for i, d := range ds {
		name := containerName(project, d.Name, serviceName)
		var err error
		if specs[i], err = e.rawSpecOf(ctx, name, name+"-raw"); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() {
		_, _ = all(n, func(i int) error { return rawRemove(context.Background(), e.api, specs[i]) })
	})
	if err := allBanners(ctx, addrs); err != nil {
		b.Fatal(err)
	}
	if _, err := all(n, libRemove); err != nil {
		b.Fatal(err)
	}
	// The floor uses the library's own Engine API client (same transport,
	// same connection pool).
	rawAddI := func(i int) error { return rawAdd(ctx, c.Client(), specs[i]) }
	rawRemoveI := func(i int) error { return rawRemove(ctx, c.Client(), specs[i]) }

	type side struct {
		name         string
		add, remove  func(int) error
		adds, rems   series
		self, engine series // CPU used during the adds: this process, dockerd+containerd
		machine      series // and the whole machine
	}
	sides := []*side{
		{name: "lib", add: libAdd, remove: libRemove},
		{name: "raw", add: rawAddI, remove: rawRemoveI},
	}
	b.ResetTimer()
	for r := range rounds {
		for j := range sides {
			s := sides[(r+j)%2]
			// Let the engine finish the previous removals (unmounts, ...)
			// before the timed phase.
			time.Sleep(settle)
			c0 := sampleCPU()
			add, err := all(n, s.add)
			cpu := sampleCPU().sub(c0)
			if err != nil {
				b.Fatalf("round %d: %s add: %v", r+1, s.name, err)
			}
			if err := allBanners(ctx, addrs); err != nil {
				b.Fatalf("round %d: %s: %v", r+1, s.name, err)
			}
			rem, err := all(n, s.remove)
			if err != nil {
				b.Fatalf("round %d: %s remove: %v", r+1, s.name, err)
			}
			s.adds, s.rems = append(s.adds, add), append(s.rems, rem)
			s.self, s.engine, s.machine = append(s.self, cpu.self), append(s.engine, cpu.engine), append(s.machine, cpu.machine)
		}
	}
	b.StopTimer()

	lib, raw := sides[0], sides[1]
	ratio := float64(lib.adds.median()) / float64(raw.adds.median())
	paired := pairedRatio(lib.adds, raw.adds)
	b.ReportMetric(float64(lib.adds.median())/1e6, "lib-wall-ms")
	b.ReportMetric(float64(raw.adds.median())/1e6, "raw-wall-ms")
	b.ReportMetric(ratio, "lib/raw")

	var rep report
	rep.f("## Concurrency: %d adds at once\n\n", n)
	rep.f("%d rounds after one warm-up; the order alternates; each timed phase starts %s ms after the previous removals returned.", rounds, ms(settle))
	rep.f(" **lib**: %d `AddService` calls at once, one per decky of one scope (topology `%s`, %d running bases), dockercompose defaults (wait until running). ", n, topology, n)
	rep.f("**raw**: %d concurrent `ContainerCreate` + `ContainerStart`, each with the Config/HostConfig of the library's container on the same decky (same base namespace), under another name, through the library's own API client. ", n)
	rep.f("Wall time from the release of all goroutines to the last return. Removal (`RemoveService` vs `ContainerStop` + `ContainerRemove`, also %d at once) is shown for information; it has no target. ", n)
	rep.f("Deploying the %d bases (`Manager.Deploy`) took %s ms.\n\n", n, ms(deployTook))
	rep.f("| path | add wall median | min | max | remove wall median | min | max |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range sides {
		rep.f("| %s | %s | %s | %s | %s | %s | %s |\n", s.name,
			ms(s.adds.median()), ms(s.adds.min()), ms(s.adds.max()),
			ms(s.rems.median()), ms(s.rems.min()), ms(s.rems.max()))
	}
	rep.f("\nms. CPU used during the adds (median): ")
	for i, s := range sides {
		if i > 0 {
			rep.f("; ")
		}
		rep.f("%s: this process %s ms, dockerd + containerd %s ms, whole machine %s ms of %s ms available (%d cores × wall)", s.name,
			ms(s.self.median()), ms(s.engine.median()), ms(s.machine.median()), ms(time.Duration(runtime.NumCPU())*s.adds.median()), runtime.NumCPU())
	}
	rep.f(".\n\n| figure | value | target | |\n|---|---:|---:|---|\n")
	rep.mark()
	rep.f("| %d adds at once: lib wall / raw wall (ratio of medians) | %.3f | ≤ %.1f | %s |\n", n, ratio, targetConcurrency, verdict(ratio <= targetConcurrency))
	rep.summary()
	rep.f("\nMedian of per-round ratios, for comparison: %.3f. Per round (ms, lib add / raw add): ", paired)
	for r := range rounds {
		if r > 0 {
			rep.f(", ")
		}
		rep.f("%s / %s", ms(lib.adds[r]), ms(raw.adds[r]))
	}
	rep.f(".\n\n")

	// One more round of each through the recording proxy: which Engine API
	// calls the concurrent adds make, and how long the engine took for them.
	px := newProxy(b)
	cp := e.composer(b, dockercompose.WithHost(px.host()))
	mp := e.manager(b, cp)
	proxied := []struct {
		name string
		add  func(int) error
		rem  func(int) error
	}{
		{"lib", func(i int) error { _, err := mp.AddService(ctx, refs[i], serviceName); return err },
			func(i int) error { _, err := mp.RemoveService(ctx, refs[i], serviceName); return err }},
		{"raw", func(i int) error { return rawAdd(ctx, cp.Client(), specs[i]) },
			func(i int) error { return rawRemove(ctx, cp.Client(), specs[i]) }},
	}
	rep.f("Engine API calls of the %d concurrent adds, one more round of each through the recording proxy (not timed above; a call's time is up to its response headers):\n\n", n)
	rep.f("| path | wall ms | call | count | median ms | max ms | sum ms |\n|---|---:|---|---:|---:|---:|---:|\n")
	for _, p := range proxied {
		time.Sleep(settle)
		px.reset()
		wall, err := all(n, p.add)
		if err != nil {
			b.Fatalf("proxied %s add: %v", p.name, err)
		}
		calls := px.take()
		if err := allBanners(ctx, addrs); err != nil {
			b.Fatal(err)
		}
		if _, err := all(n, p.rem); err != nil {
			b.Fatalf("proxied %s remove: %v", p.name, err)
		}
		for i, st := range endpointStats(calls) {
			w := ""
			if i == 0 {
				w = ms(wall)
			}
			rep.f("| %s | %s | `%s` | %d | %s | %s | %s |\n", p.name, w, st.what, len(st.durs), ms(st.durs.median()), ms(st.durs.max()), ms(st.sum()))
		}
	}
	rep.f("\n")
	rep.write(b, "concurrent")
}

// all runs fn(0..n-1) at once and returns the wall time from the release
// of all goroutines to the last return, and the errors joined.
func all(n int, fn func(int) error) (time.Duration, error) {
	start := make(chan struct{})
	errs := make([]error, n)
	var ready, done sync.WaitGroup
	ready.Add(n)
	for i := range n {
		done.Go(func() {
			ready.Done()
			<-start
			errs[i] = fn(i)
		})
	}
	ready.Wait()
	t0 := time.Now()
	close(start)
	done.Wait()
	return time.Since(t0), errors.Join(errs...)
}

// allBanners waits for the banner on every address.
func allBanners(ctx context.Context, addrs []string) error {
	_, err := all(len(addrs), func(i int) error { return waitBanner(ctx, addrs[i]) })
	return err
}

// BenchmarkLibraryAddRemove runs b.N AddService + RemoveService pairs
// through the library with the default Composer: the loop to profile
// (bench/run.sh runs it with -cpuprofile). The banner wait between add and
// remove is outside the timer.
func BenchmarkLibraryAddRemove(b *testing.B) {
	e := setup(b, map[string][]sl.Decky{"": {{Name: "a"}}})
	ctx := e.ctx
	m := e.manager(b, e.composer(b))
	if err := m.Deploy(ctx, ""); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Teardown(context.Background(), "") })
	addr, err := bannerAddr(ctx, e, e.project+".a")
	if err != nil {
		b.Fatal(err)
	}
	ref := sl.FleetDecky("a")
	b.ResetTimer()
	for range b.N {
		if _, err := m.AddService(ctx, ref, serviceName); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := waitBanner(ctx, addr); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := m.RemoveService(ctx, ref, serviceName); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAPICalls counts the Engine API calls of one add and one remove
// by each path, through a recording proxy on the engine's socket, and
// writes their timelines (the last of eleven runs per path) and each path's
// wall time beyond the floor's two calls. b.N is ignored.
func BenchmarkAPICalls(b *testing.B) {
	composeBin := os.Getenv(envCompose)
	e := setup(b, map[string][]sl.Decky{"": {{Name: "a"}, {Name: "b"}}})
	if composeBin == "" {
		b.Fatalf("%s is not set", envCompose)
	}
	ctx := e.ctx
	px := newProxy(b)
	cWait := e.composer(b, dockercompose.WithHost(px.host()))
	cNoWait := e.composer(b, dockercompose.WithHost(px.host()), dockercompose.WithWait(false))
	mWait := e.manager(b, cWait)
	mNoWait := e.manager(b, cNoWait)
	mFile := e.manager(b, nopComposer{})
	if err := mWait.Deploy(ctx, ""); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = mWait.Teardown(context.Background(), "") })
	if _, err := mFile.AddService(ctx, sl.FleetDecky("b"), serviceName); err != nil {
		b.Fatal(err)
	}
	file := e.composeFile(e.project)
	refA := sl.FleetDecky("a")
	nameA := containerName(e.project, "a", serviceName)
	keyB := sl.ServiceKey("b", serviceName)
	addrA, err := bannerAddr(ctx, e, e.project+".a")
	if err != nil {
		b.Fatal(err)
	}
	addrB, err := bannerAddr(ctx, e, e.project+".b")
	if err != nil {
		b.Fatal(err)
	}
	cli := func(args ...string) error {
		cmd := exec.CommandContext(ctx, composeBin, append([]string{"-p", e.project, "-f", file}, args...)...)
		cmd.Env = append(os.Environ(), "DOCKER_HOST="+px.host())
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("docker-compose %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if _, err := mWait.AddService(ctx, refA, serviceName); err != nil {
		b.Fatal(err)
	}
	spec, err := e.rawSpecOf(ctx, nameA, nameA+"-raw")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = rawRemove(context.Background(), e.api, spec) })
	if err := waitBanner(ctx, addrA); err != nil {
		b.Fatal(err)
	}
	if _, err := mWait.RemoveService(ctx, refA, serviceName); err != nil {
		b.Fatal(err)
	}
	rawClient := cWait.Client() // the same client type and transport as the library's, through the proxy

	type op struct {
		name        string
		add, remove func() error
		addr        string
	}
	ops := []op{
		{"lib", func() error { _, err := mWait.AddService(ctx, refA, serviceName); return err },
			func() error { _, err := mWait.RemoveService(ctx, refA, serviceName); return err }, addrA},
		{"lib-nw", func() error { _, err := mNoWait.AddService(ctx, refA, serviceName); return err },
			func() error { _, err := mNoWait.RemoveService(ctx, refA, serviceName); return err }, addrA},
		{"cli", func() error { return cli("up", "-d", "--no-deps", keyB) },
			func() error { return errors.Join(cli("stop", keyB), cli("rm", "-f", keyB)) }, addrB},
		{"raw", func() error { return rawAdd(ctx, rawClient, spec) },
			func() error { return rawRemove(ctx, rawClient, spec) }, addrA},
	}
	type result struct {
		addCalls, remCalls []apiCall
		addWall, remWall   time.Duration
		// Wall time beyond the floor's own calls (create + start, stop +
		// remove) in each run.
		addBeyond, remBeyond series
	}
	const runs = 11
	results := make([]result, len(ops))
	for range runs {
		for i, o := range ops {
			r := &results[i]
			px.reset()
			t0 := time.Now()
			if err := o.add(); err != nil {
				b.Fatalf("%s add: %v", o.name, err)
			}
			r.addWall = time.Since(t0)
			r.addCalls = px.take()
			r.addBeyond = append(r.addBeyond, r.addWall-sumOf(r.addCalls, "POST /containers/create", "POST /containers/{id}/start"))
			if err := waitBanner(ctx, o.addr); err != nil {
				b.Fatal(err)
			}
			px.reset()
			t0 = time.Now()
			if err := o.remove(); err != nil {
				b.Fatalf("%s remove: %v", o.name, err)
			}
			r.remWall = time.Since(t0)
			r.remCalls = px.take()
			r.remBeyond = append(r.remBeyond, r.remWall-sumOf(r.remCalls, "POST /containers/{id}/stop", "DELETE /containers/{id}"))
		}
	}

	var rep report
	rep.f("## Engine API calls per mutation\n\n")
	rep.f("Every path %d more times, the paths interleaved, through a recording proxy on the engine's socket (which adds its own latency, about the same per call: these are not the timed figures). ", runs)
	rep.f("A call's time is up to its response headers. Calls, engine time (the sum of the call durations) and wall time are from the last run; \"outside\" is that run's wall time not spent waiting for the engine (client CPU, process start, file writes; calls made in parallel can make it negative). ")
	rep.f("\"Beyond the floor's calls\" is the median over the %d runs of the wall time minus the durations of the floor's own two calls (create + start, stop + remove): what a path costs on top of the work it shares with the floor, and the least noisy measure of the library's overhead here.\n\n", runs)
	rep.f("| path | add calls | add engine ms | add wall ms | add outside ms | add beyond the floor's calls, median ms | remove calls | remove engine ms | remove wall ms | remove outside ms | remove beyond the floor's calls, median ms |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for i, o := range ops {
		r := results[i]
		ae, re := sumDur(r.addCalls), sumDur(r.remCalls)
		rep.f("| %s | %d | %s | %s | %s | %s | %d | %s | %s | %s | %s |\n", o.name,
			len(r.addCalls), ms(ae), ms(r.addWall), ms(r.addWall-ae), ms(r.addBeyond.median()),
			len(r.remCalls), ms(re), ms(r.remWall), ms(r.remWall-re), ms(r.remBeyond.median()))
	}
	rep.f("\n")
	for i, o := range ops {
		r := results[i]
		rep.f("<details><summary>%s: add (%d calls)</summary>\n\n%s\n</details>\n\n", o.name, len(r.addCalls), timeline(r.addCalls, r.addWall))
		rep.f("<details><summary>%s: remove (%d calls)</summary>\n\n%s\n</details>\n\n", o.name, len(r.remCalls), timeline(r.remCalls, r.remWall))
	}
	rep.write(b, "calls")
}

// sumOf sums the durations of the calls to the given endpoints.
func sumOf(calls []apiCall, endpoints ...string) time.Duration {
	var s time.Duration
	for _, c := range calls {
		if slices.Contains(endpoints, c.what) {
			s += c.dur
		}
	}
	return s
}

func sumDur(calls []apiCall) time.Duration {
	var s time.Duration
	for _, c := range calls {
		s += c.dur
	}
	return s
}

// BenchmarkLargeScope measures the library's add and remove against the
// floor when the decky's compose project holds many other containers
// ($SERVICELIVE_BENCH_SCOPE_N, default 500: created, not started, labelled
// with the project like the containers of other deckies): what a mutation
// costs in a large fleet. $SERVICELIVE_BENCH_SCOPE_ROUNDS paired rounds
// (default 20). b.N is ignored.
func BenchmarkLargeScope(b *testing.B) {
	e := setup(b, map[string][]sl.Decky{"": {{Name: "a"}}})
	filler := envInt(b, envScopeN, 500)
	rounds := envInt(b, envScopeRounds, 20)
	ctx := e.ctx
	c := e.composer(b)
	m := e.manager(b, c)
	if err := m.Deploy(ctx, ""); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Teardown(context.Background(), "") })
	refA := sl.FleetDecky("a")
	nameA := containerName(e.project, "a", serviceName)
	addr, err := bannerAddr(ctx, e, e.project+".a")
	if err != nil {
		b.Fatal(err)
	}
	libPath := &path{
		name:   "lib",
		add:    func() error { _, err := m.AddService(ctx, refA, serviceName); return err },
		remove: func() error { _, err := m.RemoveService(ctx, refA, serviceName); return err },
	}
	// Warm-up, and the floor's config.
	if err := libPath.add(); err != nil {
		b.Fatal(err)
	}
	spec, err := e.rawSpecOf(ctx, nameA, nameA+"-raw")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = rawRemove(context.Background(), e.api, spec) })
	if err := waitBanner(ctx, addr); err != nil {
		b.Fatal(err)
	}
	if err := libPath.remove(); err != nil {
		b.Fatal(err)
	}
	rawPath := &path{
		name:   "raw",
		add:    func() error { return rawAdd(ctx, c.Client(), spec) },
		remove: func() error { return rawRemove(ctx, c.Client(), spec) },
	}
	paths := []*path{libPath, rawPath}

	measure := func() {
		for _, p := range paths {
			p.adds, p.rems = nil, nil
		}
		for r := range rounds {
			for i := range paths {
				p := paths[(r+i)%len(paths)]
				if err := runOnce(ctx, p, addr, true); err != nil {
					b.Fatalf("round %d: %v", r+1, err)
				}
			}
		}
	}
	type result struct{ lib, raw [2]time.Duration } // add, remove medians
	var small, large result
	measure()
	small = result{[2]time.Duration{libPath.adds.median(), libPath.rems.median()}, [2]time.Duration{rawPath.adds.median(), rawPath.rems.median()}}
	smallDiff := [2]time.Duration{pairedDiff(libPath.adds, rawPath.adds), pairedDiff(libPath.rems, rawPath.rems)}

	// The other containers of the project: created, never started.
	t0 := time.Now()
	// The labels of the library's container (compose's and servicelive's),
	// as another decky's would be.
	labels := func(i int) map[string]string {
		l := maps.Clone(spec.cfg.Labels)
		l["com.docker.compose.service"] = fmt.Sprintf("filler%04d-%s", i, serviceName)
		l[sl.LabelDecky] = fmt.Sprintf("filler%04d", i)
		return l
	}
	sem := make(chan struct{}, 8)
	if _, err := all(filler, func(i int) error {
		sem <- struct{}{}
		defer func() { <-sem }()
		cfg := *spec.cfg
		cfg.Labels = labels(i)
		cfg.Cmd = testimage.Command(testimage.ModeBase)
		_, err := c.Client().ContainerCreate(ctx, client.ContainerCreateOptions{Config: &cfg, Name: fmt.Sprintf("%s.filler%04d", e.project, i)})
		return err
	}); err != nil {
		b.Fatalf("filler containers: %v", err)
	}
	fillTook := time.Since(t0)
	// What listing the project costs now (the Compose SDK lists it, twice,
	// in every Up): the median of five ContainerList calls, and its length.
	var lists series
	var listed int
	for range 5 {
		t := time.Now()
		res, err := c.Client().ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", composeLabel+"="+e.project)})
		if err != nil {
			b.Fatal(err)
		}
		lists, listed = append(lists, time.Since(t)), len(res.Items)
	}
	measure()
	large = result{[2]time.Duration{libPath.adds.median(), libPath.rems.median()}, [2]time.Duration{rawPath.adds.median(), rawPath.rems.median()}}
	largeDiff := [2]time.Duration{pairedDiff(libPath.adds, rawPath.adds), pairedDiff(libPath.rems, rawPath.rems)}
	largeAddRatio, largeRemRatio := pairedRatio(libPath.adds, rawPath.adds), pairedRatio(libPath.rems, rawPath.rems)

	// One add and remove through the recording proxy: the list calls.
	px := newProxy(b)
	mp := e.manager(b, e.composer(b, dockercompose.WithHost(px.host())))
	px.reset()
	t1 := time.Now()
	if _, err := mp.AddService(ctx, refA, serviceName); err != nil {
		b.Fatal(err)
	}
	addWall, addCalls := time.Since(t1), px.take()
	if err := waitBanner(ctx, addr); err != nil {
		b.Fatal(err)
	}
	px.reset()
	t1 = time.Now()
	if _, err := mp.RemoveService(ctx, refA, serviceName); err != nil {
		b.Fatal(err)
	}
	remWall, remCalls := time.Since(t1), px.take()
	b.StopTimer()

	var rep report
	rep.f("## A large scope: %d other containers in the project\n\n", filler)
	rep.f("The same add and remove (lib = `AddService`/`RemoveService` with dockercompose defaults, raw = the floor), %d paired rounds each, first with the decky's project holding only the decky's base, then with %d more containers labelled with the project (as other deckies' containers: the labels of the library's container with another decky and service; created, not started; creating them took %s ms).\n\n", rounds, filler, ms(fillTook))
	rep.f("| project holds | lib add | raw add | lib − raw add | lib remove | raw remove | lib − raw remove |\n|---|---:|---:|---:|---:|---:|---:|\n")
	rep.f("| 1 container | %s | %s | %s | %s | %s | %s |\n", ms(small.lib[0]), ms(small.raw[0]), ms(smallDiff[0]), ms(small.lib[1]), ms(small.raw[1]), ms(smallDiff[1]))
	rep.f("| %d containers | %s | %s | %s | %s | %s | %s |\n", 1+filler, ms(large.lib[0]), ms(large.raw[0]), ms(largeDiff[0]), ms(large.lib[1]), ms(large.raw[1]), ms(largeDiff[1]))
	rep.f("\nms, medians (differences: medians of per-round differences). With %d containers: lib / raw = %.3f for add, %.3f for remove (median of per-round ratios). ", 1+filler, largeAddRatio, largeRemRatio)
	rep.f("Listing the project (`ContainerList`, all states, filtered by the project label, decoded) returned %d containers in %s ms (median of 5).\n\n", listed, ms(lists.median()))
	rep.f("<details><summary>lib add with %d containers in the project, through the recording proxy</summary>\n\n%s\n</details>\n\n", 1+filler, timeline(addCalls, addWall))
	rep.f("<details><summary>lib remove with %d containers in the project, through the recording proxy</summary>\n\n%s\n</details>\n\n", 1+filler, timeline(remCalls, remWall))
	rep.write(b, "scope")
}
