package integration_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	sl "github.com/decnet/servicelive"
	"github.com/decnet/servicelive/dockercompose"
)

// The crash test: a child process (this test binary, re-executed to run
// TestCrashChild) performs a seeded random sequence of AddService and
// RemoveService with a FileStore, a project directory and the real
// dockercompose Composer, and SIGKILLs itself at an injected point. After
// each kill the parent checks that the state file parses, runs Reconcile
// with a Manager of its own on the same file and directory, and asserts 0
// drift against the engine (through the Engine API) and in the compose
// files; a second Reconcile must change nothing. The same project is kept
// across kills: each child starts from what the previous crash, then the
// convergence, left.
//
// SERVICELIVE_CRASH_KILLS sets the number of kills (default
// defaultCrashKills: 1.5 to 2.5 minutes under -race on 2 cores);
// SERVICELIVE_CRASH_SEED replays a run.

// defaultCrashKills is the number of kills of a default run, the issue's
// minimum. Measured under -race on 2 cores (Docker Engine 20.10), with
// package dockercompose's tests running alongside: 0.4-0.7 s per kill
// (200 kills in 1m33s to 2m14s); up to 1.3 s per kill (200 in 4m39s) while
// other processes loaded the engine with benchmarks. Set
// SERVICELIVE_CRASH_KILLS for a shorter or a longer run.
const defaultCrashKills = 200

// Environment of the child.
const (
	crashEnvChild = "SERVICELIVE_CRASH_CHILD" // "1": TestCrashChild runs
	crashEnvState = "SERVICELIVE_CRASH_STATE" // the FileStore's path
	crashEnvDir   = "SERVICELIVE_CRASH_DIR"   // the project directory
	crashEnvFleet = "SERVICELIVE_CRASH_FLEET" // the fleet's project name
	crashEnvImage = "SERVICELIVE_CRASH_IMAGE" // the test image
	crashEnvSeed  = "SERVICELIVE_CRASH_SEED_CHILD"
	crashEnvPoint = "SERVICELIVE_CRASH_POINT" // one of crashPoints
	crashEnvNth   = "SERVICELIVE_CRASH_NTH"   // which occurrence of the point kills: 1, 2 or 3
)

// The injected crash points.
const (
	// after a successful Store.Update (AddService's, RemoveService's, or a rollback's)
	pointAfterUpdate = "after-update"
	// after the compose file write: at the entry of Composer.Up (AddService)
	// or Composer.Down (RemoveService), before the engine is called
	pointAfterWrite = "after-write"
	// during Composer.Up: the real Up runs, a kill follows 0-150 ms later
	pointDuringUp = "during-up"
	// after Composer.Down returned
	pointAfterDown = "after-down"
)

var crashPoints = []string{pointAfterUpdate, pointAfterWrite, pointDuringUp, pointAfterDown}

// The scopes and services the child mutates: 3 deckies, 3 services.
var (
	crashScopes   = map[string][]string{"": {"d1", "d2"}, "Crash": {"t1"}}
	crashServices = []string{"ssh", "http", "ftp"}
)

// killer SIGKILLs the process at the nth occurrence of its point.
type killer struct {
	point string
	nth   int64
	seen  atomic.Int64
	delay time.Duration // for pointDuringUp
}

func (k *killer) hit(point string) bool {
	return point == k.point && k.seen.Add(1) == k.nth
}

func die(where string) {
	fmt.Fprintf(os.Stderr, "crash child: SIGKILL %s\n", where)
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way
}

// crashStore kills the process after the nth successful Update.
type crashStore struct {
	sl.Store
	k *killer
}

func (s *crashStore) Update(ctx context.Context, ref sl.Ref, fn func(*sl.Decky) error) (sl.Decky, error) {
	d, err := s.Store.Update(ctx, ref, fn)
	if err == nil && s.k.hit(pointAfterUpdate) {
		die("after Store.Update of " + ref.String() + " → " + strings.Join(d.Services, ","))
	}
	return d, err
}

// crashComposer kills the process at the entry of Up or Down (after the
// file write), during Up, or after Down.
type crashComposer struct {
	sl.Composer
	k *killer
}

func (c *crashComposer) Up(ctx context.Context, p *types.Project, service string) error {
	if c.k.hit(pointAfterWrite) {
		die("at the entry of Up " + service)
	}
	if c.k.hit(pointDuringUp) {
		time.AfterFunc(c.k.delay, func() { die(fmt.Sprintf("%v into Up %s", c.k.delay, service)) })
	}
	return c.Composer.Up(ctx, p, service)
}

func (c *crashComposer) Down(ctx context.Context, p *types.Project, service string) error {
	if c.k.hit(pointAfterWrite) {
		die("at the entry of Down " + service)
	}
	err := c.Composer.Down(ctx, p, service)
	if c.k.hit(pointAfterDown) {
		die(fmt.Sprintf("after Down %s (%v)", service, err))
	}
	return err
}

// TestCrashChild is the child of TestCrashRecovery; it returns at once
// unless SERVICELIVE_CRASH_CHILD=1.
func TestCrashChild(t *testing.T) {
	if os.Getenv(crashEnvChild) != "1" {
		return
	}
	seed, err := strconv.ParseUint(os.Getenv(crashEnvSeed), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	nth, err := strconv.Atoi(os.Getenv(crashEnvNth))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 0x5e41))
	k := &killer{point: os.Getenv(crashEnvPoint), nth: int64(nth), delay: time.Duration(rng.Int64N(int64(150 * time.Millisecond)))}
	fstore, err := sl.OpenFileStore(os.Getenv(crashEnvState))
	if err != nil {
		t.Fatal(err)
	}
	composer, err := dockercompose.New()
	if err != nil {
		t.Fatal(err)
	}
	defer composer.Close()
	m, err := sl.New(&crashStore{Store: fstore, k: k}, &crashComposer{Composer: composer, k: k},
		bannerRegistry(t, os.Getenv(crashEnvImage), nil),
		sl.WithFleetProject(os.Getenv(crashEnvFleet)), sl.WithProjectDir(os.Getenv(crashEnvDir)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	topologies := slices.Sorted(maps.Keys(crashScopes))
	for op := range 40 {
		topology := topologies[rng.IntN(len(topologies))]
		ref := sl.Ref{Topology: topology, Decky: crashScopes[topology][rng.IntN(len(crashScopes[topology]))]}
		service := crashServices[rng.IntN(len(crashServices))]
		d, err := fstore.Get(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		verb := "add"
		if d.HasService(service) {
			verb = "remove"
			_, err = m.RemoveService(ctx, ref, service)
		} else {
			_, err = m.AddService(ctx, ref, service)
		}
		fmt.Fprintf(os.Stderr, "crash child: op %d: %s %s %s: %v\n", op, verb, ref, service, err)
		if err != nil {
			// A failure is undone by the library; it is not what this test
			// is about, but says something is wrong with the engine.
			t.Errorf("%s %s %s: %v", verb, ref, service, err)
		}
	}
}

// crashRun is one child's outcome.
type crashRun struct {
	seed   uint64
	point  string
	nth    int
	killed bool
	took   time.Duration
	output string
}

func (r crashRun) String() string {
	return fmt.Sprintf("child seed %d, point %s #%d, killed %v, %v", r.seed, r.point, r.nth, r.killed, r.took.Round(time.Millisecond))
}

// runCrashChild runs one child to its death or end.
func runCrashChild(t *testing.T, env []string, run *crashRun) error {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), env...)
	cmd.Env = append(cmd.Env,
		crashEnvChild+"=1",
		crashEnvSeed+"="+strconv.FormatUint(run.seed, 10),
		crashEnvPoint+"="+run.point,
		crashEnvNth+"="+strconv.Itoa(run.nth),
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := cmd.Run()
	run.took = time.Since(t0)
	run.output = out.String()
	if ctx.Err() != nil {
		return fmt.Errorf("child did not end within 3 minutes: %w", ctx.Err())
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return nil // ran its whole sequence without reaching its point
	case errors.As(err, &exit):
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			run.killed = true
			return nil
		}
		return fmt.Errorf("child failed: %w", err)
	default:
		return err
	}
}

func TestCrashRecovery(t *testing.T) {
	if os.Getenv(crashEnvChild) == "1" {
		t.Skip("in the child")
	}
	api, image := engine(t)
	kills := defaultCrashKills
	if s := os.Getenv("SERVICELIVE_CRASH_KILLS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("SERVICELIVE_CRASH_KILLS=%q: want a positive number", s)
		}
		kills = n
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SERVICELIVE_CRASH_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("SERVICELIVE_CRASH_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (SERVICELIVE_CRASH_SEED=%d replays the children's points and sequences), %d kills", seed, seed, kills)
	rng := rand.New(rand.NewPCG(seed, 0xc7a5))

	ctx := t.Context()
	dir := t.TempDir()
	statePath := filepath.Join(dir, "state.json")
	projectDir := filepath.Join(dir, "projects")
	fleet := randomName("slcr")
	store, err := sl.OpenFileStore(statePath)
	if err != nil {
		t.Fatal(err)
	}
	for topology, deckies := range crashScopes {
		for _, name := range deckies {
			if err := store.Put(ctx, topology, sl.Decky{Name: name, Image: image}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var copts []dockercompose.Option
	if os.Getenv("SERVICELIVE_CRASH_DEBUG") != "" {
		copts = append(copts, dockercompose.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	}
	composer, err := dockercompose.New(copts...)
	if err != nil {
		t.Fatal(err)
	}
	reg := bannerRegistry(t, image, nil)
	projects := map[string]string{} // topology → project name
	{
		m, err := sl.New(store, composer, reg, sl.WithFleetProject(fleet))
		if err != nil {
			t.Fatal(err)
		}
		for topology := range crashScopes {
			projects[topology] = m.ProjectName(topology)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		removeProjects(ctx, t, api, slices.Collect(maps.Values(projects))...)
		composer.Close()
	})
	env := []string{
		crashEnvState + "=" + statePath,
		crashEnvDir + "=" + projectDir,
		crashEnvFleet + "=" + fleet,
		crashEnvImage + "=" + image,
	}

	// converge is what a restarted process does: open the state file, then
	// Reconcile every scope with a Manager of its own, and check the engine
	// and the compose files against the Store. The killed child's last
	// Engine API request may still be running in the engine when the first
	// pass looks (a create holds its name, and is listed, for up to a
	// second under load before it can be inspected or started; a stop
	// completes after the pass saw the container running): then a pass
	// fails or leaves drift that the next pass repairs, as a periodic
	// Reconcile would. converge runs up to maxPasses passes and records
	// each one that was not enough; it returns the drift left after the
	// last pass, and the passes' reports. Then one more Reconcile must
	// change nothing.
	repairs := map[sl.Action]int{}
	const maxPasses = 3
	var extraPasses []string // why a pass was not enough
	converge := func(after string, died time.Time) (problems []string, reports []sl.Report) {
		fresh, err := sl.OpenFileStore(statePath)
		if err != nil {
			t.Fatalf("state file: %v", err)
		}
		stored := map[string][]sl.Decky{}
		for topology := range crashScopes {
			if stored[topology], err = fresh.List(ctx, topology); err != nil {
				t.Fatalf("state file: list %q: %v", topology, err)
			}
		}
		m, err := sl.New(fresh, composer, reg, sl.WithFleetProject(fleet), sl.WithProjectDir(projectDir))
		if err != nil {
			t.Fatal(err)
		}
		observed := map[string]map[string]box{}
		for pass := 1; ; pass++ {
			problems = nil
			for _, topology := range slices.Sorted(maps.Keys(crashScopes)) {
				project := projects[topology]
				rep, err := m.Reconcile(ctx, topology)
				reports = append(reports, rep)
				for _, c := range rep.Containers {
					repairs[c.Action]++
				}
				if err != nil {
					problems = append(problems, fmt.Sprintf("%s: reconcile: %v", project, err))
					continue
				}
				got, drifted, err := drift(ctx, api, project, stored[topology])
				if err != nil {
					t.Fatal(err)
				}
				observed[topology] = got
				for _, p := range drifted {
					problems = append(problems, project+": engine: "+p)
				}
				for _, p := range composeFileDrift(ctx, filepath.Join(projectDir, project, "compose.yaml"), wantedKeys(stored[topology])) {
					problems = append(problems, project+": compose file: "+p)
				}
			}
			if len(problems) == 0 || pass == maxPasses {
				break
			}
			extraPasses = append(extraPasses, fmt.Sprintf("%s; pass %d, %v after the child's death:\n      %s",
				after, pass, time.Since(died).Round(time.Millisecond), strings.Join(problems, "\n      ")))
			time.Sleep(time.Duration(pass) * 500 * time.Millisecond)
		}
		if len(problems) > 0 {
			return problems, reports
		}
		// One more Reconcile changes nothing.
		for _, topology := range slices.Sorted(maps.Keys(crashScopes)) {
			project := projects[topology]
			rep, err := m.Reconcile(ctx, topology)
			if err != nil || rep.Changed() != 0 {
				reports = append(reports, rep)
				problems = append(problems, fmt.Sprintf("%s: the reconcile after convergence changed %d: %v", project, rep.Changed(), err))
				continue
			}
			now, err := observe(ctx, api, project)
			if err != nil {
				t.Fatal(err)
			}
			for key, b := range observed[topology] {
				if a := now[key]; len(a) != 1 || a[0].ID != b.ID || a[0].StartedAt != b.StartedAt {
					problems = append(problems, fmt.Sprintf("%s: %s touched by the reconcile after convergence", project, key))
				}
			}
		}
		return problems, reports
	}

	if problems, reports := converge("initial deploy", time.Now()); len(problems) > 0 {
		t.Fatalf("initial deploy: %v\n%+v", problems, reports)
	}
	var (
		killed, finished, iterations, driftFound int
		byPoint                                  = map[string]int{}
		childTime, convergeTime                  time.Duration
	)
	start := time.Now()
	for killed < kills && iterations < 2*kills+10 {
		iterations++
		run := crashRun{seed: rng.Uint64(), point: crashPoints[rng.IntN(len(crashPoints))], nth: 1 + rng.IntN(3)}
		if err := runCrashChild(t, env, &run); err != nil {
			t.Fatalf("iteration %d (%v): %v\n%s", iterations, run, err, run.output)
		}
		childTime += run.took
		if run.killed {
			killed++
			byPoint[fmt.Sprintf("%s#%d", run.point, run.nth)]++
		} else {
			finished++
		}
		t0 := time.Now()
		problems, reports := converge(run.String(), t0)
		convergeTime += time.Since(t0)
		if len(problems) > 0 {
			driftFound += len(problems)
			t.Errorf("iteration %d (%v): drift after convergence:\n  %s\nreports: %+v\nchild:\n%s",
				iterations, run, strings.Join(problems, "\n  "), reports, run.output)
			break
		}
		if testing.Verbose() && iterations%20 == 0 {
			t.Logf("%d iterations, %d kills, %v", iterations, killed, time.Since(start).Round(time.Second))
		}
	}
	elapsed := time.Since(start)
	t.Logf("%d kills survived (%d children finished their sequence unkilled) in %d iterations, %v (%.1f s per iteration: child %.1f s, convergence %.1f s); drift after convergence: %d",
		killed, finished, iterations, elapsed.Round(time.Second), elapsed.Seconds()/float64(iterations),
		childTime.Seconds()/float64(iterations), convergeTime.Seconds()/float64(iterations), driftFound)
	t.Logf("kills by point: %v", byPoint)
	t.Logf("passes of Reconcile that were not enough (the next pass converged): %d", len(extraPasses))
	for _, e := range extraPasses {
		t.Logf("  %s", e)
	}
	t.Logf("what the convergences did: %v", repairs)
	t.Logf("temporary files left by killed writers: %d", countTemp(t, dir))
	if killed < kills && driftFound == 0 {
		t.Errorf("only %d kills in %d iterations, want %d", killed, iterations, kills)
	}
}

// composeFileDrift loads the scope's compose files with compose-go and
// compares their services with want.
func composeFileDrift(ctx context.Context, path string, want []string) []string {
	opts, err := cli.NewProjectOptions([]string{path})
	if err != nil {
		return []string{err.Error()}
	}
	p, err := opts.LoadProject(ctx)
	if err != nil {
		return []string{err.Error()}
	}
	got := slices.Sorted(maps.Keys(p.Services))
	if !slices.Equal(got, want) {
		return []string{fmt.Sprintf("lists %v, the store %v", got, want)}
	}
	return nil
}

// countTemp counts the atomic writers' temporary files under dir.
func countTemp(t *testing.T, dir string) int {
	n := 0
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), ".tmp-") {
			n++
		}
		return nil
	})
	return n
}
