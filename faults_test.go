package servicelive_test

// Fault injection matrix (issue 4, items 3 and 5): every step of AddService,
// RemoveService and UpdateServiceConfig (with and without WithRecreate)
// crossed with every meaningful fault kind — an error, a panic of the
// component or hook called at that step, the caller's ctx cancelled just
// before the step, the caller's deadline hit during the step — and, for each
// cell, the returned error, the Store, the compose files, the engine (running
// set, replaced containers, containers diverged from the Store), the events
// and the calls are exactly the ones the README's "Failure model" documents.
// Cells that leave drift are converged by Reconcile (or a retry) and checked
// to stay converged.
//
// Store panics are not recovered: they propagate out of the call (the
// decky's locks are released on the way, which every cell checks with a
// later call on the same decky). A panic of the undo's Store.Update leaves
// what a failing undo leaves, and Reconcile repairs it; a panic of
// RemoveService's Store.Update leaves the file without the service (it is
// not put back), which Reconcile rewrites.
//
// Every cell runs in a synctest bubble: time is fake, so a step that blocks
// until its ctx is done returns exactly at the deadline (10 s of fake time,
// 30 s for the rollback's detached context), instantly and deterministically.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	sl "github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
)

// callTimeout is the deadline of every faulted call (fake time).
const callTimeout = 10 * time.Second

// rollbackTimeout mirrors the library's bound on a rollback step (fake time).
const rollbackTimeout = 30 * time.Second

var (
	errStoreFault  = errors.New("injected store fault")
	errEngineFault = errors.New("injected engine fault")
	errDownFault   = errors.New("injected down fault")
	errBusFault    = errors.New("injected bus fault")
	errUndoFault   = errors.New("injected undo fault")
)

const (
	storePanic = "injected store panic"
	hookPanic  = "injected hook panic"
	enginePan  = "injected engine panic"
	busPanic   = "injected bus panic"
)

// faultKind is what happens at the targeted call.
type faultKind int

const (
	kindNone          faultKind = iota
	kindError                   // the call fails
	kindPanic                   // the call panics
	kindCancel                  // the caller's ctx is cancelled, then the call runs
	kindDeadline                // the call blocks until its ctx is done, and returns ctx.Err()
	kindCancelAfter             // the call runs, then the caller's ctx is cancelled
	kindDeadlineAfter           // the call runs, then waits for the caller's deadline
	kindRace                    // another process changes the decky, then the call runs
)

// storeFault targets the nth call (1-based) of one Store method.
type storeFault struct {
	method string // "get", "list" or "update"
	nth    int
	kind   faultKind
	race   func() // for kindRace
}

// faultStore is a Store that injects faults into chosen calls and logs every
// call as "<method> <ref or topology>".
type faultStore struct {
	sl.Store
	ctx    context.Context    // the caller's ctx of the cell, for kindDeadlineAfter
	cancel context.CancelFunc // cancels it, for kindCancel and kindCancelAfter

	mu        sync.Mutex
	faults    []storeFault
	n         map[string]int
	log       []string
	committed int // Updates that returned no error
}

// arm replaces the injected faults and forgets the calls counted and logged.
func (s *faultStore) arm(faults ...storeFault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults, s.n, s.log, s.committed = faults, map[string]int{}, nil, 0
}

func (s *faultStore) commits() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.committed
}

func (s *faultStore) calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

func (s *faultStore) around(ctx context.Context, method, target string, call func(context.Context) error) error {
	s.mu.Lock()
	if s.n == nil {
		s.n = map[string]int{}
	}
	s.n[method]++
	s.log = append(s.log, method+" "+target)
	var f storeFault
	for _, x := range s.faults {
		if x.method == method && x.nth == s.n[method] {
			f = x
		}
	}
	s.mu.Unlock()

	switch f.kind {
	case kindError:
		return errStoreFault
	case kindPanic:
		panic(storePanic)
	case kindCancel:
		s.cancel()
	case kindDeadline:
		<-ctx.Done()
		return ctx.Err()
	case kindRace:
		f.race()
	}
	err := call(ctx)
	switch f.kind {
	case kindCancelAfter:
		s.cancel()
	case kindDeadlineAfter:
		<-s.ctx.Done()
	}
	return err
}

func (s *faultStore) Get(ctx context.Context, ref sl.Ref) (d sl.Decky, err error) {
	err = s.around(ctx, "get", ref.String(), func(ctx context.Context) (err error) {
		d, err = s.Store.Get(ctx, ref)
		return err
	})
	return d, err
}

func (s *faultStore) List(ctx context.Context, topology string) (ds []sl.Decky, err error) {
	err = s.around(ctx, "list", topology, func(ctx context.Context) (err error) {
		ds, err = s.Store.List(ctx, topology)
		return err
	})
	return ds, err
}

func (s *faultStore) Update(ctx context.Context, ref sl.Ref, fn func(*sl.Decky) error) (d sl.Decky, err error) {
	err = s.around(ctx, "update", ref.String(), func(ctx context.Context) (err error) {
		d, err = s.Store.Update(ctx, ref, fn)
		if err == nil {
			s.mu.Lock()
			s.committed++
			s.mu.Unlock()
		}
		return err
	})
	return d, err
}

// faultBus wraps the fake Bus: it counts attempts and can panic or block.
type faultBus struct {
	*servicelivetest.Bus
	mu       sync.Mutex
	kind     faultKind
	attempts int
}

func (b *faultBus) set(k faultKind) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.kind = k
	if k == kindError {
		b.Bus.Fail(errBusFault)
	} else {
		b.Bus.Fail(nil)
	}
}

func (b *faultBus) tries() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.attempts
}

func (b *faultBus) Publish(ctx context.Context, e sl.Event) error {
	b.mu.Lock()
	b.attempts++
	k := b.kind
	b.mu.Unlock()
	switch k {
	case kindPanic:
		panic(busPanic)
	case kindDeadline:
		// A bus behind a network that does not answer: it gives up when
		// its ctx is done (or after an hour, so that a ctx that never
		// ends shows up as an hour of fake time instead of a deadlock).
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Hour):
			return errors.New("bus gave up after an hour")
		}
	}
	return b.Bus.Publish(ctx, e)
}

// faultEnv is a deployed fleet (web1 with http on decnet_lan, web2 bare;
// topology Lab with web1) behind a faultStore and a faultBus, with compose
// files in a temporary directory and one more registered service, "boom",
// whose Compose hook the cell controls.
type faultEnv struct {
	*env
	m         *sl.Manager
	view      *sl.Manager // over the bare Store: renders what it describes
	fs        *faultStore
	fb        *faultBus
	boom      atomic.Pointer[func(call int)] // the hook of "boom"; nil: no-op
	boomCalls atomic.Int32
	ctx       context.Context // the faulted call's ctx: deadline callTimeout
	cancel    context.CancelFunc
	after     []func() // run right after the faulted call returns
	t         *testing.T
	dir       string // the project directory
}

func newFaultEnv(t *testing.T, setup func(*testing.T, *faultEnv)) *faultEnv {
	t.Helper()
	// A strict engine, as production's: a service's Up fails while its
	// decky's base is not running (the Deploy below brings the bases up).
	f := &faultEnv{env: newStrictEnv(t), t: t}
	f.dir = t.TempDir()
	f.ctx, f.cancel = context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(f.cancel)
	reg := testRegistry(t)
	if err := reg.Register(sl.Service{Name: "boom", Image: "decnet/boom", Schema: []sl.Field{{Key: "level", Type: sl.FieldString}}, Compose: func(sl.Decky, sl.Config, *types.ServiceConfig) {
		n := f.boomCalls.Add(1)
		if h := f.boom.Load(); h != nil {
			(*h)(int(n))
		}
	}}); err != nil {
		t.Fatal(err)
	}
	f.fs = &faultStore{Store: f.mem, ctx: f.ctx, cancel: f.cancel}
	f.fb = &faultBus{Bus: f.bus}
	m, err := sl.New(f.fs, f.composer, reg, sl.WithBus(f.fb), sl.WithProjectDir(f.dir))
	if err != nil {
		t.Fatal(err)
	}
	f.m = m
	// view renders the Store as it is, behind the faults and the files.
	if f.view, err = sl.New(f.mem, f.composer, reg); err != nil {
		t.Fatal(err)
	}
	if err := m.Deploy(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(t, f)
	}
	f.disarm()
	f.composer.Reset()
	f.bus.Reset()
	f.fb.mu.Lock()
	f.fb.attempts = 0
	f.fb.mu.Unlock()
	return f
}

// setBoom sets the hook of "boom": h gets the 1-based number of the call,
// counted from now.
func (f *faultEnv) setBoom(h func(call int)) {
	f.boomCalls.Store(0)
	f.boom.Store(&h)
}

// disarm removes every injected fault.
func (f *faultEnv) disarm() {
	f.fs.arm()
	f.fb.set(kindNone)
	f.boom.Store(nil)
	f.composer.SetHook(nil)
	f.composer.FailNext(servicelivetest.OpUp, nil)
	f.composer.FailNext(servicelivetest.OpDown, nil)
}

// onCall makes the fake engine run fn on the calls "<op> <service>" listed.
func (f *faultEnv) onCall(fns map[string]func(ctx context.Context) error) {
	f.composer.SetHook(func(ctx context.Context, c servicelivetest.Call) error {
		if fn := fns[string(c.Op)+" "+c.Service]; fn != nil {
			return fn(ctx)
		}
		return nil
	})
}

// sabotage replaces <dir>/decnet/deckies with a regular file: every later
// write of a decky's compose file fails (ENOTDIR), even as root.
func (f *faultEnv) sabotage() {
	t := f.t
	t.Helper()
	dd := filepath.Join(f.dir, "decnet", "deckies")
	if err := os.RemoveAll(dd); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dd, []byte(sabotageContent), 0o644); err != nil {
		t.Fatal(err)
	}
}

const sabotageContent = "a file where the deckies directory belongs\n"

// unsabotage is what an operator does: remove the file in the way.
func (f *faultEnv) unsabotage(t *testing.T) {
	t.Helper()
	if err := os.Remove(filepath.Join(f.dir, "decnet", "deckies")); err != nil {
		t.Fatal(err)
	}
}

// snapshot is the state a cell is judged by.
type snapshot struct {
	store   map[string][]sl.Decky // by topology
	files   map[string]string     // path relative to the project dir → content ("<dir>" for directories)
	running []string
	ids     map[string]string // compose key → container ID, in the fleet's project
}

func (f *faultEnv) snap(t *testing.T) snapshot {
	t.Helper()
	s := snapshot{store: map[string][]sl.Decky{}, files: map[string]string{}, running: f.composer.Running(), ids: map[string]string{}}
	for _, key := range f.composer.RunningIn("decnet") {
		s.ids[key] = f.composer.ContainerID("decnet", key)
	}
	for _, topology := range []string{"", "Lab"} {
		ds, err := f.mem.List(context.Background(), topology)
		if err != nil {
			t.Fatal(err)
		}
		for i := range ds { // nil and empty are the same content
			if len(ds[i].Services) == 0 {
				ds[i].Services = nil
			}
			if len(ds[i].Config) == 0 {
				ds[i].Config = nil
			}
		}
		s.store[topology] = ds
	}
	err := filepath.WalkDir(f.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(f.dir, p)
		if d.IsDir() {
			s.files[rel] = "<dir>"
			return nil
		}
		b, err := os.ReadFile(p)
		s.files[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sabotaged is files as sabotage leaves them.
func sabotaged(files map[string]string) map[string]string {
	out := map[string]string{}
	for p, c := range files {
		if !strings.HasPrefix(p, filepath.Join("decnet", "deckies")) {
			out[p] = c
		}
	}
	out[filepath.Join("decnet", "deckies")] = sabotageContent
	return out
}

func storeEqual(a, b map[string][]sl.Decky) bool {
	return fmt.Sprintf("%#v", a) == fmt.Sprintf("%#v", b)
}

func diffFiles(a, b map[string]string) string {
	var out []string
	for _, p := range slices.Sorted(maps.Keys(a)) {
		if bc, ok := b[p]; !ok {
			out = append(out, "only before: "+p)
		} else if bc != a[p] {
			out = append(out, fmt.Sprintf("changed: %s\n--- got\n%s--- want\n%s", p, a[p], bc))
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			out = append(out, "missing: "+p)
		}
	}
	return strings.Join(out, "\n")
}

// replacedKeys returns the sorted keys that run in both snapshots, with
// another container in b than in a.
func replacedKeys(a, b snapshot) []string {
	var out []string
	for key, id := range a.ids {
		if bid, ok := b.ids[key]; ok && bid != id {
			out = append(out, key)
		}
	}
	slices.Sort(out)
	return out
}

// divergedKeys returns the sorted keys of the fleet's containers that differ
// from what the Store describes now (a container kept its old configuration).
func divergedKeys(t *testing.T, f *faultEnv) []string {
	t.Helper()
	ctx := context.Background()
	p, err := f.view.Project(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := f.composer.Containers(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range cs {
		if c.Diverged {
			out = append(out, c.Service)
		}
	}
	return out
}

// storeKeys returns every compose service key the fleet's Store describes.
func storeKeys(t *testing.T, f *faultEnv) []string {
	t.Helper()
	ds, err := f.mem.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, d := range ds {
		keys = append(keys, d.ComposeKeys()...)
	}
	slices.Sort(keys)
	return keys
}

// faultCell is one cell of the matrix.
type faultCell struct {
	name     string
	op       string // "add", "remove" or "update"
	recreate bool   // "update": WithRecreate
	ref      sl.Ref // default: fleet/web2 (add), fleet/web1 (remove, update)
	svc      string // default: ssh (add, update), http (remove)
	cfg      sl.Config
	setup    func(t *testing.T, f *faultEnv) // state before the snapshot
	inject   func(t *testing.T, f *faultEnv) // the fault

	// The outcome.
	wantErr     []error  // exactly these of faultKnownErrs (and, for "update", of faultClassErrs) match; none and no wantMsg: success
	wantMsg     string   // substrings of the error's message, "|"-separated
	wantConfig  bool     // the error is a *ConfigError
	stage       sl.Stage // the Stage of the first *sl.Error in the error's tree (required for "update")
	wantPanic   any      // the call panics with this value
	store       string   // "before" (default) or "after" (as a fault-free call leaves it)
	files       string   // "before" (default), "after" or "sabotaged"
	plus, minus []string
	running     string   // "before" (default, with plus and minus) or "after"
	replaced    []string // keys running before and after, in another container
	diverged    []string // keys whose container differs from what the Store describes
	storeCalls  []string
	calls       []string // composer calls, "<op> <service>"
	events      bool     // the fault-free call's event was published
	attempts    int      // Bus.Publish attempts
	elapsed     time.Duration

	// Convergence.
	drift bool                            // the state needs Reconcile (else Reconcile must change nothing)
	fix   func(t *testing.T, f *faultEnv) // what an operator fixes first
	retry bool                            // converge by retrying the call instead
}

var faultKnownErrs = []error{
	sl.ErrNotFound, sl.ErrConflict, sl.ErrInvalidService,
	context.Canceled, context.DeadlineExceeded,
	errStoreFault, errEngineFault, errDownFault, errBusFault, errUndoFault, syscall.ENOTDIR,
}

// faultClassErrs are the failure classes, checked on the "update" cells.
var faultClassErrs = []error{sl.ErrEngine, sl.ErrStore}

func (c *faultCell) defaults() {
	switch c.op {
	case "add":
		if c.ref == (sl.Ref{}) {
			c.ref = sl.FleetDecky("web2")
		}
		if c.svc == "" {
			c.svc = "ssh"
		}
		if c.cfg == nil {
			c.cfg = sl.Config{"port": "2222"}
		}
	case "remove":
		if c.ref == (sl.Ref{}) {
			c.ref = sl.FleetDecky("web1")
		}
		if c.svc == "" {
			c.svc = "http"
		}
	case "update":
		if c.ref == (sl.Ref{}) {
			c.ref = sl.FleetDecky("web1")
		}
		if c.svc == "" {
			c.svc = "ssh"
		}
		if c.cfg == nil {
			c.cfg = sl.Config{"banner": "new"}
			if c.svc == "boom" {
				c.cfg = sl.Config{"level": "high"}
			}
		}
		if c.setup == nil {
			c.setup = addOldSSHToWeb1
		}
	}
	if c.store == "" {
		c.store = "before"
	}
	if c.files == "" {
		c.files = "before"
	}
	if c.running == "" {
		c.running = "before"
	}
}

//lint:ignore ST1008 the panic comes last: it is what the call did not return
func (c *faultCell) run(ctx context.Context, m *sl.Manager) (got []string, err error, panicked any) {
	defer func() { panicked = recover() }()
	switch c.op {
	case "add":
		got, err = m.AddService(ctx, c.ref, c.svc, sl.WithConfig(c.cfg))
	case "remove":
		got, err = m.RemoveService(ctx, c.ref, c.svc)
	case "update":
		var opts []sl.UpdateOption
		if c.recreate {
			opts = append(opts, sl.WithRecreate())
		}
		err = m.UpdateServiceConfig(ctx, c.ref, c.svc, c.cfg, opts...)
	}
	return got, err, nil
}

func (c *faultCell) needsTwin() bool {
	return c.store == "after" || c.files == "after" || c.running == "after" || c.events || c.retry
}

// twin runs the cell's call without any fault, on a fresh environment.
type twinResult struct {
	snap   snapshot
	got    []string
	events []sl.Event
}

func (c *faultCell) twin(t *testing.T) twinResult {
	t.Helper()
	f := newFaultEnv(t, c.setup)
	got, err, p := c.run(f.ctx, f.m)
	if err != nil || p != nil {
		t.Fatalf("fault-free twin: %v, panic %v", err, p)
	}
	return twinResult{snap: f.snap(t), got: got, events: f.bus.Events()}
}

func checkFaultErr(t *testing.T, err error, c faultCell) {
	t.Helper()
	if len(c.wantErr) == 0 && c.wantMsg == "" {
		if err != nil {
			t.Fatalf("err = %v, want success", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("err = nil, want %v %q", c.wantErr, c.wantMsg)
	}
	if !strings.HasPrefix(err.Error(), "servicelive: ") {
		t.Errorf("message %q lacks the package prefix", err)
	}
	known := faultKnownErrs
	if c.op == "update" {
		known = append(slices.Clip(known), faultClassErrs...)
	}
	for _, k := range known {
		if want := slices.Contains(c.wantErr, k); errors.Is(err, k) != want {
			t.Errorf("errors.Is(err, %q) = %v, want %v; err = %v", k, !want, want, err)
		}
	}
	if c.stage == "" && c.op == "update" {
		t.Errorf("the cell names no stage; err = %v", err)
	}
	if c.stage != "" {
		var e *sl.Error
		if !errors.As(err, &e) {
			t.Errorf("err %v is no *servicelive.Error, want stage %q", err, c.stage)
		} else if e.Stage != c.stage {
			t.Errorf("stage of %v: got %q, want %q", err, e.Stage, c.stage)
		}
	}
	for _, s := range strings.Split(c.wantMsg, "|") {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("err = %q, want it to mention %q", err, s)
		}
	}
	var ce *sl.ConfigError
	if errors.As(err, &ce) != c.wantConfig {
		t.Errorf("errors.As(*ConfigError) = %v, want %v", !c.wantConfig, c.wantConfig)
	}
}

// faultEventEqual is eventEqual, configuration keys and Applied included.
func faultEventEqual(a, b sl.Event) bool {
	return eventEqual(a, b) && slices.Equal(a.ConfigKeys, b.ConfigKeys) && a.Applied == b.Applied
}

func runFaultCell(t *testing.T, c faultCell) {
	c.defaults()
	synctest.Test(t, func(t *testing.T) {
		var tw twinResult
		if c.needsTwin() {
			tw = c.twin(t)
		}
		f := newFaultEnv(t, c.setup)
		before := f.snap(t)
		if c.inject != nil {
			c.inject(t, f)
		}
		start := time.Now()
		got, err, panicked := c.run(f.ctx, f.m)
		elapsed := time.Since(start)
		for _, fn := range f.after {
			fn()
		}

		// The caller sees.
		if panicked != c.wantPanic {
			t.Fatalf("panic = %v, want %v (err %v)", panicked, c.wantPanic, err)
		}
		checkFaultErr(t, err, c)
		if err == nil && panicked == nil && !slices.Equal(got, tw.got) {
			t.Errorf("services = %v, want %v", got, tw.got)
		}
		if elapsed != c.elapsed {
			t.Errorf("returned after %v (fake time), want %v", elapsed, c.elapsed)
		}

		// Store, files, engine, events, calls.
		after := f.snap(t)
		wantStore := before.store
		if c.store == "after" {
			wantStore = tw.snap.store
		}
		if !storeEqual(after.store, wantStore) {
			t.Errorf("store (%s expected):\n got %+v\nwant %+v", c.store, after.store[""], wantStore[""])
		}
		var wantFiles map[string]string
		switch c.files {
		case "before":
			wantFiles = before.files
		case "after":
			wantFiles = tw.snap.files
		case "sabotaged":
			wantFiles = sabotaged(before.files)
		}
		if d := diffFiles(after.files, wantFiles); d != "" {
			t.Errorf("compose files (%s expected):\n%s", c.files, d)
		}
		wantRunning := slices.Clone(before.running)
		if c.running == "after" {
			wantRunning = slices.Clone(tw.snap.running)
		}
		wantRunning = slices.DeleteFunc(append(wantRunning, c.plus...), func(k string) bool { return slices.Contains(c.minus, k) })
		slices.Sort(wantRunning)
		if !slices.Equal(after.running, wantRunning) {
			t.Errorf("running = %v, want %v", after.running, wantRunning)
		}
		var wantEvents []sl.Event
		if c.events {
			wantEvents = tw.events
		}
		ev := f.bus.Events()
		if !slices.EqualFunc(ev, wantEvents, faultEventEqual) {
			t.Errorf("events = %+v, want %+v", ev, wantEvents)
		}
		if c.op == "update" && c.events && (len(ev) != 1 || ev[0].Kind != sl.ServiceConfigChanged || ev[0].Applied != c.recreate ||
			!slices.Equal(ev[0].ConfigKeys, slices.Sorted(maps.Keys(c.cfg)))) {
			t.Errorf("events = %+v, want one %s of %v, applied %v", ev, sl.ServiceConfigChanged, slices.Sorted(maps.Keys(c.cfg)), c.recreate)
		}
		if r := replacedKeys(before, after); !slices.Equal(r, c.replaced) {
			t.Errorf("containers replaced: %v, want %v", r, c.replaced)
		}
		if n := f.fb.tries(); n != c.attempts {
			t.Errorf("%d publish attempts, want %d", n, c.attempts)
		}
		if sc := f.fs.calls(); !slices.Equal(sc, c.storeCalls) {
			t.Errorf("store calls = %q, want %q", sc, c.storeCalls)
		}
		if cc := callOps(f.composer.Calls()); !slices.Equal(cc, c.calls) {
			t.Errorf("composer calls = %q, want %q", cc, c.calls)
		}

		// Convergence.
		f.disarm()
		ctx := context.Background()
		diverged := divergedKeys(t, f)
		if !slices.Equal(diverged, c.diverged) {
			t.Errorf("containers diverged from the store: %v, want %v", diverged, c.diverged)
		}
		convergedFiles := before.files
		if c.store == "after" {
			convergedFiles = tw.snap.files
		}
		if c.fix != nil {
			c.fix(t, f)
		}
		switch {
		case c.retry:
			if _, err, p := c.run(ctx, f.m); err != nil || p != nil {
				t.Fatalf("retry: %v, panic %v", err, p)
			}
			if s := f.snap(t); !storeEqual(s.store, tw.snap.store) || !slices.Equal(s.running, tw.snap.running) || diffFiles(s.files, tw.snap.files) != "" {
				t.Errorf("after the retry: %+v, want %+v", s, tw.snap)
			}
			checkConverged(t, f, tw.snap.files)
		case c.drift:
			if s := f.snap(t); slices.Equal(s.running, storeKeys(t, f)) && diffFiles(s.files, convergedFiles) == "" && len(diverged) == 0 {
				t.Errorf("no drift to repair: running %v, files as the store says, no container diverged", s.running)
			}
			if _, err := f.m.Reconcile(ctx, ""); err != nil {
				t.Fatalf("reconcile: %v", err)
			}
			checkConverged(t, f, convergedFiles)
		default:
			checkConverged(t, f, convergedFiles)
		}

		// The decky (and its lock) is usable afterwards.
		f.composer.Reset()
		ctx2, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		decky := "web2"
		if c.op != "add" {
			decky = "web1"
		}
		if _, err := f.m.AddService(ctx2, sl.FleetDecky(decky), "c"); err != nil {
			t.Errorf("a later call on %s: %v", decky, err)
		}
	})
}

// checkConverged checks that the engine runs exactly what the Store
// describes, that the files are wantFiles, and that Reconcile changes
// nothing.
func checkConverged(t *testing.T, f *faultEnv, wantFiles map[string]string) {
	t.Helper()
	ctx := context.Background()
	if got, want := f.composer.Running(), storeKeys(t, f); !slices.Equal(got, want) {
		t.Errorf("engine runs %v, the store describes %v", got, want)
	}
	f.composer.Reset()
	before := f.snap(t)
	rep, err := f.m.Reconcile(ctx, "")
	if err != nil || rep.Changed() != 0 {
		t.Errorf("reconcile of a converged state: changed %d, %v (%+v)", rep.Changed(), err, rep.Containers)
	}
	if cc := f.composer.Calls(); len(cc) != 0 {
		t.Errorf("reconcile of a converged state called the engine: %q", callOps(cc))
	}
	after := f.snap(t)
	if !storeEqual(after.store, before.store) || !slices.Equal(after.running, before.running) {
		t.Errorf("reconcile changed the state")
	}
	if d := diffFiles(after.files, wantFiles); d != "" {
		t.Errorf("compose files after convergence:\n%s", d)
	}
}

// deployDone is what the Deploy of holdLock asks of the Store once it has
// released the lock: the scope's deckies, for compose.yaml. The faulted
// call itself makes no Store call.
var deployDone = []string{"list "}

// holdLock keeps the lock of decky (a fleet decky) taken by a Deploy whose
// last Up, of key, blocks until the faulted call has returned.
func holdLock(t *testing.T, f *faultEnv, key string) {
	release, done := make(chan struct{}), make(chan error)
	f.onCall(map[string]func(context.Context) error{"up " + key: func(context.Context) error { <-release; return nil }})
	go func() { done <- f.m.Deploy(context.Background(), "") }()
	synctest.Wait()
	f.composer.Reset()
	f.fs.arm()
	f.after = append(f.after, func() {
		close(release)
		if err := <-done; err != nil {
			t.Errorf("the Deploy holding the lock: %v", err)
		}
	})
}

func storeAt(faults ...storeFault) func(*testing.T, *faultEnv) {
	return func(t *testing.T, f *faultEnv) { f.fs.arm(faults...) }
}

func busFault(k faultKind) func(*testing.T, *faultEnv) {
	return func(t *testing.T, f *faultEnv) { f.fb.set(k) }
}

func boomHook(h func(f *faultEnv, call int)) func(*testing.T, *faultEnv) {
	return func(t *testing.T, f *faultEnv) { f.setBoom(func(n int) { h(f, n) }) }
}

func engineAt(fns func(f *faultEnv) map[string]func(context.Context) error) func(*testing.T, *faultEnv) {
	return func(t *testing.T, f *faultEnv) { f.onCall(fns(f)) }
}

func blockUntilDone(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }

func addBoomToWeb1(t *testing.T, f *faultEnv) {
	if _, err := f.m.AddService(context.Background(), sl.FleetDecky("web1"), "boom"); err != nil {
		t.Fatal(err)
	}
}

func cancelFirst(t *testing.T, f *faultEnv) { f.cancel() }

func sabotageFiles(t *testing.T, f *faultEnv) { f.sabotage() }

func unsabotageFiles(t *testing.T, f *faultEnv) { f.unsabotage(t) }

// addFaultCells: AddService(fleet/web2, ssh, port 2222) unless said otherwise.
func addFaultCells() []faultCell {
	var (
		getKey  = []string{"get fleet/web2-ssh"}
		updated = []string{"get fleet/web2-ssh", "update fleet/web2"}
		undone  = []string{"get fleet/web2-ssh", "update fleet/web2", "update fleet/web2"}
		boomed  = []string{"get fleet/web2-boom", "update fleet/web2", "update fleet/web2"}
		upDown  = []string{"up web2-ssh", "down web2-ssh"}
		upFails = engineAt(func(f *faultEnv) map[string]func(context.Context) error {
			return map[string]func(context.Context) error{"up web2-ssh": func(context.Context) error { return errEngineFault }}
		})
		// Up fails after leaving a (half made) container behind.
		upLeaves = func(down func(context.Context) error) func(*testing.T, *faultEnv) {
			return engineAt(func(f *faultEnv) map[string]func(context.Context) error {
				return map[string]func(context.Context) error{
					"up web2-ssh":   func(context.Context) error { f.composer.Inject("decnet", "web2-ssh", "web2"); return errEngineFault },
					"down web2-ssh": down,
				}
			})
		}
		// The cleanup Down runs on a detached ctx: the caller's end does not reach it.
		detachedDown = func(ctx context.Context) error {
			if ctx.Err() != nil {
				return fmt.Errorf("cleanup Down got a done ctx: %w", ctx.Err())
			}
			return nil
		}
	)
	return []faultCell{
		// Names, registry, config: refused before any I/O.
		{name: "name/bad decky name", ref: sl.FleetDecky("Web2"), wantErr: []error{sl.ErrInvalidService}},
		{name: "name/bad service name", svc: "ssh;rm", wantErr: []error{sl.ErrInvalidService}},
		{name: "name/ctx cancelled: validation first", ref: sl.FleetDecky("Web2"), inject: cancelFirst, wantErr: []error{sl.ErrInvalidService}},
		{name: "registry/unknown service", svc: "telnet", wantErr: []error{sl.ErrInvalidService}},
		{name: "registry/fleet singleton", svc: "llmnr", wantErr: []error{sl.ErrInvalidService}},
		{name: "config/bad value", cfg: sl.Config{"port": "eighty"}, wantErr: []error{sl.ErrInvalidService}, wantConfig: true},

		// The decky's lock.
		{name: "lock/deadline while waiting", inject: func(t *testing.T, f *faultEnv) { holdLock(t, f, "web2") },
			wantErr: []error{context.DeadlineExceeded}, elapsed: callTimeout, storeCalls: deployDone},

		// The compose-key collision check (Store.Get).
		{name: "store read/error", inject: storeAt(storeFault{"get", 1, kindError, nil}),
			wantErr: []error{errStoreFault}, storeCalls: getKey},
		{name: "store read/panic propagates", inject: storeAt(storeFault{"get", 1, kindPanic, nil}),
			wantPanic: storePanic, storeCalls: getKey},
		{name: "store read/ctx cancelled", inject: storeAt(storeFault{"get", 1, kindCancel, nil}),
			wantErr: []error{context.Canceled}, storeCalls: getKey},
		{name: "store read/deadline", inject: storeAt(storeFault{"get", 1, kindDeadline, nil}),
			wantErr: []error{context.DeadlineExceeded}, storeCalls: getKey, elapsed: callTimeout},

		// Store.Update.
		{name: "store update/error", inject: storeAt(storeFault{"update", 1, kindError, nil}),
			wantErr: []error{errStoreFault}, storeCalls: updated},
		{name: "store update/panic propagates", inject: storeAt(storeFault{"update", 1, kindPanic, nil}),
			wantPanic: storePanic, storeCalls: updated},
		{name: "store update/ctx cancelled", inject: storeAt(storeFault{"update", 1, kindCancel, nil}),
			wantErr: []error{context.Canceled}, storeCalls: updated},
		{name: "store update/deadline", inject: storeAt(storeFault{"update", 1, kindDeadline, nil}),
			wantErr: []error{context.DeadlineExceeded}, storeCalls: updated, elapsed: callTimeout},

		// Render: the registry's Compose hook (it gets no ctx: a ctx that
		// ends while it runs is seen by the file write that follows).
		{name: "render/hook panic", svc: "boom", inject: boomHook(func(*faultEnv, int) { panic(hookPanic) }),
			wantMsg: "compose hook of service boom panicked: " + hookPanic, storeCalls: boomed},
		{name: "render/ctx cancelled while the hook runs", svc: "boom", inject: boomHook(func(f *faultEnv, _ int) { f.cancel() }),
			wantErr: []error{context.Canceled}, wantMsg: "write compose file", storeCalls: boomed},
		{name: "render/deadline while the hook runs", svc: "boom", inject: boomHook(func(f *faultEnv, n int) {
			if n == 1 {
				<-f.ctx.Done()
			}
		}), wantErr: []error{context.DeadlineExceeded}, wantMsg: "write compose file", storeCalls: boomed, elapsed: callTimeout},

		// The decky's compose file.
		{name: "file write/error", inject: sabotageFiles, fix: unsabotageFiles,
			wantErr: []error{syscall.ENOTDIR}, wantMsg: "write compose file", files: "sabotaged", storeCalls: undone},
		{name: "file write/hook panic while rendering the file", svc: "boom", inject: boomHook(func(_ *faultEnv, n int) {
			if n == 2 {
				panic(hookPanic)
			}
		}), wantMsg: "write compose file|compose hook of service boom panicked: " + hookPanic, storeCalls: boomed},
		{name: "file write/ctx cancelled", inject: storeAt(storeFault{"update", 1, kindCancelAfter, nil}),
			wantErr: []error{context.Canceled}, wantMsg: "write compose file", storeCalls: undone},
		{name: "file write/deadline", inject: storeAt(storeFault{"update", 1, kindDeadlineAfter, nil}),
			wantErr: []error{context.DeadlineExceeded}, wantMsg: "write compose file", storeCalls: undone, elapsed: callTimeout},

		// Composer.Up: Down cleans up, then the Store and the file are undone.
		{name: "up/error", inject: upFails,
			wantErr: []error{errEngineFault}, wantMsg: "engine", storeCalls: undone, calls: upDown, retry: true},
		{name: "up/panic", inject: engineAt(func(*faultEnv) map[string]func(context.Context) error {
			return map[string]func(context.Context) error{"up web2-ssh": func(context.Context) error { panic(enginePan) }}
		}), wantMsg: "composer up web2-ssh panicked: " + enginePan, storeCalls: undone, calls: upDown},
		{name: "up/ctx cancelled", inject: engineAt(func(f *faultEnv) map[string]func(context.Context) error {
			return map[string]func(context.Context) error{
				"up web2-ssh":   func(ctx context.Context) error { f.cancel(); return ctx.Err() },
				"down web2-ssh": detachedDown,
			}
		}), wantErr: []error{context.Canceled}, storeCalls: undone, calls: upDown},
		{name: "up/deadline", inject: engineAt(func(f *faultEnv) map[string]func(context.Context) error {
			return map[string]func(context.Context) error{"up web2-ssh": blockUntilDone, "down web2-ssh": detachedDown}
		}), wantErr: []error{context.DeadlineExceeded}, storeCalls: undone, calls: upDown, elapsed: callTimeout, retry: true},

		// Composer.Down of the rollback's cleanup fails: the container Up
		// left stays, Store and file are undone; Reconcile removes it.
		{name: "rollback down/error", inject: upLeaves(func(context.Context) error { return errDownFault }),
			wantErr: []error{errEngineFault, errDownFault}, wantMsg: "rollback: remove container of web2-ssh",
			storeCalls: undone, calls: upDown, plus: []string{"web2-ssh"}, drift: true},
		{name: "rollback down/panic", inject: upLeaves(func(context.Context) error { panic(enginePan) }),
			wantErr: []error{errEngineFault}, wantMsg: "composer down web2-ssh panicked: " + enginePan,
			storeCalls: undone, calls: upDown, plus: []string{"web2-ssh"}, drift: true},
		{name: "rollback down/deadline of its detached ctx", inject: upLeaves(blockUntilDone),
			wantErr: []error{errEngineFault, context.DeadlineExceeded}, wantMsg: "rollback: remove container of web2-ssh",
			storeCalls: undone, calls: upDown, plus: []string{"web2-ssh"}, elapsed: rollbackTimeout, drift: true},

		// The undo itself fails: both errors; the Store (and file) still
		// list the service, its container is gone; Reconcile creates it.
		{name: "rollback update/error", inject: func(t *testing.T, f *faultEnv) {
			upFails(t, f)
			f.fs.arm(storeFault{"update", 2, kindError, nil})
		}, wantErr: []error{errEngineFault, errStoreFault}, wantMsg: "rollback failed",
			store: "after", files: "after", storeCalls: undone, calls: upDown, drift: true},
		{name: "rollback update/panic propagates", inject: func(t *testing.T, f *faultEnv) {
			upFails(t, f)
			f.fs.arm(storeFault{"update", 2, kindPanic, nil})
		}, wantPanic: storePanic, store: "after", files: "after", storeCalls: undone, calls: upDown, drift: true},
		{name: "rollback update/deadline of its detached ctx", inject: func(t *testing.T, f *faultEnv) {
			upFails(t, f)
			f.fs.arm(storeFault{"update", 2, kindDeadline, nil})
		}, wantErr: []error{errEngineFault, context.DeadlineExceeded}, wantMsg: "rollback failed",
			store: "after", files: "after", storeCalls: undone, calls: upDown, elapsed: rollbackTimeout, drift: true},
		{name: "rollback file write/error", inject: engineAt(func(f *faultEnv) map[string]func(context.Context) error {
			return map[string]func(context.Context) error{"up web2-ssh": func(context.Context) error { f.sabotage(); return errEngineFault }}
		}), wantErr: []error{errEngineFault, syscall.ENOTDIR}, wantMsg: "rollback failed",
			files: "sabotaged", storeCalls: undone, calls: upDown, drift: true, fix: unsabotageFiles},

		// Bus.Publish: best effort, the change is kept. A Bus that blocks
		// until its ctx is done must not hold the call past the caller's
		// deadline (issue 4, item 5): the call returns then, successfully
		// (the change is committed), and the event is lost like after an
		// error. (Fails today: publish hands the Bus context.WithoutCancel(ctx),
		// which has no deadline, so the call waits for as long as the Bus
		// does — here the fake's one-hour fail-safe.)
		{name: "publish/error", inject: busFault(kindError),
			store: "after", files: "after", running: "after", storeCalls: updated, calls: []string{"up web2-ssh"}, attempts: 1},
		{name: "publish/panic", inject: busFault(kindPanic),
			store: "after", files: "after", running: "after", storeCalls: updated, calls: []string{"up web2-ssh"}, attempts: 1},
		{name: "publish/ctx cancelled after Up: still published", inject: engineAt(func(f *faultEnv) map[string]func(context.Context) error {
			return map[string]func(context.Context) error{"up web2-ssh": func(context.Context) error { f.cancel(); return nil }}
		}), store: "after", files: "after", running: "after", storeCalls: updated, calls: []string{"up web2-ssh"}, events: true, attempts: 1},
		// The change is committed: publishing runs on a detached context
		// bounded by the Manager's publish timeout (5 s), so a hanging Bus
		// holds the call that long at most, whatever the caller's context.
		{name: "publish/hangs: bounded by the publish timeout", inject: busFault(kindDeadline),
			store: "after", files: "after", running: "after", storeCalls: updated, calls: []string{"up web2-ssh"}, attempts: 1, elapsed: publishTimeout},
	}
}

// removeFaultCells: RemoveService(fleet/web1, http) unless said otherwise.
func removeFaultCells() []faultCell {
	var (
		get     = []string{"get fleet/web1"}
		updated = []string{"get fleet/web1", "update fleet/web1"}
		down    = []string{"down web1-http"}
	)
	return []faultCell{
		{name: "name/bad decky name", ref: sl.FleetDecky("web_1"), wantErr: []error{sl.ErrInvalidService}},
		{name: "name/bad service name", svc: "HTTP", wantErr: []error{sl.ErrInvalidService}},
		{name: "name/ctx cancelled: validation first", svc: "HTTP", inject: cancelFirst, wantErr: []error{sl.ErrInvalidService}},

		{name: "lock/deadline while waiting", inject: func(t *testing.T, f *faultEnv) { holdLock(t, f, "web1-http") },
			wantErr: []error{context.DeadlineExceeded}, elapsed: callTimeout, storeCalls: deployDone},

		{name: "store read/error", inject: storeAt(storeFault{"get", 1, kindError, nil}),
			wantErr: []error{errStoreFault}, storeCalls: get},
		{name: "store read/panic propagates", inject: storeAt(storeFault{"get", 1, kindPanic, nil}),
			wantPanic: storePanic, storeCalls: get},
		{name: "store read/ctx cancelled", inject: storeAt(storeFault{"get", 1, kindCancel, nil}),
			wantErr: []error{context.Canceled}, storeCalls: get},
		{name: "store read/deadline", inject: storeAt(storeFault{"get", 1, kindDeadline, nil}),
			wantErr: []error{context.DeadlineExceeded}, storeCalls: get, elapsed: callTimeout},

		// Render: identity alone for the engine; the file renders the
		// services that stay, hooks included.
		{name: "render/hook of the removed service panics: removal works", setup: addBoomToWeb1, svc: "boom",
			inject: boomHook(func(*faultEnv, int) { panic(hookPanic) }),
			store:  "after", files: "after", running: "after", storeCalls: []string{"get fleet/web1", "update fleet/web1"},
			calls: []string{"down web1-boom"}, events: true, attempts: 1},
		{name: "file write/hook of a remaining service panics", setup: addBoomToWeb1,
			inject:  boomHook(func(*faultEnv, int) { panic(hookPanic) }),
			wantMsg: "write compose file|compose hook of service boom panicked: " + hookPanic, storeCalls: get},

		{name: "file write/error", inject: sabotageFiles, fix: unsabotageFiles,
			wantErr: []error{syscall.ENOTDIR}, wantMsg: "write compose file", files: "sabotaged", storeCalls: get},
		{name: "file write/ctx cancelled", inject: storeAt(storeFault{"get", 1, kindCancelAfter, nil}),
			wantErr: []error{context.Canceled}, wantMsg: "write compose file", storeCalls: get},
		{name: "file write/deadline", inject: storeAt(storeFault{"get", 1, kindDeadlineAfter, nil}),
			wantErr: []error{context.DeadlineExceeded}, wantMsg: "write compose file", storeCalls: get, elapsed: callTimeout},

		// Composer.Down: the file is put back, the Store untouched.
		{name: "down/error", inject: func(t *testing.T, f *faultEnv) { f.composer.FailNext(servicelivetest.OpDown, errEngineFault) },
			wantErr: []error{errEngineFault}, wantMsg: "engine", storeCalls: get, calls: down, retry: true},
		{name: "down/panic", inject: engineAt(func(*faultEnv) map[string]func(context.Context) error {
			return map[string]func(context.Context) error{"down web1-http": func(context.Context) error { panic(enginePan) }}
		}), wantMsg: "composer down web1-http panicked: " + enginePan, storeCalls: get, calls: down},
		{name: "down/ctx cancelled", inject: engineAt(func(f *faultEnv) map[string]func(context.Context) error {
			return map[string]func(context.Context) error{"down web1-http": func(ctx context.Context) error { f.cancel(); return ctx.Err() }}
		}), wantErr: []error{context.Canceled}, storeCalls: get, calls: down},
		{name: "down/deadline", inject: engineAt(func(*faultEnv) map[string]func(context.Context) error {
			return map[string]func(context.Context) error{"down web1-http": blockUntilDone}
		}), wantErr: []error{context.DeadlineExceeded}, storeCalls: get, calls: down, elapsed: callTimeout},
		{name: "down/error, putting the file back fails too", inject: engineAt(func(f *faultEnv) map[string]func(context.Context) error {
			return map[string]func(context.Context) error{"down web1-http": func(context.Context) error { f.sabotage(); return errEngineFault }}
		}), wantErr: []error{errEngineFault, syscall.ENOTDIR}, wantMsg: "restore compose file",
			files: "sabotaged", storeCalls: get, calls: down, drift: true, fix: unsabotageFiles},

		// Store.Update after Down: the container is gone, the file put
		// back, the Store still lists the service.
		{name: "store update/error", inject: storeAt(storeFault{"update", 1, kindError, nil}),
			wantErr: []error{errStoreFault}, storeCalls: updated, calls: down, minus: []string{"web1-http"}, drift: true},
		{name: "store update/error, then a retry", inject: storeAt(storeFault{"update", 1, kindError, nil}),
			wantErr: []error{errStoreFault}, storeCalls: updated, calls: down, minus: []string{"web1-http"}, retry: true},
		{name: "store update/panic propagates", inject: storeAt(storeFault{"update", 1, kindPanic, nil}),
			wantPanic: storePanic, files: "after", storeCalls: updated, calls: down, minus: []string{"web1-http"}, drift: true},
		{name: "store update/ctx cancelled", inject: storeAt(storeFault{"update", 1, kindCancel, nil}),
			wantErr: []error{context.Canceled}, storeCalls: updated, calls: down, minus: []string{"web1-http"}, drift: true},
		{name: "store update/deadline", inject: storeAt(storeFault{"update", 1, kindDeadline, nil}),
			wantErr: []error{context.DeadlineExceeded}, storeCalls: updated, calls: down, minus: []string{"web1-http"},
			elapsed: callTimeout, drift: true},
		{name: "store update/removed meanwhile by another process", inject: func(t *testing.T, f *faultEnv) {
			f.fs.arm(storeFault{"update", 1, kindRace, func() {
				if _, err := f.mem.Update(context.Background(), sl.FleetDecky("web1"), func(d *sl.Decky) error {
					d.Services = slices.DeleteFunc(d.Services, func(s string) bool { return s == "http" })
					return nil
				}); err != nil {
					t.Error(err)
				}
			}})
		}, wantErr: []error{sl.ErrConflict}, store: "after", files: "after", running: "after", storeCalls: updated, calls: down},

		{name: "publish/error", inject: busFault(kindError),
			store: "after", files: "after", running: "after", storeCalls: updated, calls: down, attempts: 1},
		{name: "publish/panic", inject: busFault(kindPanic),
			store: "after", files: "after", running: "after", storeCalls: updated, calls: down, attempts: 1},
		{name: "publish/ctx cancelled after Update: still published", inject: storeAt(storeFault{"update", 1, kindCancelAfter, nil}),
			store: "after", files: "after", running: "after", storeCalls: updated, calls: down, events: true, attempts: 1},
		// As for AddService: a hanging Bus holds the call 5 s at most.
		{name: "publish/hangs: bounded by the publish timeout", inject: busFault(kindDeadline),
			store: "after", files: "after", running: "after", storeCalls: updated, calls: down, attempts: 1, elapsed: publishTimeout},
	}
}

// addOldSSHToWeb1 adds ssh to web1 with banner "old": the configuration the
// "update" cells change.
func addOldSSHToWeb1(t *testing.T, f *faultEnv) {
	if _, err := f.m.AddService(context.Background(), sl.FleetDecky("web1"), "ssh", sl.WithConfig(sl.Config{"banner": "old"})); err != nil {
		t.Fatal(err)
	}
}

// addOldSSHAndBoomToWeb1 adds ssh (banner "old") and boom to web1.
func addOldSSHAndBoomToWeb1(t *testing.T, f *faultEnv) {
	addOldSSHToWeb1(t, f)
	addBoomToWeb1(t, f)
}

// upSeq makes the fake engine run steps[i] on the i-th call "up web1-ssh"
// (0-based; nil or past the end: the call goes ahead).
func upSeq(steps ...func(f *faultEnv, ctx context.Context) error) func(*testing.T, *faultEnv) {
	return func(t *testing.T, f *faultEnv) {
		var n atomic.Int32
		f.onCall(map[string]func(context.Context) error{"up web1-ssh": func(ctx context.Context) error {
			if i := int(n.Add(1)) - 1; i < len(steps) && steps[i] != nil {
				return steps[i](f, ctx)
			}
			return nil
		}})
	}
}

// updateFaultCells: UpdateServiceConfig(fleet/web1, ssh, banner "new") on a
// web1 that runs ssh with banner "old", unless said otherwise; with
// WithRecreate when recreate is set (the cells of the engine step exist
// only then: without it there is no engine call).
func updateFaultCells(recreate bool) []faultCell {
	var (
		updated = []string{"update fleet/web1"}
		undone  = []string{"update fleet/web1", "update fleet/web1"}
		up      []string // the engine calls of a successful call
		upUp    = []string{"up web1-ssh", "up web1-ssh"}
		// The Up of the recreate fails before touching the old container.
		upFails = upSeq(func(*faultEnv, context.Context) error { return errEngineFault })
		// The Up of the recreate removes the old container, then fails.
		removeOld = func(f *faultEnv) {
			if !f.composer.SetState("decnet", "web1-ssh", "") {
				f.t.Error("no container web1-ssh to remove")
			}
		}
		upRemovesThenFails = func(f *faultEnv, _ context.Context) error { removeOld(f); return errEngineFault }
		// The undo's Up runs on a detached ctx: the caller's end does not reach it.
		detachedUp = func(_ *faultEnv, ctx context.Context) error {
			if ctx.Err() != nil {
				return fmt.Errorf("the undo's Up got a done ctx: %w", ctx.Err())
			}
			return nil
		}
		// What the first failing step after Store.Update is: the engine's
		// Up with WithRecreate, else the file write.
		firstFails = sabotageFiles
		firstErr   = []error{syscall.ENOTDIR}
		firstStage = sl.StageFiles
		firstFiles = "sabotaged"
		firstCalls []string
		firstFix   = unsabotageFiles
		firstThen  = "file write"
		succeeded  []faultCell
	)
	if recreate {
		up = []string{"up web1-ssh"}
		firstFails, firstErr, firstStage, firstFiles, firstCalls, firstFix, firstThen =
			upFails, []error{errEngineFault, sl.ErrEngine}, sl.StageEngine, "after", up, nil, "up"
	}
	// ok fills in what a successful call leaves: the new configuration in
	// the Store and the file; with WithRecreate a new container runs it,
	// without it the old container runs on, diverged, until Reconcile.
	ok := func(c faultCell) faultCell {
		c.store, c.files, c.running, c.storeCalls, c.calls = "after", "after", "after", updated, up
		if recreate {
			c.replaced = []string{"web1-ssh"}
		} else {
			c.diverged, c.drift = []string{"web1-ssh"}, true
		}
		return c
	}
	// undoFails: the first failing step fails, then so does the undo's
	// Store.Update (its 2nd): the Store and the file keep the new
	// configuration, the old container runs on, diverged from them.
	undoFails := func(c faultCell, k faultKind) faultCell {
		c.inject = func(t *testing.T, f *faultEnv) {
			firstFails(t, f)
			f.fs.arm(storeFault{"update", 2, k, nil})
		}
		c.store, c.files, c.storeCalls, c.calls = "after", firstFiles, undone, firstCalls
		c.diverged, c.drift, c.fix = []string{"web1-ssh"}, true, firstFix
		if c.wantPanic == nil {
			c.stage, c.wantMsg = firstStage, "rollback failed"
			if recreate {
				// The undo still brings the old container back (a no-op: it
				// never left), though the Store keeps the new config.
				c.calls = upUp
			}
		}
		return c
	}
	succeeded = []faultCell{
		ok(faultCell{name: "no fault", events: true, attempts: 1}),

		// Bus.Publish: best effort, the change is kept; a hanging Bus holds
		// the call 5 s at most.
		ok(faultCell{name: "publish/error", inject: busFault(kindError), attempts: 1}),
		ok(faultCell{name: "publish/panic", inject: busFault(kindPanic), attempts: 1}),
		ok(faultCell{name: "publish/hangs: bounded by the publish timeout", inject: busFault(kindDeadline), attempts: 1, elapsed: publishTimeout}),
	}
	if recreate {
		succeeded = append(succeeded, ok(faultCell{name: "publish/ctx cancelled after Up: still published",
			inject: upSeq(func(f *faultEnv, _ context.Context) error { f.cancel(); return nil }), events: true, attempts: 1}))
	}

	cells := []faultCell{
		// Names, registry, config: refused before any I/O.
		{name: "name/bad decky name", ref: sl.FleetDecky("Web1"), wantErr: []error{sl.ErrInvalidService}, stage: sl.StageValidate},
		{name: "name/bad service name", svc: "SSH", wantErr: []error{sl.ErrInvalidService}, stage: sl.StageValidate},
		{name: "name/ctx cancelled: validation first", svc: "SSH", inject: cancelFirst, wantErr: []error{sl.ErrInvalidService}, stage: sl.StageValidate},
		{name: "registry/unknown service", svc: "telnet", wantErr: []error{sl.ErrInvalidService}, stage: sl.StageValidate},
		{name: "registry/fleet singleton", svc: "llmnr", wantErr: []error{sl.ErrInvalidService}, stage: sl.StageValidate},
		{name: "config/bad value", cfg: sl.Config{"port": "eighty"}, wantErr: []error{sl.ErrInvalidService}, wantConfig: true, stage: sl.StageValidate},

		// The decky's lock.
		{name: "lock/deadline while waiting", inject: func(t *testing.T, f *faultEnv) { holdLock(t, f, "web1-ssh") },
			wantErr: []error{context.DeadlineExceeded}, stage: sl.StageLock, elapsed: callTimeout, storeCalls: deployDone},

		// Store.Update: refusals keep their sentinel; a Store cut short by
		// ctx matches ctx's error, not ErrStore. (A retry converges with
		// WithRecreate; without it, it leaves the container diverged as any
		// successful call does, and Reconcile converges: see "no fault".)
		{name: "store update/error", inject: storeAt(storeFault{"update", 1, kindError, nil}),
			wantErr: []error{errStoreFault, sl.ErrStore}, stage: sl.StageStore, storeCalls: updated, retry: recreate},
		{name: "store update/panic propagates", inject: storeAt(storeFault{"update", 1, kindPanic, nil}),
			wantPanic: storePanic, storeCalls: updated},
		{name: "store update/ctx cancelled", inject: storeAt(storeFault{"update", 1, kindCancel, nil}),
			wantErr: []error{context.Canceled}, stage: sl.StageStore, storeCalls: updated},
		{name: "store update/deadline", inject: storeAt(storeFault{"update", 1, kindDeadline, nil}),
			wantErr: []error{context.DeadlineExceeded}, stage: sl.StageStore, storeCalls: updated, elapsed: callTimeout},
		{name: "store update/service not on the decky", ref: sl.FleetDecky("web2"),
			wantErr: []error{sl.ErrConflict}, stage: sl.StageStore, storeCalls: []string{"update fleet/web2"}},
		{name: "store update/missing decky", ref: sl.FleetDecky("web9"),
			wantErr: []error{sl.ErrNotFound}, stage: sl.StageStore, storeCalls: []string{"update fleet/web9"}},
		{name: "store update/missing topology", ref: sl.TopologyDecky("Nope", "web1"),
			wantErr: []error{sl.ErrNotFound}, stage: sl.StageStore, storeCalls: []string{"update topology/Nope/web1"}},

		// Render: the updated service's Compose hook (it gets no ctx: a ctx
		// that ends while it runs is seen by the file write that follows).
		// With WithRecreate the service is rendered for the engine first;
		// without it the file's rendering is the first.
		{name: "render/ctx cancelled while the hook runs", setup: addOldSSHAndBoomToWeb1, svc: "boom",
			inject:  boomHook(func(f *faultEnv, _ int) { f.cancel() }),
			wantErr: []error{context.Canceled}, wantMsg: "write compose file", stage: sl.StageFiles, storeCalls: undone},
		{name: "render/deadline while the hook runs", setup: addOldSSHAndBoomToWeb1, svc: "boom",
			inject: boomHook(func(f *faultEnv, n int) {
				if n == 1 {
					<-f.ctx.Done()
				}
			}), wantErr: []error{context.DeadlineExceeded}, wantMsg: "write compose file", stage: sl.StageFiles,
			storeCalls: undone, elapsed: callTimeout},

		// The decky's compose file.
		{name: "file write/error", inject: sabotageFiles, fix: unsabotageFiles,
			wantErr: []error{syscall.ENOTDIR}, wantMsg: "write compose file", stage: sl.StageFiles, files: "sabotaged", storeCalls: undone},
		{name: "file write/hook of another service of the decky panics", setup: addOldSSHAndBoomToWeb1,
			inject:  boomHook(func(*faultEnv, int) { panic(hookPanic) }),
			wantMsg: "write compose file|compose hook of service boom panicked: " + hookPanic, stage: sl.StageFiles, storeCalls: undone},
		{name: "file write/ctx cancelled", inject: storeAt(storeFault{"update", 1, kindCancelAfter, nil}),
			wantErr: []error{context.Canceled}, wantMsg: "write compose file", stage: sl.StageFiles, storeCalls: undone},
		{name: "file write/deadline", inject: storeAt(storeFault{"update", 1, kindDeadlineAfter, nil}),
			wantErr: []error{context.DeadlineExceeded}, wantMsg: "write compose file", stage: sl.StageFiles, storeCalls: undone, elapsed: callTimeout},

		// The undo's Store.Update fails after the first failing step (the
		// file write; with WithRecreate, the engine's Up).
		undoFails(faultCell{name: "undo update/error, after " + firstThen + " failed",
			wantErr: append(slices.Clone(firstErr), errStoreFault, sl.ErrStore)}, kindError),
		undoFails(faultCell{name: "undo update/panic propagates, after " + firstThen + " failed", wantPanic: storePanic}, kindPanic),
		undoFails(faultCell{name: "undo update/deadline of its detached ctx, after " + firstThen + " failed",
			wantErr: append(slices.Clone(firstErr), context.DeadlineExceeded), elapsed: rollbackTimeout}, kindDeadline),
	}
	if !recreate {
		cells = append(cells,
			faultCell{name: "file write/hook of the updated service panics", setup: addOldSSHAndBoomToWeb1, svc: "boom",
				inject:  boomHook(func(*faultEnv, int) { panic(hookPanic) }),
				wantMsg: "write compose file|compose hook of service boom panicked: " + hookPanic, stage: sl.StageFiles, storeCalls: undone},
		)
		return append(cells, succeeded...)
	}

	// WithRecreate: the render for the engine, and the engine.
	cells = append(cells,
		faultCell{name: "render/hook of the updated service panics", setup: addOldSSHAndBoomToWeb1, svc: "boom",
			inject:  boomHook(func(*faultEnv, int) { panic(hookPanic) }),
			wantMsg: "compose hook of service boom panicked: " + hookPanic, stage: sl.StageRender, storeCalls: undone},

		// Composer.Up: the Store and the file are undone and the old
		// configuration brought up again (a no-op while its container runs).
		faultCell{name: "up/error", inject: upFails,
			wantErr: []error{errEngineFault, sl.ErrEngine}, wantMsg: "engine", stage: sl.StageEngine,
			storeCalls: undone, calls: upUp, retry: true},
		faultCell{name: "up/panic", inject: upSeq(func(*faultEnv, context.Context) error { panic(enginePan) }),
			wantErr: []error{sl.ErrEngine}, wantMsg: "composer up web1-ssh panicked: " + enginePan, stage: sl.StageEngine,
			storeCalls: undone, calls: upUp},
		faultCell{name: "up/ctx cancelled", inject: upSeq(func(f *faultEnv, ctx context.Context) error { f.cancel(); return ctx.Err() }, detachedUp),
			wantErr: []error{context.Canceled, sl.ErrEngine}, stage: sl.StageEngine, storeCalls: undone, calls: upUp},
		faultCell{name: "up/deadline", inject: upSeq(func(_ *faultEnv, ctx context.Context) error { return blockUntilDone(ctx) }, detachedUp),
			wantErr: []error{context.DeadlineExceeded, sl.ErrEngine}, stage: sl.StageEngine, storeCalls: undone, calls: upUp,
			elapsed: callTimeout, retry: true},
		// The engine removed the old container before failing: the undo
		// brings the old configuration back in a new container.
		faultCell{name: "up/error after the old container was removed", inject: upSeq(upRemovesThenFails, detachedUp),
			wantErr: []error{errEngineFault, sl.ErrEngine}, wantMsg: "engine", stage: sl.StageEngine,
			storeCalls: undone, calls: upUp, replaced: []string{"web1-ssh"}, retry: true},

		// The undo fails further on: both errors; Reconcile repairs.
		faultCell{name: "undo update/error, after up removed the old container", inject: func(t *testing.T, f *faultEnv) {
			upSeq(upRemovesThenFails)(t, f)
			f.fs.arm(storeFault{"update", 2, kindError, nil})
		}, wantErr: []error{errEngineFault, sl.ErrEngine, errStoreFault, sl.ErrStore}, wantMsg: "rollback failed", stage: sl.StageEngine,
			store: "after", files: "after", replaced: []string{"web1-ssh"}, diverged: []string{"web1-ssh"}, storeCalls: undone, calls: upUp, drift: true},
		faultCell{name: "undo file write/error", inject: upSeq(func(f *faultEnv, _ context.Context) error { f.sabotage(); return errEngineFault }),
			wantErr: []error{errEngineFault, sl.ErrEngine, syscall.ENOTDIR}, wantMsg: "rollback failed", stage: sl.StageEngine,
			files: "sabotaged", storeCalls: undone, calls: upUp, drift: true, fix: unsabotageFiles},
		// The file could not be put back; the old container is brought
		// back all the same (each step of the undo is tried).
		faultCell{name: "undo file write/error, after up removed the old container", inject: upSeq(func(f *faultEnv, _ context.Context) error {
			f.sabotage()
			removeOld(f)
			return errEngineFault
		}), wantErr: []error{errEngineFault, sl.ErrEngine, syscall.ENOTDIR}, wantMsg: "rollback failed", stage: sl.StageEngine,
			files: "sabotaged", replaced: []string{"web1-ssh"}, storeCalls: undone, calls: upUp, drift: true, fix: unsabotageFiles},
		faultCell{name: "undo up/error, after up removed the old container", inject: upSeq(upRemovesThenFails,
			func(*faultEnv, context.Context) error { return errUndoFault }),
			wantErr: []error{errEngineFault, sl.ErrEngine, errUndoFault}, wantMsg: "rollback failed", stage: sl.StageEngine,
			minus: []string{"web1-ssh"}, storeCalls: undone, calls: upUp, drift: true},
		faultCell{name: "undo up/panic, after up removed the old container", inject: upSeq(upRemovesThenFails,
			func(*faultEnv, context.Context) error { panic(enginePan) }),
			wantErr: []error{errEngineFault, sl.ErrEngine}, wantMsg: "rollback failed|composer up web1-ssh panicked: " + enginePan, stage: sl.StageEngine,
			minus: []string{"web1-ssh"}, storeCalls: undone, calls: upUp, drift: true},
		// The old container never left: nothing to repair, though the
		// error says the rollback failed.
		faultCell{name: "undo up/deadline of its detached ctx", inject: upSeq(func(*faultEnv, context.Context) error { return errEngineFault },
			func(_ *faultEnv, ctx context.Context) error { return blockUntilDone(ctx) }),
			wantErr: []error{errEngineFault, sl.ErrEngine, context.DeadlineExceeded}, wantMsg: "rollback failed", stage: sl.StageEngine,
			storeCalls: undone, calls: upUp, elapsed: rollbackTimeout},
	)
	return append(cells, succeeded...)
}

// publishTimeout is the Manager's bound on the Bus.Publish a mutation
// makes itself (the inline publish; its relay gives each retry 5 s).
const publishTimeout = time.Second

func TestFaultMatrix(t *testing.T) {
	n, counts := 0, []string(nil)
	for _, m := range []struct {
		name, op string
		recreate bool
		cells    []faultCell
	}{
		{"add", "add", false, addFaultCells()},
		{"remove", "remove", false, removeFaultCells()},
		{"update", "update", false, updateFaultCells(false)},
		{"update+recreate", "update", true, updateFaultCells(true)},
	} {
		t.Run(m.name, func(t *testing.T) {
			for _, c := range m.cells {
				c.op, c.recreate = m.op, m.recreate
				n++
				t.Run(c.name, func(t *testing.T) {
					t.Parallel() // each cell is its own bubble, directory and Manager
					runFaultCell(t, c)
				})
			}
		})
		counts = append(counts, fmt.Sprintf("%s %d", m.name, len(m.cells)))
	}
	t.Logf("%d cells run, of the matrix's %s", n, strings.Join(counts, ", "))
}

// publicCalls are the Manager's public calls that take a ctx, on the fault
// environment, with the engine calls they make when their deadline is hit
// in the engine (nil: not checked).
var publicCalls = []struct {
	name  string
	fn    func(context.Context, *sl.Manager) error
	calls []string
}{
	{"AddService", func(ctx context.Context, m *sl.Manager) error {
		_, err := m.AddService(ctx, sl.FleetDecky("web2"), "ssh")
		return err
	}, []string{"up web2-ssh", "down web2-ssh"}},
	{"RemoveService", func(ctx context.Context, m *sl.Manager) error {
		_, err := m.RemoveService(ctx, sl.FleetDecky("web1"), "http")
		return err
	}, []string{"down web1-http"}},
	{"UpdateServiceConfig", func(ctx context.Context, m *sl.Manager) error {
		return m.UpdateServiceConfig(ctx, sl.FleetDecky("web1"), "http", nil, sl.WithRecreate())
	}, []string{"up web1-http", "up web1-http"}},
	{"Deploy", func(ctx context.Context, m *sl.Manager) error { return m.Deploy(ctx, "") }, nil},
	{"Teardown", func(ctx context.Context, m *sl.Manager) error { return m.Teardown(ctx, "") }, []string{"remove_project "}},
	{"Reconcile", func(ctx context.Context, m *sl.Manager) error {
		_, err := m.Reconcile(ctx, "")
		return err
	}, []string{"up web2"}},
	{"Project", func(ctx context.Context, m *sl.Manager) error {
		_, err := m.Project(ctx, "")
		return err
	}, nil},
}

// updateFirst are the public calls whose first Store call is an Update,
// which a Store refuses, writing nothing, when ctx is done (the Store
// contract): they may call it with a cancelled ctx, and must not commit.
var updateFirst = map[string]bool{"UpdateServiceConfig": true}

// checkUnchanged checks that nothing observable changed since before and
// that no event was published.
func checkUnchanged(t *testing.T, f *faultEnv, before snapshot, noWrite, mayUpdate bool) {
	t.Helper()
	after := f.snap(t)
	if !storeEqual(after.store, before.store) {
		t.Errorf("store changed: %+v", after.store[""])
	}
	if d := diffFiles(after.files, before.files); d != "" {
		t.Errorf("compose files changed:\n%s", d)
	}
	if !slices.Equal(after.running, before.running) {
		t.Errorf("engine changed: running %v, was %v", after.running, before.running)
	}
	if n := f.fb.tries(); n != 0 {
		t.Errorf("%d publish attempts", n)
	}
	if n := f.fs.commits(); noWrite && n != 0 {
		t.Errorf("store written: %d Updates committed (%q)", n, f.fs.calls())
	}
	for _, c := range f.fs.calls() {
		if noWrite && !mayUpdate && strings.HasPrefix(c, "update ") {
			t.Errorf("store written: %q", f.fs.calls())
			break
		}
	}
}

// TestContextCancelledCalls: every public call given an already-cancelled
// ctx returns an error matching context.Canceled and changes nothing. The
// engine is drifted first (web2's base exited), so that a call that went
// ahead would change it.
func TestContextCancelledCalls(t *testing.T) {
	for _, call := range publicCalls {
		t.Run(call.name, func(t *testing.T) {
			f := newFaultEnv(t, nil)
			f.composer.SetState("decnet", "web2", "exited")
			before := f.snap(t)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			for range 8 { // the lock's wait picks at random between a free lock and a done ctx
				err := call.fn(ctx, f.m)
				if !errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("err = %v, want context.Canceled", err)
				}
				for _, s := range []error{sl.ErrNotFound, sl.ErrConflict, sl.ErrInvalidService} {
					if errors.Is(err, s) {
						t.Errorf("err %v matches %v", err, s)
					}
				}
			}
			if cc := f.composer.Calls(); len(cc) != 0 {
				t.Errorf("engine called: %q", callOps(cc))
			}
			checkUnchanged(t, f, before, true, updateFirst[call.name])
		})
	}
}

// TestContextDeadlineCalls: every public call whose deadline passes while
// the engine (or, for Project, which makes no engine call, the Store) works
// returns an error matching context.DeadlineExceeded promptly, in real time,
// and changes nothing. The fake engine blocks every call that carries the
// caller's deadline until its ctx is done; cleanups, which run on a detached
// ctx, are not blocked.
func TestContextDeadlineCalls(t *testing.T) {
	const timeout = 50 * time.Millisecond
	for _, call := range publicCalls {
		t.Run(call.name, func(t *testing.T) {
			f := newFaultEnv(t, nil)
			f.composer.SetState("decnet", "web2", "exited") // Reconcile has something to do
			before := f.snap(t)
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			deadline, _ := ctx.Deadline()
			f.composer.SetHook(func(ctx context.Context, c servicelivetest.Call) error {
				if d, ok := ctx.Deadline(); ok && d.Equal(deadline) {
					return blockUntilDone(ctx)
				}
				return nil
			})
			if call.name == "Project" {
				f.fs.arm(storeFault{"list", 1, kindDeadline, nil})
			}
			start := time.Now()
			err := call.fn(ctx, f.m)
			elapsed := time.Since(start)
			if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.DeadlineExceeded", err)
			}
			if elapsed >= time.Second {
				t.Errorf("returned after %v, want promptly after its %v deadline", elapsed, timeout)
			}
			if cc := callOps(f.composer.Calls()); call.calls != nil && !slices.Equal(cc, call.calls) {
				t.Errorf("engine calls = %q, want %q", cc, call.calls)
			}
			checkUnchanged(t, f, before, false, updateFirst[call.name]) // AddService writes the Store, then undoes it
		})
	}
}

// TestContextCancelledAddRollsBackLikeFailed: an AddService whose ctx is
// cancelled, or whose deadline passes, while the engine brings the service
// up leaves exactly what an engine failure leaves: same Store, files,
// engine, events, Store calls and engine calls.
func TestContextCancelledAddRollsBackLikeFailed(t *testing.T) {
	type outcome struct {
		store      map[string][]sl.Decky
		files      map[string]string
		running    []string
		events     []sl.Event
		attempts   int
		storeCalls []string
		calls      []string
	}
	run := func(t *testing.T, inject func(f *faultEnv), want error) (o outcome) {
		synctest.Test(t, func(t *testing.T) {
			f := newFaultEnv(t, nil)
			inject(f)
			_, err := f.m.AddService(f.ctx, sl.FleetDecky("web2"), "ssh", sl.WithConfig(sl.Config{"port": 22}))
			if err == nil || want != nil && !errors.Is(err, want) {
				t.Fatalf("err = %v, want %v", err, want)
			}
			s := f.snap(t)
			o = outcome{s.store, s.files, s.running, f.bus.Events(), f.fb.tries(), f.fs.calls(), callOps(f.composer.Calls())}
		})
		return o
	}
	failed := run(t, func(f *faultEnv) { f.composer.FailNext(servicelivetest.OpUp, errEngineFault) }, errEngineFault)
	for _, v := range []struct {
		name   string
		inject func(f *faultEnv)
		want   error
	}{
		{"cancelled while Up works", func(f *faultEnv) {
			f.composer.SetDelay(time.Hour)
			go func() { time.Sleep(time.Second); f.cancel() }()
		}, context.Canceled},
		{"deadline while Up works", func(f *faultEnv) { f.composer.SetDelay(time.Hour) }, context.DeadlineExceeded},
		{"Up panics", func(f *faultEnv) {
			f.onCall(map[string]func(context.Context) error{"up web2-ssh": func(context.Context) error { panic(enginePan) }})
		}, nil},
	} {
		t.Run(v.name, func(t *testing.T) {
			got := run(t, v.inject, v.want)
			if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", failed) {
				t.Errorf("outcome:\n%#v\nwant the engine failure's:\n%#v", got, failed)
			}
		})
	}
}
