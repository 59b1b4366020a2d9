package servicelive_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
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

	"go.uber.org/goleak"

	sl "github.com/decnet/servicelive"
	"github.com/decnet/servicelive/internal/filelock"
	"github.com/decnet/servicelive/servicelivetest"
)

// The load test: many mixed AddService/RemoveService calls on the deckies of
// one shared store, from two handles (each with its own Manager) in this
// process and from a second OS process; once per shareable Store: a
// FileStore file, a SQLite database, a PostgreSQL database (storeKinds).
// Every successful call gets a sequence number drawn inside its
// Store.Update, while the store serialises the Updates of that decky
// (FileStore: the file's exclusive flock; SQLite: the database's write lock;
// PostgreSQL: the decky's row lock), so the successful calls of each decky
// can be replayed in the order the store applied them; the final store must
// equal that replay.
//
// The short variant (1,000 calls per store) always runs; -load.full or
// SERVICELIVE_LOAD_FULL=1 runs the full one (10,000 calls per store).

var loadFull = flag.Bool("load.full", false, "run the full load test (10,000 operations) instead of the short one")

const (
	loadDeckies       = 50
	loadGoroutines    = 8 // in this process, split across two Managers
	loadChildRoutines = 2 // in the second process
	loadShortOps      = 1_000
	loadFullOps       = 10_000

	loadEnvKind  = "SERVICELIVE_LOAD_HELPER_KIND"  // the store kind; set only in the helper process
	loadEnvState = "SERVICELIVE_LOAD_HELPER_STATE" // where the store is: a file path or a DSN
	loadEnvSeq   = "SERVICELIVE_LOAD_HELPER_SEQ"   // the sequence counter file
	loadEnvOut   = "SERVICELIVE_LOAD_HELPER_OUT"   // where the helper writes its successful calls
	loadEnvSeed  = "SERVICELIVE_LOAD_HELPER_SEED"
	loadEnvOps   = "SERVICELIVE_LOAD_HELPER_OPS" // per goroutine
)

// loadServices are the services the load adds and removes: registered in
// testRegistry, and none can collide with another's compose key on
// deckies named load-NN.
var loadServices = []string{"ssh", "http", "b-c", "c"}

// loadOp is one successful call.
type loadOp struct {
	Proc     int      `json:"proc"` // 0 this process, 1 the helper
	G        int      `json:"g"`    // goroutine
	Decky    string   `json:"decky"`
	Service  string   `json:"service"`
	Op       string   `json:"op"`             // "add" or "remove"
	Port     int      `json:"port,omitempty"` // ssh's configured port (0: added without config)
	Seq      uint64   `json:"seq"`            // order of its Store.Update among all of them
	Services []string `json:"services"`       // what the call returned
}

// loadStats counts the calls of one process (or one Manager).
type loadStats struct {
	Calls           int `json:"calls"`
	Adds            int `json:"adds"`
	Removes         int `json:"removes"`
	AddConflicts    int `json:"add_conflicts"`
	RemoveConflicts int `json:"remove_conflicts"`
	Ups             int `json:"ups"`   // Composer.Up calls
	Downs           int `json:"downs"` // Composer.Down calls
}

func (s *loadStats) add(o loadStats) {
	s.Calls += o.Calls
	s.Adds += o.Adds
	s.Removes += o.Removes
	s.AddConflicts += o.AddConflicts
	s.RemoveConflicts += o.RemoveConflicts
	s.Ups += o.Ups
	s.Downs += o.Downs
}

// loadRecord is one line of the helper's output file.
type loadRecord struct {
	Op    *loadOp    `json:"op,omitempty"`
	Stats *loadStats `json:"stats,omitempty"`
}

// loadSeqKey is the context key of the slot where seqStore puts the
// sequence number of a call's successful Update.
type loadSeqKey struct{}

// seqStore draws, inside each successful Update (while the store holds the
// decky's lock that every handle and process takes), the next number from a
// counter file, and hands it to the caller through the context. fn may run
// more than once (a SQL store retries a transaction): the number of the run
// that was committed is the one handed out, earlier ones are gaps.
type seqStore struct {
	sl.Store
	seqPath string
}

func (s *seqStore) Update(ctx context.Context, ref sl.Ref, fn func(*sl.Decky) error) (sl.Decky, error) {
	var seq uint64
	d, err := s.Store.Update(ctx, ref, func(d *sl.Decky) error {
		if err := fn(d); err != nil {
			return err
		}
		var err error
		seq, err = nextSeq(ctx, s.seqPath)
		return err
	})
	if slot, ok := ctx.Value(loadSeqKey{}).(*uint64); ok && err == nil {
		*slot = seq
	}
	return d, err
}

// nextSeq increments the counter in the file at path, under an flock of its
// own: the stores serialise the Updates of one decky, not (PostgreSQL) those
// of different deckies, and every number must be drawn once.
func nextSeq(ctx context.Context, path string) (uint64, error) {
	unlock, err := filelock.Lock(ctx, path+".lock", false)
	if err != nil {
		return 0, err
	}
	defer unlock()
	var n uint64
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return 0, err
	default:
		if n, err = strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64); err != nil {
			return 0, fmt.Errorf("sequence file: %w", err)
		}
	}
	n++
	return n, os.WriteFile(path, []byte(strconv.FormatUint(n, 10)), 0o600)
}

// loadManager is a Manager over its own handle on the store of kind k at
// loc, with its own fake engine, on which it has deployed the fleet (the
// deckies' bases must run before a service can join one); seqPath is the
// sequence counter file.
func loadManager(t testing.TB, k storeKind, loc, seqPath string) (*sl.Manager, *servicelivetest.Composer, storeHandle) {
	t.Helper()
	c := &servicelivetest.Composer{}
	s := openHandle(t, k, loc)
	m, err := sl.New(&seqStore{Store: s, seqPath: seqPath}, c, testRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Deploy(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	c.Reset() // the calls counted are the load's
	return m, c, s
}

// composerStats counts the Up and Down calls c recorded.
func composerStats(c *servicelivetest.Composer) loadStats {
	var s loadStats
	for _, call := range c.Calls() {
		switch call.Op {
		case servicelivetest.OpUp:
			s.Ups++
		case servicelivetest.OpDown:
			s.Downs++
		}
	}
	return s
}

// loadWorker makes n random calls through m and returns the successful ones.
// A refused call must match ErrConflict; any other error ends the worker.
func loadWorker(ctx context.Context, m *sl.Manager, proc, g int, rng *rand.Rand, n int) ([]loadOp, loadStats, error) {
	var ops []loadOp
	var st loadStats
	for range n {
		op := loadOp{
			Proc:    proc,
			G:       g,
			Decky:   loadDeckyName(rng.IntN(loadDeckies)),
			Service: loadServices[rng.IntN(len(loadServices))],
			Op:      "remove",
		}
		ctx := context.WithValue(ctx, loadSeqKey{}, &op.Seq)
		ref := sl.FleetDecky(op.Decky)
		var err error
		st.Calls++
		if rng.IntN(2) == 0 {
			op.Op = "add"
			var opts []sl.AddOption
			if op.Service == "ssh" && rng.IntN(3) > 0 {
				op.Port = 1024 + rng.IntN(60000)
				opts = append(opts, sl.WithConfig(sl.Config{"port": op.Port}))
			}
			op.Services, err = m.AddService(ctx, ref, op.Service, opts...)
		} else {
			op.Services, err = m.RemoveService(ctx, ref, op.Service)
		}
		switch {
		case err == nil && op.Seq == 0:
			return ops, st, fmt.Errorf("%s %s on %s succeeded without a Store.Update", op.Op, op.Service, op.Decky)
		case err == nil && op.Op == "add":
			st.Adds++
		case err == nil:
			st.Removes++
		case !errors.Is(err, sl.ErrConflict):
			return ops, st, fmt.Errorf("%s %s on %s: unexpected error (want nil or ErrConflict): %w", op.Op, op.Service, op.Decky, err)
		case op.Op == "add":
			st.AddConflicts++
		default:
			st.RemoveConflicts++
		}
		if err == nil {
			ops = append(ops, op)
		}
	}
	return ops, st, nil
}

func loadDeckyName(i int) string { return fmt.Sprintf("load-%02d", i) }

// loadSeed returns the deckies the state file starts with: a mix of none,
// one and two services, ssh with and without config.
func loadSeed() []sl.Decky {
	ds := make([]sl.Decky, loadDeckies)
	for i := range ds {
		d := sl.Decky{Name: loadDeckyName(i), Image: "decnet/base", IP: fmt.Sprintf("10.1.0.%d", i+10), Hostname: fmt.Sprintf("host%d", i)}
		switch i % 4 {
		case 1:
			d.Services = []string{"http"}
		case 2:
			d.Services = []string{"ssh", "c"}
			d.Config = map[string]sl.Config{"ssh": {"port": 2200 + i}}
		case 3:
			d.Services = []string{"b-c", "ssh"}
		}
		ds[i] = d
	}
	return ds
}

// TestLoadHelperProcess is not a test: TestLoad runs the test binary again
// with it, as the second process.
func TestLoadHelperProcess(t *testing.T) {
	loc := os.Getenv(loadEnvState)
	if loc == "" {
		return
	}
	k, err := kindNamed(os.Getenv(loadEnvKind))
	if err != nil {
		t.Fatal(err)
	}
	seed, err := strconv.ParseUint(os.Getenv(loadEnvSeed), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(os.Getenv(loadEnvOps))
	if err != nil {
		t.Fatal(err)
	}
	m, c, _ := loadManager(t, k, loc, os.Getenv(loadEnvSeq))
	fmt.Println("ready")
	// Start when the parent closes stdin, so that both processes run at once.
	if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	var (
		mu  sync.Mutex
		ops []loadOp
		st  loadStats
		wg  sync.WaitGroup
	)
	for g := range loadChildRoutines {
		wg.Go(func() {
			o, s, err := loadWorker(ctx, m, 1, g, rand.New(rand.NewPCG(seed, uint64(100+g))), n)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			defer mu.Unlock()
			ops = append(ops, o...)
			st.add(s)
		})
	}
	wg.Wait()
	st.add(composerStats(c))

	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for i := range ops {
		if err := enc.Encode(loadRecord{Op: &ops[i]}); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Encode(loadRecord{Stats: &st}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(os.Getenv(loadEnvOut), buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestLoad: on each shareable store, mixed AddService/RemoveService calls
// from 8 goroutines over two handles (one Manager each) and from a second
// process, all on one store: the final store equals the replay of the
// successful calls, refused calls are ErrConflict only, and no goroutine or
// file descriptor leaks. PostgreSQL skips without a server (fails when
// CI=true).
func TestLoad(t *testing.T) {
	total := loadShortOps
	if *loadFull || os.Getenv("SERVICELIVE_LOAD_FULL") == "1" {
		total = loadFullOps
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SERVICELIVE_LOAD_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("SERVICELIVE_LOAD_SEED: %v", err)
		}
	}
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) { testLoad(t, k, total, seed) })
	}
}

func testLoad(t *testing.T, k storeKind, total int, seed uint64) {
	perG := total / (loadGoroutines + loadChildRoutines)
	t.Logf("%s store: %d operations (%d goroutines × %d here, %d × %d in the helper process), seed %d (SERVICELIVE_LOAD_SEED)",
		k.name, perG*(loadGoroutines+loadChildRoutines), loadGoroutines, perG, loadChildRoutines, perG, seed)

	dir := t.TempDir()
	loc := k.fresh(t) // may start the PostgreSQL server: before the leak checks' snapshots
	seqPath := filepath.Join(dir, "seq")

	// Checked after the handles' cleanups, so that a failed run reports its
	// failure, not the handles it left open.
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	warmUpFDs(t)
	fdsBefore := openFDs()

	start := time.Now()
	seedDeckies := loadSeed()
	seedStore := openHandle(t, k, loc)
	putDeckies(t, seedStore, "", seedDeckies)
	if err := closeHandle(seedStore); err != nil {
		t.Fatal(err)
	}

	child := startLoadHelper(t, k, loc, seqPath, filepath.Join(dir, "helper-ops.jsonl"), seed, perG)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	type mgr struct {
		m  *sl.Manager
		c  *servicelivetest.Composer
		s  storeHandle
		st loadStats
	}
	mgrs := make([]*mgr, 2)
	for i := range mgrs {
		m, c, s := loadManager(t, k, loc, seqPath)
		mgrs[i] = &mgr{m: m, c: c, s: s}
	}
	var (
		mu  sync.Mutex
		ops []loadOp
		wg  sync.WaitGroup
	)
	for g := range loadGoroutines {
		mg := mgrs[g%len(mgrs)]
		wg.Go(func() {
			o, s, err := loadWorker(ctx, mg.m, 0, g, rand.New(rand.NewPCG(seed, uint64(g))), perG)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			defer mu.Unlock()
			ops = append(ops, o...)
			mg.st.add(s)
		})
	}
	child.start()
	wg.Wait()
	childOps, childStats := child.wait(t)
	elapsed := time.Since(start)

	// Composer calls: each successful add made one Up, each refused one none;
	// each remove past the first check made one Down.
	var here loadStats
	for i, mg := range mgrs {
		cs := composerStats(mg.c)
		if cs.Ups != mg.st.Adds {
			t.Errorf("manager %d: %d Composer.Up calls for %d successful adds", i, cs.Ups, mg.st.Adds)
		}
		if cs.Downs < mg.st.Removes {
			t.Errorf("manager %d: %d Composer.Down calls for %d successful removes", i, cs.Downs, mg.st.Removes)
		}
		mg.st.add(cs)
		here.add(mg.st)
	}
	if childStats.Ups != childStats.Adds || childStats.Downs < childStats.Removes {
		t.Errorf("helper process: %d Up / %d Down calls for %d adds / %d removes", childStats.Ups, childStats.Downs, childStats.Adds, childStats.Removes)
	}
	all := here
	all.add(childStats)
	ops = append(ops, childOps...)

	// Every handle, and a new one, reads the same final state.
	final := make(map[string]sl.Decky)
	for i, s := range []storeHandle{mgrs[0].s, mgrs[1].s, openHandle(t, k, loc)} {
		ds, err := s.List(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if i == 0 {
				final[d.Name] = d
			} else if !deckyEqual(final[d.Name], d) {
				t.Errorf("handle %d reads %s as %+v, handle 0 as %+v", i, d.Name, d, final[d.Name])
			}
		}
		if len(ds) != loadDeckies {
			t.Errorf("handle %d lists %d deckies, want %d", i, len(ds), loadDeckies)
		}
		if err := closeHandle(s); err != nil {
			t.Errorf("handle %d: close: %v", i, err)
		}
	}

	lost, phantom := checkLoadReplay(t, seedDeckies, ops, final)
	// ops is now in Update order: how often did the writer change?
	procSwitches, handleSwitches := 0, 0
	for i := 1; i < len(ops); i++ {
		if ops[i].Proc != ops[i-1].Proc {
			procSwitches++
		}
		if loadHandle(ops[i]) != loadHandle(ops[i-1]) {
			handleSwitches++
		}
	}
	t.Logf("successful Updates interleaved: the writing process changed %d times, the writing handle %d times", procSwitches, handleSwitches)
	if procSwitches < 2 {
		t.Log("the two processes hardly overlapped: the test proved less than it could")
	}
	raced := all.Downs - all.Removes // removes refused by Store.Update: another Manager removed the service after their check
	t.Logf("%s store, %v: %d calls (here %d, helper %d), %d successful (%d adds, %d removes), %d refused with ErrConflict (%d adds, %d removes, of which %d by Store.Update after Down: removed meanwhile through another handle), lost %d, phantom %d",
		k.name, elapsed.Round(time.Millisecond), all.Calls, here.Calls, childStats.Calls, all.Adds+all.Removes, all.Adds, all.Removes,
		all.AddConflicts+all.RemoveConflicts, all.AddConflicts, all.RemoveConflicts, raced, lost, phantom)
	if want := perG * (loadGoroutines + loadChildRoutines); all.Calls != want {
		t.Errorf("%d calls made, want %d", all.Calls, want)
	}

	checkFDs(t, fdsBefore)
}

// checkLoadReplay replays ops, in Store.Update order, over seed and compares
// the result with final; it checks that every call returned the decky's
// services as they were right after it, and that adds and removes of each
// (decky, service) alternate. It returns the number of lost and of phantom
// services and configs in final.
func checkLoadReplay(t *testing.T, seed []sl.Decky, ops []loadOp, final map[string]sl.Decky) (lost, phantom int) {
	t.Helper()
	slices.SortFunc(ops, func(a, b loadOp) int { return cmpUint(a.Seq, b.Seq) })
	for i := 1; i < len(ops); i++ {
		if ops[i].Seq == ops[i-1].Seq {
			t.Errorf("two successful Updates drew sequence number %d (%+v, %+v): the store's lock did not exclude them", ops[i].Seq, ops[i-1], ops[i])
		}
	}

	// Order-free check: per (decky, service), initial + adds - removes is the final presence.
	type key struct{ decky, service string }
	count := make(map[key]int)
	replay := make(map[string]sl.Decky, len(seed))
	for _, d := range seed {
		replay[d.Name] = d.Clone()
		for _, s := range d.Services {
			count[key{d.Name, s}]++
		}
	}
	for _, op := range ops {
		if op.Op == "add" {
			count[key{op.Decky, op.Service}]++
		} else {
			count[key{op.Decky, op.Service}]--
		}
	}
	for k, n := range count {
		d := final[k.decky]
		switch has := d.HasService(k.service); {
		case n != 0 && n != 1:
			t.Errorf("%s/%s: initial + adds - removes = %d, not 0 or 1", k.decky, k.service, n)
		case n == 1 && !has:
			t.Errorf("%s/%s: added last but missing from the store", k.decky, k.service)
		case n == 0 && has:
			t.Errorf("%s/%s: removed last (or never there) but in the store", k.decky, k.service)
		}
	}

	// Replay in Update order: adds and removes alternate, and each call
	// returned the state right after it.
	bad := 0
	for _, op := range ops {
		d := replay[op.Decky]
		switch {
		case op.Op == "add" && d.HasService(op.Service):
			t.Errorf("seq %d: %s added %s to %s, already on: a remove was lost or an add doubled", op.Seq, opWho(op), op.Service, op.Decky)
			bad++
		case op.Op == "add":
			d.Services = append(d.Services, op.Service)
			if op.Port != 0 {
				if d.Config == nil {
					d.Config = make(map[string]sl.Config)
				}
				d.Config[op.Service] = sl.Config{"port": op.Port}
			} else {
				delete(d.Config, op.Service)
			}
		case !d.HasService(op.Service):
			t.Errorf("seq %d: %s removed %s from %s, not on: an add was lost or a remove doubled", op.Seq, opWho(op), op.Service, op.Decky)
			bad++
		default:
			d.Services = slices.DeleteFunc(d.Services, func(s string) bool { return s == op.Service })
			delete(d.Config, op.Service)
		}
		replay[op.Decky] = d
		if !slices.Equal(op.Services, d.Services) && bad < 10 {
			t.Errorf("seq %d: %s %s %s on %s returned %v, the replay has %v", op.Seq, opWho(op), op.Op, op.Service, op.Decky, op.Services, d.Services)
			bad++
		}
		if hasDup(op.Services) {
			t.Errorf("seq %d: %s returned services with a duplicate: %v", op.Seq, opWho(op), op.Services)
		}
	}

	// The final store is the replay: nothing lost, nothing phantom.
	for name, want := range replay {
		got, ok := final[name]
		if !ok {
			t.Errorf("decky %s missing from the final store", name)
			lost += len(want.Services)
			continue
		}
		if hasDup(got.Services) {
			t.Errorf("decky %s lists a service twice: %v", name, got.Services)
		}
		for _, s := range want.Services {
			if !got.HasService(s) {
				lost++
			} else if !equalCfg(got.Config[s], want.Config[s]) {
				t.Errorf("decky %s, service %s: config %v, the replay has %v", name, s, got.Config[s], want.Config[s])
				lost++
			}
		}
		for _, s := range got.Services {
			if !want.HasService(s) {
				phantom++
			}
		}
		for s := range got.Config {
			if !got.HasService(s) {
				t.Errorf("decky %s: config of %s, which is not on it", name, s)
				phantom++
			}
		}
		if !deckyEqual(got, want) {
			t.Errorf("decky %s: final store %+v, replay of the successful calls %+v", name, got, want)
		}
	}
	for name := range final {
		if _, ok := replay[name]; !ok {
			t.Errorf("decky %s in the final store was never seeded", name)
			phantom++
		}
	}
	return lost, phantom
}

// loadHandle tells the three store handles apart: 0 and 1 here (one
// per Manager, goroutines alternate between them), 2 in the helper.
func loadHandle(op loadOp) int {
	if op.Proc == 1 {
		return 2
	}
	return op.G % 2
}

func opWho(op loadOp) string { return fmt.Sprintf("process %d goroutine %d", op.Proc, op.G) }

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func hasDup(ss []string) bool {
	seen := make(map[string]bool, len(ss))
	for _, s := range ss {
		if seen[s] {
			return true
		}
		seen[s] = true
	}
	return false
}

// deckyEqual compares deckies field by field; a nil and an empty Config
// map are equal.
func deckyEqual(a, b sl.Decky) bool {
	if a.Name != b.Name || a.Hostname != b.Hostname || a.IP != b.IP || a.Image != b.Image ||
		a.Network != b.Network || a.Host != b.Host || !slices.Equal(a.Services, b.Services) {
		return false
	}
	return maps.EqualFunc(nonNil(a.Config), nonNil(b.Config), equalCfg)
}

func nonNil(m map[string]sl.Config) map[string]sl.Config {
	if m == nil {
		return map[string]sl.Config{}
	}
	return m
}

// equalCfg compares configs holding only scalar values (the load's).
func equalCfg(a, b sl.Config) bool { return maps.Equal(a, b) }

// loadHelper is the second process of TestLoad.
type loadHelper struct {
	cmd    *exec.Cmd
	cancel context.CancelFunc
	stdin  io.WriteCloser
	out    bytes.Buffer // its stdout after "ready", then its stderr
	done   chan struct{}
	path   string // its output file
}

// startLoadHelper starts the helper process and waits until it is ready;
// it starts its calls on start.
func startLoadHelper(t *testing.T, k storeKind, loc, seqPath, out string, seed uint64, perG int) *loadHelper {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	h := &loadHelper{cancel: cancel, done: make(chan struct{}), path: out}
	h.cmd = exec.CommandContext(ctx, os.Args[0], "-test.run=^TestLoadHelperProcess$", "-test.count=1")
	h.cmd.Env = append(os.Environ(),
		loadEnvKind+"="+k.name, loadEnvState+"="+loc, loadEnvSeq+"="+seqPath, loadEnvOut+"="+out,
		loadEnvSeed+"="+strconv.FormatUint(seed, 10), loadEnvOps+"="+strconv.Itoa(perG))
	var stderr bytes.Buffer
	h.cmd.Stderr = &stderr
	stdin, err := h.cmd.StdinPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	h.stdin = stdin
	stdout, err := h.cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := h.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var head strings.Builder
	for sc.Scan() {
		if sc.Text() == "ready" {
			go func() {
				defer close(h.done)
				_, _ = h.out.ReadFrom(stdout)
			}()
			return h
		}
		head.WriteString(sc.Text() + "\n")
	}
	_ = stdin.Close()
	err = h.cmd.Wait()
	cancel()
	t.Fatalf("helper process never got ready (%v):\n%s%s", err, head.String(), stderr.String())
	return nil
}

// start lets the helper's calls begin.
func (h *loadHelper) start() { _ = h.stdin.Close() }

// wait waits for the helper to exit and returns its successful calls and stats.
func (h *loadHelper) wait(t *testing.T) ([]loadOp, loadStats) {
	t.Helper()
	defer h.cancel()
	<-h.done
	err := h.cmd.Wait()
	if err != nil {
		t.Fatalf("helper process: %v\n%s%s", err, h.out.String(), h.cmd.Stderr.(*bytes.Buffer).String())
	}
	data, err := os.ReadFile(h.path)
	if err != nil {
		t.Fatal(err)
	}
	var ops []loadOp
	var st *loadStats
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var r loadRecord
		if err := dec.Decode(&r); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("helper output %s: %v", h.path, err)
		}
		switch {
		case r.Op != nil:
			ops = append(ops, *r.Op)
		case r.Stats != nil:
			st = r.Stats
		}
	}
	if st == nil {
		t.Fatalf("helper output %s has no stats", h.path)
	}
	return ops, *st
}

// warmUpFDs makes the runtime open the file descriptors it keeps for the
// life of the process (the network poller's epoll instance and its wake-up
// eventfd, created at the first pollable file), so that they are not
// counted as leaks.
func warmUpFDs(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	_ = r.Close()
	_ = w.Close()
}

// openFDs returns this process's open file descriptors and what they point to.
func openFDs() map[string]string {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	out := make(map[string]string, len(entries))
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			continue // the directory ReadDir had open, closed since
		}
		out[e.Name()] = target
	}
	return out
}

// checkFDs fails t if a file descriptor is open now that was not in before.
func checkFDs(t *testing.T, before map[string]string) {
	t.Helper()
	if before == nil {
		t.Log("no /proc/self/fd: file descriptor leaks not checked")
		return
	}
	after := openFDs()
	var leaked []string
	for fd, target := range after {
		if before[fd] != target {
			leaked = append(leaked, fd+" -> "+target)
		}
	}
	slices.Sort(leaked)
	if len(leaked) > 0 || len(after) != len(before) {
		t.Errorf("file descriptors: %d before, %d after; new: %v", len(before), len(after), leaked)
	} else {
		t.Logf("file descriptors: %d before, %d after", len(before), len(after))
	}
}
