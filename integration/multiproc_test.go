package integration_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/client"

	sl "github.com/decnet/servicelive"
	"github.com/decnet/servicelive/dockercompose"
	"github.com/decnet/servicelive/internal/pgtest"
	"github.com/decnet/servicelive/sqlstore"
)

// The multi-process test (issue 7): several OS processes (this test binary,
// re-executed to run TestMultiProcessChild), each with its own Store
// handle, its own dockercompose Composer and its own Manager on one Store
// and one project directory, mutate one fleet at once, with colliding
// compose keys, while another process runs Reconcile in a loop. After every
// process has exited normally, and with no repair pass, the engine, the
// Store and the compose files must agree: every compose key the Store
// describes exactly once, each by one running, non-diverged container, and
// nothing else. It runs once per Store kind that hands out cross-process
// decky locks: FileStore, sqlstore on SQLite and on PostgreSQL.
//
// The fleet holds deckies a and a-b: decky a adding service b-c and decky
// a-b adding service c both make the compose key a-b-c, and a adding b
// makes the key a-b, the name of a decky. Half of the workers' operations
// target these pairs.
//
// The check has teeth: with the Managers' Store wrapped so that it is no
// DeckyLocker (the behaviour before issue 7), runs of this test ended with
// a compose key in the compose files and on the engine that no decky of
// the Store has (a-b-c: a stray), or a service's container left running
// after its removal (n-b), or a worker's AddService failing in the engine.
//
// SERVICELIVE_MP_SEED (default mpDefaultSeed) fixes the workers' picks:
// which decky and service each call targets. Whether a call adds or
// removes follows the Store at that moment, so the interleaving, and what
// each call does, vary from run to run. SERVICELIVE_MP_OPS sets the calls
// per worker (default mpDefaultOps); SERVICELIVE_MP_WORKERS the number of
// worker processes (default mpDefaultWorkers, at least 2).

// Defaults of a run. Measured under -race on 2 cores shared with other
// work (Docker Engine 20.10), per Store kind: 34-50 s for the file store,
// 45-54 s for SQLite, 45-59 s for PostgreSQL (its cluster's start
// included), 2m05s-2m38s for the whole test; 89-107 s per kind (4m48s in
// all) while other tests kept the load average near 13.
const (
	mpDefaultSeed    = 7
	mpDefaultOps     = 20
	mpDefaultWorkers = 3
)

// Environment of the children.
const (
	mpEnvRole   = "SERVICELIVE_MP_ROLE"  // mpRoleWorker or mpRoleReconciler: TestMultiProcessChild runs
	mpEnvKind   = "SERVICELIVE_MP_KIND"  // one of mpKinds
	mpEnvDSN    = "SERVICELIVE_MP_DSN"   // the FileStore's or SQLite's path, PostgreSQL's DSN
	mpEnvDir    = "SERVICELIVE_MP_DIR"   // the project directory
	mpEnvFleet  = "SERVICELIVE_MP_FLEET" // the fleet's project name
	mpEnvImage  = "SERVICELIVE_MP_IMAGE" // the test image
	mpEnvID     = "SERVICELIVE_MP_ID"    // the worker's number, for messages
	mpEnvChSeed = "SERVICELIVE_MP_CHILD_SEED"
	mpEnvChOps  = "SERVICELIVE_MP_CHILD_OPS"
	mpEnvSync   = "SERVICELIVE_MP_SYNC" // the directory of the workers' done files and the parent's stop file
	mpEnvN      = "SERVICELIVE_MP_N"    // the number of workers
)

const (
	mpRoleWorker     = "worker"
	mpRoleReconciler = "reconciler"
)

// The Store kinds.
const (
	mpFile     = "file"
	mpSQLite   = "sqlite"
	mpPostgres = "postgres"
)

var mpKinds = []string{mpFile, mpSQLite, mpPostgres}

// mpFleet is the seeded fleet. a already has b-c, so a-b adding c
// conflicts until a removes it.
var mpFleet = []sl.Decky{
	{Name: "a", Services: []string{"ssh", "b-c"}},
	{Name: "a-b", Services: []string{"http"}},
	{Name: "b", Services: []string{"c"}},
	{Name: "m"},
	{Name: "n", Services: []string{"http"}},
}

// mpServices are the registered services; each listens on a port of its
// own, so any of them can share a decky's namespace.
var mpServices = []struct{ name, port string }{
	{"ssh", "2222"}, {"http", "8080"}, {"b", "7003"}, {"c", "7001"}, {"b-c", "7002"},
}

// mpColliding are the (decky, service) pairs whose compose keys collide.
var mpColliding = []struct{ decky, service string }{
	{"a", "b-c"}, {"a-b", "c"}, // both a-b-c
	{"a", "b"}, // a-b, a decky's name
}

// mpRegistry registers mpServices as banner services of image.
func mpRegistry(t *testing.T, image string) *sl.Registry {
	t.Helper()
	svcs := make([]sl.Service, 0, len(mpServices))
	for _, s := range mpServices {
		svcs = append(svcs, sl.Service{Name: s.name, Image: image, Compose: bannerHook("MP-"+s.name, s.port, nil)})
	}
	reg, err := sl.NewRegistry(svcs...)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// mpStore is what the test needs of a Store: a Store it can seed.
type mpStore interface {
	sl.Store
	Put(ctx context.Context, topology string, d sl.Decky) error
}

// mpOpen opens a handle of its own on the Store of kind at dsn; closeFn
// closes it.
func mpOpen(ctx context.Context, kind, dsn string) (s mpStore, closeFn func(), err error) {
	switch kind {
	case mpFile:
		fs, err := sl.OpenFileStore(dsn)
		return fs, func() {}, err
	case mpSQLite, mpPostgres:
		driver := sqlstore.DriverSQLite
		if kind == mpPostgres {
			driver = sqlstore.DriverPostgres
		}
		ss, err := sqlstore.Open(ctx, driver, dsn)
		if err != nil {
			return nil, nil, err
		}
		return ss, func() { ss.Close() }, nil
	}
	return nil, nil, fmt.Errorf("unknown store kind %q", kind)
}

// mpEnvInt returns the positive integer in the environment variable name, or def.
func mpEnvInt(t *testing.T, name string, def, least int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < least {
		t.Fatalf("%s=%q: want a number ≥ %d", name, s, least)
	}
	return n
}

// TestMultiProcessChild is a child of TestMultiProcess; it returns at once
// unless SERVICELIVE_MP_ROLE is set.
func TestMultiProcessChild(t *testing.T) {
	role := os.Getenv(mpEnvRole)
	if role == "" {
		return
	}
	ctx := t.Context()
	kind, id := os.Getenv(mpEnvKind), os.Getenv(mpEnvID)
	store, closeStore, err := mpOpen(ctx, kind, os.Getenv(mpEnvDSN))
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore()
	composer, err := dockercompose.New()
	if err != nil {
		t.Fatal(err)
	}
	defer composer.Close()
	m, err := sl.New(store, composer, mpRegistry(t, os.Getenv(mpEnvImage)),
		sl.WithFleetProject(os.Getenv(mpEnvFleet)), sl.WithProjectDir(os.Getenv(mpEnvDir)))
	if err != nil {
		t.Fatal(err)
	}
	switch role {
	case mpRoleWorker:
		seed, err := strconv.ParseUint(os.Getenv(mpEnvChSeed), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		ops, err := strconv.Atoi(os.Getenv(mpEnvChOps))
		if err != nil {
			t.Fatal(err)
		}
		mpWork(t, m, store, id, seed, ops)
		// The reconciler stops once every worker is done.
		done := time.Now().Format(time.RFC3339Nano)
		if err := os.WriteFile(filepath.Join(os.Getenv(mpEnvSync), "done-"+id), []byte(done), 0o600); err != nil {
			t.Fatal(err)
		}
	case mpRoleReconciler:
		n, err := strconv.Atoi(os.Getenv(mpEnvN))
		if err != nil {
			t.Fatal(err)
		}
		mpReconcile(t, m, os.Getenv(mpEnvSync), n)
	default:
		t.Fatalf("%s=%q", mpEnvRole, role)
	}
}

// mpWork runs ops seeded random AddService or RemoveService calls: half of
// them on a colliding pair, the others on any decky and service. Whether a
// call adds or removes follows the Store at the time it is picked, which
// other processes change at once: ErrConflict is an expected answer, any
// other error fails the child.
func mpWork(t *testing.T, m *sl.Manager, store sl.Store, id string, seed uint64, ops int) {
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(seed, 0x6d70))
	counts := map[string]int{}
	t0 := time.Now()
	for op := range ops {
		var decky, service string
		if rng.IntN(2) == 0 {
			p := mpColliding[rng.IntN(len(mpColliding))]
			decky, service = p.decky, p.service
		} else {
			decky = mpFleet[rng.IntN(len(mpFleet))].Name
			service = mpServices[rng.IntN(len(mpServices))].name
		}
		ref := sl.FleetDecky(decky)
		d, err := store.Get(ctx, ref)
		if err != nil {
			t.Fatalf("op %d: get %s: %v", op, ref, err)
		}
		verb := "add"
		start := time.Now()
		if d.HasService(service) {
			verb = "remove"
			_, err = m.RemoveService(ctx, ref, service)
		} else {
			_, err = m.AddService(ctx, ref, service)
		}
		outcome := "ok"
		switch {
		case err == nil:
		case errors.Is(err, sl.ErrConflict):
			outcome = "conflict"
		default:
			outcome = "error"
			t.Errorf("worker %s: op %d: %s %s %s: %v", id, op, verb, decky, service, err)
		}
		counts[verb+" "+outcome]++
		fmt.Fprintf(os.Stderr, "mp worker %s: op %d: %s %s %s (%v): %s %v\n", id, op, verb, decky, service,
			time.Since(start).Round(time.Millisecond), outcome, err)
	}
	fmt.Fprintf(os.Stderr, "mp-summary %d ops in %v: %v\n", ops, time.Since(t0).Round(time.Millisecond), counts)
}

// mpReconcile runs Reconcile of the fleet in a loop until the n workers
// are done (each wrote its done file in dir) or the parent's stop file
// appears there: no pass starts after the last worker's last call
// returned, so none repairs, once they are over, what they left. Any error
// fails the child.
func mpReconcile(t *testing.T, m *sl.Manager, dir string, n int) {
	ctx := t.Context()
	acts := map[string]int{}
	passes := 0
	t0 := time.Now()
	var last time.Time
	for {
		if _, err := os.Stat(filepath.Join(dir, "stop")); err == nil {
			break
		}
		if done, _ := filepath.Glob(filepath.Join(dir, "done-*")); len(done) >= n {
			break
		}
		if time.Since(t0) > 4*time.Minute {
			t.Fatal("the workers were not done after 4 minutes")
		}
		last = time.Now()
		rep, err := m.Reconcile(ctx, "")
		passes++
		for _, c := range rep.Containers {
			if c.Action != sl.ActionNone {
				acts[fmt.Sprintf("%s(%s) %q→%s", c.Service, c.Decky, c.Found, c.Action)]++
				fmt.Fprintf(os.Stderr, "mp reconciler: pass %d: %s of %s found %q → %s %v\n", passes, c.Service, c.Decky, c.Found, c.Action, c.Err)
			}
		}
		if err != nil {
			t.Errorf("reconcile pass %d: %v", passes, err)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "mp-summary %d passes in %v; acted on: %v\n", passes, time.Since(t0).Round(time.Millisecond), acts)
	fmt.Fprintf(os.Stderr, "mp-last-pass %s\n", last.Format(time.RFC3339Nano))
}

// mpChild is one running child.
type mpChild struct {
	name string
	cmd  *exec.Cmd
	out  bytes.Buffer
	err  error // of Wait
	took time.Duration
}

func mpStart(ctx context.Context, t *testing.T, name string, env []string) *mpChild {
	t.Helper()
	c := &mpChild{name: name}
	c.cmd = exec.CommandContext(ctx, os.Args[0], "-test.run=^TestMultiProcessChild$", "-test.count=1", "-test.v")
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
	c.cmd.WaitDelay = 10 * time.Second
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	return c
}

// mpLastPassLead returns how long before the last worker was done the
// reconciler's last pass started.
func mpLastPassLead(t *testing.T, reconciler *mpChild, syncDir string) (time.Duration, bool) {
	t.Helper()
	var pass time.Time
	sc := bufio.NewScanner(bytes.NewReader(reconciler.out.Bytes()))
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "mp-last-pass "); ok {
			pass, _ = time.Parse(time.RFC3339Nano, s)
		}
	}
	files, _ := filepath.Glob(filepath.Join(syncDir, "done-*"))
	var done time.Time
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if d, err := time.Parse(time.RFC3339Nano, string(b)); err == nil && d.After(done) {
			done = d
		}
	}
	if pass.IsZero() || done.IsZero() {
		return 0, false
	}
	return done.Sub(pass), true
}

// summary returns the child's mp-summary lines.
func (c *mpChild) summary() string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(c.out.Bytes()))
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "mp-summary "); ok {
			lines = append(lines, s)
		}
	}
	return strings.Join(lines, "; ")
}

func TestMultiProcess(t *testing.T) {
	if os.Getenv(mpEnvRole) != "" {
		t.Skip("in a child")
	}
	api, image := engine(t)
	seed := uint64(mpDefaultSeed)
	if s := os.Getenv("SERVICELIVE_MP_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("SERVICELIVE_MP_SEED=%q: %v", s, err)
		}
	}
	ops := mpEnvInt(t, "SERVICELIVE_MP_OPS", mpDefaultOps, 1)
	workers := mpEnvInt(t, "SERVICELIVE_MP_WORKERS", mpDefaultWorkers, 2)
	t.Logf("seed %d (SERVICELIVE_MP_SEED=%d replays the workers' picks), %d workers × %d ops, 1 reconciler", seed, seed, workers, ops)
	for i, kind := range mpKinds {
		t.Run(kind, func(t *testing.T) {
			mpRun(t, api, image, kind, seed*uint64(len(mpKinds))+uint64(i), workers, ops)
		})
	}
}

// mpRun is one subtest of TestMultiProcess.
func mpRun(t *testing.T, api client.APIClient, image, kind string, seed uint64, workers, ops int) {
	ctx := t.Context()
	dir := t.TempDir()
	var dsn string
	switch kind {
	case mpFile:
		dsn = filepath.Join(dir, "state.json")
	case mpSQLite:
		dsn = filepath.Join(dir, "state.db")
	case mpPostgres:
		dsn = pgtest.NewDatabase(t, pgtest.Start(t))
	}
	projectDir := filepath.Join(dir, "projects")
	fleet := randomName("mp-" + kind + "-")
	store, closeStore, err := mpOpen(ctx, kind, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeStore)
	if _, ok := store.(sl.DeckyLocker); !ok {
		t.Fatalf("%T is not a DeckyLocker", store)
	}
	for _, d := range mpFleet {
		d = d.Clone()
		d.Image = image
		if err := store.Put(ctx, "", d); err != nil {
			t.Fatal(err)
		}
	}
	composer, err := dockercompose.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		removeProjects(ctx, t, api, fleet)
		composer.Close()
	})
	m, err := sl.New(store, composer, mpRegistry(t, image), sl.WithFleetProject(fleet), sl.WithProjectDir(projectDir))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	dctx, dcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer dcancel()
	if err := m.Deploy(dctx, ""); err != nil {
		t.Fatal(err)
	}
	deployed := time.Since(t0)

	// The children.
	cctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	syncDir := filepath.Join(dir, "sync")
	if err := os.Mkdir(syncDir, 0o700); err != nil {
		t.Fatal(err)
	}
	env := []string{
		mpEnvKind + "=" + kind,
		mpEnvDSN + "=" + dsn,
		mpEnvDir + "=" + projectDir,
		mpEnvFleet + "=" + fleet,
		mpEnvImage + "=" + image,
	}
	rng := rand.New(rand.NewPCG(seed, 0x6d70))
	t1 := time.Now()
	reconciler := mpStart(cctx, t, "reconciler", append(slices.Clip(env), mpEnvRole+"="+mpRoleReconciler, mpEnvSync+"="+syncDir, mpEnvN+"="+strconv.Itoa(workers)))
	var children []*mpChild
	var wg sync.WaitGroup
	for i := range workers {
		s := rng.Uint64()
		c := mpStart(cctx, t, fmt.Sprintf("worker %d (seed %d)", i+1, s), append(slices.Clip(env),
			mpEnvRole+"="+mpRoleWorker, mpEnvID+"="+strconv.Itoa(i+1), mpEnvSync+"="+syncDir,
			mpEnvChSeed+"="+strconv.FormatUint(s, 10), mpEnvChOps+"="+strconv.Itoa(ops)))
		children = append(children, c)
		wg.Go(func() {
			c.err = c.cmd.Wait()
			c.took = time.Since(t1)
		})
	}
	wg.Wait()
	workersTook := time.Since(t1)
	// A worker that failed wrote no done file: stop the reconciler.
	if err := os.WriteFile(filepath.Join(syncDir, "stop"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	reconciler.err = reconciler.cmd.Wait()
	reconciler.took = time.Since(t1)
	children = append(children, reconciler)
	failed := false
	for _, c := range children {
		if c.err != nil {
			failed = true
			t.Errorf("%s failed after %v: %v\n%s", c.name, c.took.Round(time.Millisecond), c.err, c.out.String())
			continue
		}
		t.Logf("%s: %s", c.name, c.summary())
	}
	if cctx.Err() != nil {
		t.Fatalf("children did not end within 4 minutes")
	}
	if d, ok := mpLastPassLead(t, reconciler, syncDir); ok {
		t.Logf("the reconciler's last pass started %v before the last worker was done", d.Round(time.Millisecond))
	}

	// The checks, with no Reconcile (also after a child failed: what it
	// left is worth seeing).
	t2 := time.Now()
	problems := mpCheck(ctx, t, api, m, composer, store, filepath.Join(projectDir, fleet, "compose.yaml"))
	checked := time.Since(t2)
	if len(problems) > 0 {
		var outs strings.Builder
		if failed {
			outs.WriteString("(the children's output is above)\n")
			children = nil
		}
		for _, c := range children {
			fmt.Fprintf(&outs, "--- %s:\n%s", c.name, c.out.String())
		}
		t.Errorf("after every process exited, with no repair pass:\n  %s\n%s", strings.Join(problems, "\n  "), outs.String())
	}
	deckies, _ := store.List(ctx, "")
	keys := wantedKeys(deckies)

	// Teardown leaves nothing of the project (t.Cleanup removes what a
	// failed run left).
	if err := m.Teardown(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if left, err := observe(ctx, api, fleet); err != nil || len(left) > 0 {
		t.Fatalf("teardown left %v (%v)", slices.Sorted(maps.Keys(left)), err)
	}
	t.Logf("%s store: deploy %v, children %v (workers %v), checks %v; the fleet ends with %d compose keys: %v",
		kind, deployed.Round(time.Millisecond), reconciler.took.Round(time.Millisecond), workersTook.Round(time.Millisecond),
		checked.Round(time.Millisecond), len(keys), keys)
}

// mpCheck compares the engine, the Store and the compose files, and
// returns every difference.
func mpCheck(ctx context.Context, t *testing.T, api client.APIClient, m *sl.Manager, composer *dockercompose.Composer, store sl.Store, composeFile string) []string {
	t.Helper()
	var problems []string
	deckies, err := store.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	// No compose key twice in the Store (Project refuses a collision too).
	keys := wantedKeys(deckies)
	if dups := mpDuplicates(keys); len(dups) > 0 {
		problems = append(problems, fmt.Sprintf("store: compose keys used twice: %v", dups))
	}
	p, err := m.Project(ctx, "")
	if err != nil {
		problems = append(problems, fmt.Sprintf("store: render: %v", err))
	}
	// The engine: one running container per key, in its base's namespace,
	// labelled as its decky and service; nothing else.
	_, drifted, err := drift(ctx, api, m.ProjectName(""), deckies)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range drifted {
		problems = append(problems, "engine: "+d)
	}
	// Nothing diverged from the Store's rendering.
	if p != nil {
		cs, err := composer.Containers(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if c.Diverged {
				problems = append(problems, fmt.Sprintf("engine: %s (%s, decky %s) diverged from the store's rendering", c.Service, c.State, c.Decky))
			}
		}
	}
	// The compose files: the Store's keys, each labelled as its decky and service.
	problems = append(problems, mpFileDrift(ctx, composeFile, deckies)...)
	return problems
}

// mpDuplicates returns the sorted keys that occur more than once.
func mpDuplicates(sorted []string) []string {
	var dups []string
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] && (len(dups) == 0 || dups[len(dups)-1] != sorted[i]) {
			dups = append(dups, sorted[i])
		}
	}
	return dups
}

// mpFileDrift loads the scope's compose files with compose-go and compares
// their services, and each one's decky and service labels, with deckies.
func mpFileDrift(ctx context.Context, path string, deckies []sl.Decky) []string {
	opts, err := cli.NewProjectOptions([]string{path})
	if err != nil {
		return []string{"compose files: " + err.Error()}
	}
	p, err := opts.LoadProject(ctx)
	if err != nil {
		return []string{"compose files: " + err.Error()}
	}
	want := map[string]types.Labels{}
	for _, d := range deckies {
		want[d.Name] = types.Labels{sl.LabelDecky: d.Name, sl.LabelService: ""}
		for _, s := range d.Services {
			want[sl.ServiceKey(d.Name, s)] = types.Labels{sl.LabelDecky: d.Name, sl.LabelService: s}
		}
	}
	var problems []string
	if got, keys := slices.Sorted(maps.Keys(p.Services)), slices.Sorted(maps.Keys(want)); !slices.Equal(got, keys) {
		problems = append(problems, fmt.Sprintf("compose files: list %v, the store %v", got, keys))
	}
	for key, s := range p.Services {
		w, ok := want[key]
		if !ok {
			continue
		}
		for l, v := range w {
			if s.Labels[l] != v {
				problems = append(problems, fmt.Sprintf("compose files: %s: label %s=%q, want %q", key, l, s.Labels[l], v))
			}
		}
	}
	return problems
}
