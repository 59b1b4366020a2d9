package servicelive_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	sl "github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
)

// env is a Manager over fakes (a servicelivetest.Harness), with a store
// that counts its calls.
type env struct {
	*servicelivetest.Harness
	m        *sl.Manager
	store    *countingStore // the Manager's Store: mem, counted
	mem      *sl.MemoryStore
	composer *servicelivetest.Composer
	bus      *servicelivetest.Bus
}

// countingStore counts the calls that reach the store.
type countingStore struct {
	sl.Store
	calls atomic.Int64
}

func (s *countingStore) Get(ctx context.Context, ref sl.Ref) (sl.Decky, error) {
	s.calls.Add(1)
	return s.Store.Get(ctx, ref)
}

func (s *countingStore) List(ctx context.Context, topology string) ([]sl.Decky, error) {
	s.calls.Add(1)
	return s.Store.List(ctx, topology)
}

func (s *countingStore) Update(ctx context.Context, ref sl.Ref, fn func(*sl.Decky) error) (sl.Decky, error) {
	s.calls.Add(1)
	return s.Store.Update(ctx, ref, fn)
}

// testServices are the services of the tests' registry.
func testServices() []sl.Service {
	return []sl.Service{
		{Name: "ssh", Image: "decnet/ssh", Ports: []int{22}, Schema: []sl.Field{
			{Key: "port", Type: sl.FieldInt},
			{Key: "banner", Type: sl.FieldString},
		}, Compose: func(d sl.Decky, cfg sl.Config, s *types.ServiceConfig) {
			if b, ok := cfg["banner"].(string); ok {
				s.Environment = types.MappingWithEquals{"BANNER": &b}
			}
		}},
		{Name: "http", Image: "decnet/http", Ports: []int{80}},
		{Name: "b-c", Image: "decnet/bc"},
		{Name: "c", Image: "decnet/c"},
		{Name: "llmnr", Image: "decnet/llmnr", FleetSingleton: true},
	}
}

func testRegistry(t testing.TB) *sl.Registry {
	t.Helper()
	reg, err := sl.NewRegistry(testServices()...)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// testDeckies are the deckies of every env: in the fleet web1 (with http,
// on decnet_lan) and web2 (bare); in topology Lab, web1.
func testDeckies() map[string][]sl.Decky {
	return map[string][]sl.Decky{
		"":    {{Name: "web1", Image: "decnet/base", IP: "10.0.0.5", Network: "decnet_lan", Services: []string{"http"}}, {Name: "web2", Image: "decnet/base"}},
		"Lab": {{Name: "web1", Image: "decnet/base"}},
	}
}

// newEnv returns an env over testDeckies whose Manager has opts. Its
// Composer is lenient: nothing is deployed, yet services come up (the
// tests of other files rely on it). Tests of this file use newDeployedEnv
// or newStrictEnv, whose Composer is as strict as an engine.
func newEnv(t testing.TB, opts ...sl.Option) *env {
	t.Helper()
	return newEnvWith(t, servicelivetest.Lenient(), servicelivetest.WithManagerOptions(opts...))
}

// newDeployedEnv returns an env over testDeckies with every scope deployed
// (and the call log then reset) and a strict Composer.
func newDeployedEnv(t testing.TB, opts ...sl.Option) *env {
	t.Helper()
	return newEnvWith(t, servicelivetest.Deployed(), servicelivetest.WithManagerOptions(opts...))
}

// newStrictEnv returns an env over testDeckies, nothing deployed, with a
// strict Composer.
func newStrictEnv(t testing.TB, opts ...sl.Option) *env {
	t.Helper()
	return newEnvWith(t, servicelivetest.WithManagerOptions(opts...))
}

func newEnvWith(t testing.TB, opts ...servicelivetest.HarnessOption) *env {
	t.Helper()
	var counted *countingStore
	h := servicelivetest.NewHarness(t, testDeckies(), testServices(), append([]servicelivetest.HarnessOption{
		servicelivetest.WithStore(func(m *sl.MemoryStore) sl.Store {
			counted = &countingStore{Store: m}
			return counted
		}),
	}, opts...)...)
	counted.calls.Store(0) // count the test's calls, not the set-up's
	return &env{Harness: h, m: h.Manager, store: counted, mem: h.Store, composer: h.Composer, bus: h.Bus}
}

func (e *env) decky(t testing.TB, ref sl.Ref) sl.Decky {
	t.Helper()
	d, err := e.mem.Get(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// put stores d in topology behind the Manager's back.
func (e *env) put(t testing.TB, topology string, ds ...sl.Decky) {
	t.Helper()
	for _, d := range ds {
		if err := e.mem.Put(context.Background(), topology, d); err != nil {
			t.Fatal(err)
		}
	}
}

// deploy deploys the scopes named, failing the test on an error, then
// forgets the calls that made.
func (e *env) deploy(t testing.TB, topologies ...string) {
	t.Helper()
	for _, id := range topologies {
		if err := e.m.Deploy(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	e.composer.Reset()
}

func TestAddService(t *testing.T) {
	e := newDeployedEnv(t)
	ctx := context.Background()
	got, err := e.m.AddService(ctx, sl.FleetDecky("web1"), "ssh", sl.WithConfig(sl.Config{"port": "2222", "junk": 1, "banner": ""}))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"http", "ssh"}; !slices.Equal(got, want) {
		t.Fatalf("services = %v, want %v", got, want)
	}
	d := e.decky(t, sl.FleetDecky("web1"))
	if !slices.Equal(d.Services, got) || d.Config["ssh"]["port"] != 2222 || len(d.Config["ssh"]) != 1 {
		t.Fatalf("stored %+v", d)
	}
	if ops := e.composer.Ops(); !slices.Equal(ops, []string{"up decnet web1-ssh"}) {
		t.Fatalf("calls = %q", ops)
	}
	if calls := e.composer.Calls(); !slices.Contains(calls[0].Services, "web1") {
		t.Fatalf("project of Up lacks the base: %v", calls[0].Services)
	}
	e.AssertEvents("decky.web1.service_added service=ssh services=http,ssh config=port applied=true")
	// The returned slice is the caller's.
	got[0] = "mutated"
	if d := e.decky(t, sl.FleetDecky("web1")); d.Services[0] != "http" {
		t.Fatal("returned slice aliases the store")
	}
}

func eventEqual(a, b sl.Event) bool {
	return a.Kind == b.Kind && a.Decky == b.Decky && a.Service == b.Service && a.Topology == b.Topology && slices.Equal(a.Services, b.Services)
}

func TestAddServiceRefused(t *testing.T) {
	tests := []struct {
		name    string
		ref     sl.Ref
		service string
		cfg     sl.Config
		want    error
		noIO    bool // refused before the store is read
	}{
		{"bad decky name", sl.FleetDecky("Web1"), "ssh", nil, sl.ErrInvalidService, true},
		{"path in decky name", sl.FleetDecky("../etc"), "ssh", nil, sl.ErrInvalidService, true},
		{"bad service name", sl.FleetDecky("web1"), "ssh;rm", nil, sl.ErrInvalidService, true},
		{"bad topology", sl.TopologyDecky("a/b", "web1"), "ssh", nil, sl.ErrInvalidService, true},
		{"unknown service", sl.FleetDecky("web1"), "telnet", nil, sl.ErrInvalidService, true},
		{"unknown service on missing decky", sl.FleetDecky("nope"), "telnet", nil, sl.ErrInvalidService, true},
		{"fleet singleton", sl.FleetDecky("web1"), "llmnr", nil, sl.ErrInvalidService, true},
		{"bad config", sl.FleetDecky("web1"), "ssh", sl.Config{"port": "eighty"}, sl.ErrInvalidService, true},
		{"missing decky", sl.FleetDecky("nope"), "ssh", nil, sl.ErrNotFound, false},
		{"missing topology", sl.TopologyDecky("nope", "web1"), "ssh", nil, sl.ErrNotFound, false},
		{"topology id is case sensitive", sl.TopologyDecky("lab", "web1"), "ssh", nil, sl.ErrNotFound, false},
		{"already on", sl.FleetDecky("web1"), "http", nil, sl.ErrConflict, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newDeployedEnv(t)
			before := e.decky(t, sl.FleetDecky("web1"))
			_, err := e.m.AddService(context.Background(), tt.ref, tt.service, sl.WithConfig(tt.cfg))
			assertKind(t, err, tt.want)
			if tt.noIO && e.store.calls.Load() != 0 {
				t.Errorf("store called %d times before the refusal", e.store.calls.Load())
			}
			if ops := e.composer.Ops(); len(ops) != 0 {
				t.Errorf("composer called: %q", ops)
			}
			e.AssertEvents()
			if after := e.decky(t, sl.FleetDecky("web1")); !slices.Equal(after.Services, before.Services) {
				t.Errorf("store changed: %v -> %v", before.Services, after.Services)
			}
		})
	}
}

// assertKind checks that err matches want and none of the other sentinels.
func assertKind(t *testing.T, err, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want %v", want)
	}
	if !strings.HasPrefix(err.Error(), "servicelive: ") {
		t.Errorf("message %q lacks the package prefix", err)
	}
	for _, s := range []error{sl.ErrNotFound, sl.ErrConflict, sl.ErrInvalidService} {
		if errors.Is(err, s) != (s == want) {
			t.Errorf("errors.Is(%q, %v) = %v", err, s, !(s == want))
		}
	}
}

func TestAddServiceConfigError(t *testing.T) {
	e := newStrictEnv(t)
	_, err := e.m.AddService(context.Background(), sl.FleetDecky("web1"), "ssh", sl.WithConfig(sl.Config{"port": 3.5}))
	var ce *sl.ConfigError
	if !errors.As(err, &ce) || ce.Key != "port" || ce.Service != "ssh" {
		t.Fatalf("err = %v, want a *ConfigError on port", err)
	}
}

func TestAddServiceEngineFailureRollsBack(t *testing.T) {
	e := newEnvWith(t, servicelivetest.Deployed(), servicelivetest.WithComposeFiles())
	dir := e.Dir
	ctx := context.Background()
	fileBefore := readFile(t, filepath.Join(dir, "decnet", "deckies", "web1.yaml"))

	engineErr := errors.New("engine exploded")
	e.composer.FailNext(servicelivetest.OpUp, engineErr)
	_, err := e.m.AddService(ctx, sl.FleetDecky("web1"), "ssh", sl.WithConfig(sl.Config{"port": 22}))
	if !errors.Is(err, engineErr) {
		t.Fatalf("err = %v, want it to wrap the engine's error", err)
	}
	for _, s := range []error{sl.ErrNotFound, sl.ErrConflict, sl.ErrInvalidService} {
		if errors.Is(err, s) {
			t.Errorf("engine failure matches %v", s)
		}
	}
	d := e.decky(t, sl.FleetDecky("web1"))
	if !slices.Equal(d.Services, []string{"http"}) || d.Config["ssh"] != nil {
		t.Fatalf("store not rolled back: %+v", d)
	}
	if got := readFile(t, filepath.Join(dir, "decnet", "deckies", "web1.yaml")); got != fileBefore {
		t.Fatalf("compose file not rolled back:\n%s\nwant:\n%s", got, fileBefore)
	}
	if ops := e.composer.Ops(); !slices.Equal(ops, []string{"up decnet web1-ssh", "down decnet web1-ssh"}) {
		t.Fatalf("composer calls = %q, want the failed up and its cleanup", ops)
	}
	if !e.AssertEvents() {
		t.Fatal("events published for a failed add")
	}
	// A retry works.
	if _, err := e.m.AddService(ctx, sl.FleetDecky("web1"), "ssh"); err != nil {
		t.Fatalf("retry: %v", err)
	}
}

func TestAddServiceCancelledRollsBack(t *testing.T) {
	e := newDeployedEnv(t)
	e.composer.SetHook(func(ctx context.Context, c servicelivetest.Call) error {
		if c.Op == servicelivetest.OpUp {
			<-ctx.Done() // the engine hangs until the caller gives up
			return ctx.Err()
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := e.m.AddService(ctx, sl.FleetDecky("web2"), "ssh")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the deadline", err)
	}
	if d := e.decky(t, sl.FleetDecky("web2")); len(d.Services) != 0 {
		t.Fatalf("store not rolled back: %v", d.Services)
	}
	if ops := e.composer.Ops(); !slices.Equal(ops, []string{"up decnet web2-ssh", "down decnet web2-ssh"}) {
		t.Fatalf("calls = %q, want the cancelled up and its cleanup", ops)
	}
}

func TestAddServiceRollbackFailureReportsBoth(t *testing.T) {
	e := newDeployedEnv(t)
	engineErr := errors.New("up failed")
	storeErr := errors.New("store down")
	var failing atomic.Bool
	m, err := sl.New(&failingUpdates{Store: e.mem, fail: &failing, err: storeErr}, e.composer, testRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	e.composer.SetHook(func(ctx context.Context, c servicelivetest.Call) error {
		if c.Op == servicelivetest.OpUp {
			failing.Store(true) // the undo's Update fails
			return engineErr
		}
		return nil
	})
	_, err = m.AddService(context.Background(), sl.FleetDecky("web2"), "ssh")
	if !errors.Is(err, engineErr) || !errors.Is(err, storeErr) {
		t.Fatalf("err = %v, want both the engine's and the rollback's error", err)
	}
}

type failingUpdates struct {
	sl.Store
	fail *atomic.Bool
	err  error
}

func (s *failingUpdates) Update(ctx context.Context, ref sl.Ref, fn func(*sl.Decky) error) (sl.Decky, error) {
	if s.fail.Load() {
		return sl.Decky{}, s.err
	}
	return s.Store.Update(ctx, ref, fn)
}

func TestRemoveService(t *testing.T) {
	e := newDeployedEnv(t)
	ctx := context.Background()
	if _, err := e.m.AddService(ctx, sl.FleetDecky("web2"), "ssh", sl.WithConfig(sl.Config{"port": 22})); err != nil {
		t.Fatal(err)
	}
	e.composer.Reset()
	got, err := e.m.RemoveService(ctx, sl.FleetDecky("web2"), "ssh")
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || len(got) != 0 {
		t.Fatalf("services = %#v, want an empty list", got)
	}
	d := e.decky(t, sl.FleetDecky("web2"))
	if len(d.Services) != 0 || d.Config["ssh"] != nil {
		t.Fatalf("stored %+v", d)
	}
	if ops := e.composer.Ops(); !slices.Equal(ops, []string{"down decnet web2-ssh"}) {
		t.Fatalf("calls = %q", ops)
	}
	if calls := e.composer.Calls(); !slices.Contains(calls[0].Services, "web2-ssh") {
		t.Fatalf("project of Down lacks the service: %v", calls[0].Services)
	}
	if got := e.composer.RunningIn("decnet"); slices.Contains(got, "web2-ssh") || !slices.Contains(got, "web2") {
		t.Fatalf("running after the removal: %q", got)
	}
	e.AssertEvents(
		"decky.web2.service_added service=ssh services=ssh config=port",
		"decky.web2.service_removed service=ssh services= applied=true",
	)
	// A later plain re-add starts fresh.
	if _, err := e.m.AddService(ctx, sl.FleetDecky("web2"), "ssh"); err != nil {
		t.Fatal(err)
	}
	if d := e.decky(t, sl.FleetDecky("web2")); d.Config["ssh"] != nil {
		t.Fatalf("config survived removal: %v", d.Config)
	}
}

func TestRemoveServiceRefused(t *testing.T) {
	tests := []struct {
		name    string
		ref     sl.Ref
		service string
		want    error
	}{
		{"bad decky name", sl.FleetDecky("web_1"), "http", sl.ErrInvalidService},
		{"bad service name", sl.FleetDecky("web1"), "HTTP", sl.ErrInvalidService},
		{"missing decky", sl.FleetDecky("nope"), "http", sl.ErrNotFound},
		{"missing topology", sl.TopologyDecky("nope", "web1"), "http", sl.ErrNotFound},
		{"not on decky", sl.FleetDecky("web1"), "ssh", sl.ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newDeployedEnv(t)
			_, err := e.m.RemoveService(context.Background(), tt.ref, tt.service)
			assertKind(t, err, tt.want)
			if ops := e.composer.Ops(); len(ops) != 0 {
				t.Errorf("composer called: %q", ops)
			}
			if d := e.decky(t, sl.FleetDecky("web1")); !slices.Equal(d.Services, []string{"http"}) {
				t.Errorf("store changed: %v", d.Services)
			}
		})
	}
}

func TestRemoveServiceEngineFailure(t *testing.T) {
	e := newEnvWith(t, servicelivetest.Deployed(), servicelivetest.WithComposeFiles())
	ctx := context.Background()
	file := filepath.Join(e.Dir, "decnet", "deckies", "web1.yaml")
	before := readFile(t, file)
	engineErr := errors.New("stop failed")
	e.composer.FailNext(servicelivetest.OpDown, engineErr)
	_, err := e.m.RemoveService(ctx, sl.FleetDecky("web1"), "http")
	if !errors.Is(err, engineErr) {
		t.Fatalf("err = %v", err)
	}
	if d := e.decky(t, sl.FleetDecky("web1")); !slices.Equal(d.Services, []string{"http"}) {
		t.Fatalf("persisted despite the engine failure: %v", d.Services)
	}
	if got := readFile(t, file); got != before {
		t.Fatalf("compose file changed:\n%s", got)
	}
	if got := e.composer.RunningIn("decnet"); !slices.Contains(got, "web1-http") {
		t.Fatalf("the failed Down removed the container: running %q", got)
	}
	e.AssertEvents()
}

func TestRemoveUnregisteredService(t *testing.T) {
	e := newStrictEnv(t)
	ctx := context.Background()
	if err := e.mem.Put(ctx, "", sl.Decky{Name: "old", Image: "decnet/base", Services: []string{"gone", "http"}}); err != nil {
		t.Fatal(err)
	}
	got, err := e.m.RemoveService(ctx, sl.FleetDecky("old"), "gone")
	if err != nil || !slices.Equal(got, []string{"http"}) {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestComposeKeyCollisions(t *testing.T) {
	ctx := context.Background()
	t.Run("service key of another decky", func(t *testing.T) {
		e := newStrictEnv(t)
		e.put(t, "", sl.Decky{Name: "a", Image: "x", Services: []string{"b-c"}}, sl.Decky{Name: "a-b", Image: "x"})
		e.deploy(t, "")
		_, err := e.m.AddService(ctx, sl.FleetDecky("a-b"), "c")
		assertKind(t, err, sl.ErrConflict)
	})
	t.Run("name of another decky", func(t *testing.T) {
		e := newStrictEnv(t)
		e.put(t, "", sl.Decky{Name: "a", Image: "x"}, sl.Decky{Name: "a-c", Image: "x"})
		e.deploy(t, "")
		_, err := e.m.AddService(ctx, sl.FleetDecky("a"), "c")
		assertKind(t, err, sl.ErrConflict)
	})
	t.Run("other scope does not collide", func(t *testing.T) {
		e := newDeployedEnv(t)
		e.put(t, "Lab", sl.Decky{Name: "web1-ssh", Image: "x"})
		if _, err := e.m.AddService(ctx, sl.FleetDecky("web1"), "ssh"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("concurrent adds of one key", func(t *testing.T) {
		e := newStrictEnv(t)
		e.put(t, "", sl.Decky{Name: "a", Image: "x"}, sl.Decky{Name: "a-b", Image: "x"})
		e.deploy(t, "")
		e.composer.SetDelay(5 * time.Millisecond)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		wg.Go(func() { _, errs[0] = e.m.AddService(ctx, sl.FleetDecky("a"), "b-c") })
		wg.Go(func() { _, errs[1] = e.m.AddService(ctx, sl.FleetDecky("a-b"), "c") })
		wg.Wait()
		if (errs[0] == nil) == (errs[1] == nil) {
			t.Fatalf("want exactly one success: %v", errs)
		}
		for _, err := range errs {
			if err != nil && !errors.Is(err, sl.ErrConflict) {
				t.Fatalf("the loser's error = %v", err)
			}
		}
	})
}

// TestPublishFailureDoesNotFail: a Bus failure fails no mutation, and
// once the Bus is back the events arrive in order: the event after a
// refused one waits behind it (the breaker) instead of overtaking it.
func TestPublishFailureDoesNotFail(t *testing.T) {
	e := newDeployedEnv(t, sl.WithRedelivery(50*time.Millisecond, 100*time.Millisecond))
	ctx := context.Background()
	e.bus.Fail(errors.New("bus down"))
	if _, err := e.m.AddService(ctx, sl.FleetDecky("web2"), "ssh"); err != nil {
		t.Fatalf("a bus failure failed the mutation: %v", err)
	}
	if d := e.decky(t, sl.FleetDecky("web2")); !slices.Equal(d.Services, []string{"ssh"}) {
		t.Fatalf("mutation undone: %v", d.Services)
	}
	// The Bus is back before the relay's first retry: the removal must
	// not overtake the addition waiting in the outbox (a dashboard would
	// show ssh forever).
	e.bus.Fail(nil)
	if _, err := e.m.RemoveService(ctx, sl.FleetDecky("web2"), "ssh"); err != nil {
		t.Fatalf("a bus failure failed the mutation: %v", err)
	}
	if _, err := e.m.AddService(ctx, sl.FleetDecky("web2"), "ssh"); err != nil {
		t.Fatal(err)
	}
	waitEvents(t, e.bus, 3)
	e.AssertEvents(
		"decky.web2.service_added service=ssh services=ssh",
		"decky.web2.service_removed service=ssh services=",
		"decky.web2.service_added service=ssh services=ssh",
	)
	if err := e.m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// The relay found the outbox empty: the next event goes straight out.
	attempts := e.bus.Attempts()
	if _, err := e.m.RemoveService(ctx, sl.FleetDecky("web2"), "ssh"); err != nil {
		t.Fatal(err)
	}
	if n := e.bus.Attempts(); n != attempts+1 || len(e.bus.Events()) != 4 {
		t.Errorf("after the relay emptied the outbox: %d attempts, %d events; want one more of each, at once", n-attempts, len(e.bus.Events())-3)
	}
}

func TestTopologyScope(t *testing.T) {
	e := newDeployedEnv(t)
	ctx := context.Background()
	if _, err := e.m.AddService(ctx, sl.TopologyDecky("Lab", "web1"), "ssh"); err != nil {
		t.Fatal(err)
	}
	calls := e.composer.Calls()
	if calls[0].Project != e.m.ProjectName("Lab") || calls[0].Project == "decnet" {
		t.Fatalf("project = %q", calls[0].Project)
	}
	e.AssertEvents("decky.web1.service_added topology=Lab service=ssh services=ssh")
	if d := e.decky(t, sl.FleetDecky("web1")); slices.Contains(d.Services, "ssh") {
		t.Fatal("a topology mutation changed the fleet")
	}
}

func TestProjectNamesInjective(t *testing.T) {
	e := newStrictEnv(t)
	seen := map[string]string{}
	for _, id := range []string{"", "lab", "Lab", "LAB", "l-ab", "la-b", "a", "A", "a-a", "aA", "Aa", "t", "x-t-y"} {
		name := e.m.ProjectName(id)
		if prev, dup := seen[name]; dup {
			t.Fatalf("topologies %q and %q share project %q", prev, id, name)
		}
		seen[name] = id
		if !regexpComposeProject(name) {
			t.Fatalf("project name %q is not a valid compose project name", name)
		}
	}
}

func regexpComposeProject(s string) bool {
	if s == "" || !(s[0] >= 'a' && s[0] <= 'z' || s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func TestProject(t *testing.T) {
	e := newDeployedEnv(t)
	ctx := context.Background()
	if _, err := e.m.AddService(ctx, sl.FleetDecky("web1"), "ssh", sl.WithConfig(sl.Config{"banner": "hi"})); err != nil {
		t.Fatal(err)
	}
	p, err := e.m.Project(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "decnet" {
		t.Fatalf("name = %q", p.Name)
	}
	if got := p.ServiceNames(); !slices.Equal(got, []string{"web1", "web1-http", "web1-ssh", "web2"}) {
		t.Fatalf("services = %v", got)
	}
	base := p.Services["web1"]
	if base.Image != "decnet/base" || base.Hostname != "web1" || base.Networks["decnet_lan"].Ipv4Address != "10.0.0.5" || !p.Networks["decnet_lan"].External {
		t.Fatalf("base = %+v, networks %+v", base, p.Networks)
	}
	if _, ok := p.Services["web2"].Networks["default"]; !ok || p.Networks["default"].Name != "decnet_default" {
		t.Fatalf("web2 lacks the default network: %+v", p.Services["web2"].Networks)
	}
	ssh := p.Services["web1-ssh"]
	switch {
	case ssh.NetworkMode != "service:web1":
		t.Errorf("network_mode = %q", ssh.NetworkMode)
	case ssh.DependsOn["web1"].Condition != types.ServiceConditionStarted:
		t.Errorf("depends_on = %+v", ssh.DependsOn)
	case ssh.Image != "decnet/ssh" || ssh.Hostname != "" || len(ssh.Networks) != 0:
		t.Errorf("ssh = %+v", ssh)
	case *ssh.Environment["BANNER"] != "hi":
		t.Errorf("compose hook not applied: %v", ssh.Environment)
	case ssh.Labels[sl.LabelDecky] != "web1" || ssh.Labels[sl.LabelService] != "ssh" || ssh.Labels[sl.LabelTopology] != "":
		t.Errorf("labels = %v", ssh.Labels)
	case ssh.CustomLabels["com.docker.compose.project"] != "decnet" || ssh.CustomLabels["com.docker.compose.service"] != "web1-ssh":
		t.Errorf("compose labels = %v", ssh.CustomLabels)
	case ssh.ContainerName != "decnet.web1.ssh" || base.ContainerName != "decnet.web1":
		t.Errorf("container names %q %q", ssh.ContainerName, base.ContainerName)
	case ssh.Logging == nil || ssh.Logging.Driver != "json-file" || ssh.Logging.Options["max-size"] == "":
		t.Errorf("logging = %+v", ssh.Logging)
	}
}

func TestComposeHookCannotEscape(t *testing.T) {
	h := servicelivetest.NewHarness(t, map[string][]sl.Decky{"": {{Name: "web1", Image: "b"}}}, []sl.Service{
		{Name: "evil", Image: "x", Compose: func(d sl.Decky, cfg sl.Config, s *types.ServiceConfig) {
			s.NetworkMode = "host"
			s.ContainerName = "other.scope"
			s.Labels = types.Labels{sl.LabelTopology: "other", "keep": "me"}
			s.Name = "web2"
		}},
		{Name: "boom", Image: "x", Compose: func(sl.Decky, sl.Config, *types.ServiceConfig) { panic("hook bug") }},
	}, servicelivetest.Deployed())
	ctx := context.Background()
	if _, err := h.Manager.AddService(ctx, sl.FleetDecky("web1"), "evil"); err != nil {
		t.Fatal(err)
	}
	s := h.Composer.Calls()[0].Spec.Services["web1-evil"]
	if s.NetworkMode != "service:web1" || s.ContainerName != "decnet.web1.evil" || s.Labels[sl.LabelTopology] != "" || s.Labels["keep"] != "me" || s.Name != "web1-evil" {
		t.Fatalf("hook escaped: %+v", s)
	}
	_, err := h.Manager.AddService(ctx, sl.FleetDecky("web1"), "boom")
	if err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("err = %v, want the hook's panic as an error", err)
	}
	if d := h.Decky(sl.FleetDecky("web1")); !slices.Equal(d.Services, []string{"evil"}) {
		t.Fatalf("store after a panicking hook: %v", d.Services)
	}
}

func TestComposeFiles(t *testing.T) {
	// Lenient: the first add deliberately comes before any Deploy, to see
	// which files a mutation alone writes (an engine would refuse the
	// service without its base).
	e := newEnvWith(t, servicelivetest.Lenient(), servicelivetest.WithComposeFiles())
	dir := e.Dir
	ctx := context.Background()
	// A mutation writes its own decky's file only: compose.yaml includes
	// the deckies that have one.
	if _, err := e.m.AddService(ctx, sl.FleetDecky("web2"), "ssh"); err != nil {
		t.Fatal(err)
	}
	top := readFile(t, filepath.Join(dir, "decnet", "compose.yaml"))
	if !strings.Contains(top, "deckies/web2.yaml") || strings.Contains(top, "deckies/web1.yaml") {
		t.Fatalf("compose.yaml after the first add:\n%s", top)
	}
	// Deploy writes every decky's.
	if err := e.m.Deploy(ctx, ""); err != nil {
		t.Fatal(err)
	}
	top = readFile(t, filepath.Join(dir, "decnet", "compose.yaml"))
	for _, want := range []string{"name: decnet", "deckies/web1.yaml", "deckies/web2.yaml"} {
		if !strings.Contains(top, want) {
			t.Fatalf("compose.yaml lacks %q:\n%s", want, top)
		}
	}
	web2 := readFile(t, filepath.Join(dir, "decnet", "deckies", "web2.yaml"))
	if !strings.Contains(web2, `"web2-ssh": {`) || !strings.Contains(web2, `"network_mode": "service:web2"`) {
		t.Fatalf("web2.yaml:\n%s", web2)
	}
	if _, err := e.m.RemoveService(ctx, sl.FleetDecky("web2"), "ssh"); err != nil {
		t.Fatal(err)
	}
	if web2 := readFile(t, filepath.Join(dir, "decnet", "deckies", "web2.yaml")); strings.Contains(web2, "web2-ssh") {
		t.Fatalf("removed service still in the file:\n%s", web2)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "decnet", "deckies"))
	for _, en := range entries {
		if strings.Contains(en.Name(), ".tmp") {
			t.Fatalf("temp file left: %s", en.Name())
		}
	}
}

// TestComposeFileIsLiteral loads a written file with compose-go, as Docker
// Compose would: values holding "$" reach the service verbatim, never
// interpolated from the environment.
func TestComposeFileIsLiteral(t *testing.T) {
	e := newEnvWith(t, servicelivetest.Deployed(), servicelivetest.WithComposeFiles())
	dir := e.Dir
	ctx := context.Background()
	banner := "${HOME} $HOME $$x $(id) ${SECRET:?boom}"
	if _, err := e.m.AddService(ctx, sl.FleetDecky("web2"), "ssh", sl.WithConfig(sl.Config{"banner": banner})); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", "/should/not/appear")
	opts, err := cli.NewProjectOptions([]string{filepath.Join(dir, "decnet", "compose.yaml")}, cli.WithOsEnv)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Services["web2-ssh"].Environment["BANNER"]; got == nil || *got != banner {
		t.Fatalf("BANNER = %v, want %q verbatim", got, banner)
	}
	if got := p.ServiceNames(); !slices.Equal(got, []string{"web1", "web1-http", "web2", "web2-ssh"}) {
		t.Fatalf("services = %v", got)
	}
}

func TestDeployAndTeardown(t *testing.T) {
	e := newStrictEnv(t)
	ctx := context.Background()
	if err := e.m.Deploy(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if got, want := e.composer.RunningIn("decnet"), []string{"web1", "web1-http", "web2"}; !slices.Equal(got, want) {
		t.Fatalf("running = %v, want %v", got, want)
	}
	// Base before its services.
	ops := e.composer.Ops()
	if slices.Index(ops, "up decnet web1") > slices.Index(ops, "up decnet web1-http") {
		t.Fatalf("service up before its base: %v", ops)
	}
	if err := e.m.Deploy(ctx, "Lab"); err != nil {
		t.Fatal(err)
	}
	e.composer.Reset()
	if err := e.m.Teardown(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if ops := e.composer.Ops(); !slices.Equal(ops, []string{"remove_project decnet"}) {
		t.Fatalf("teardown calls = %q", ops)
	}
	if got := e.composer.RunningIn("decnet"); len(got) != 0 {
		t.Fatalf("still running after teardown: %v", got)
	}
	if got := e.composer.RunningIn(e.m.ProjectName("Lab")); len(got) != 1 {
		t.Fatalf("teardown of the fleet touched the topology: %v", got)
	}
	if d := e.decky(t, sl.FleetDecky("web1")); !slices.Equal(d.Services, []string{"http"}) {
		t.Fatalf("teardown changed the store: %v", d.Services)
	}
}

func callOps(calls []servicelivetest.Call) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = string(c.Op) + " " + c.Service
	}
	return out
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestConcurrentMutations runs 32 goroutines adding and removing services on
// a few deckies; the final store must equal what the successful calls imply.
func TestConcurrentMutations(t *testing.T) {
	e := newStrictEnv(t)
	ctx := context.Background()
	names := []string{"d0", "d1", "d2", "d3"}
	for _, n := range names {
		e.put(t, "", sl.Decky{Name: n, Image: "b"})
	}
	e.deploy(t, "")
	services := []string{"ssh", "http", "c"}
	var net sync.Map // decky/service -> *atomic.Int64 (adds - removes that succeeded)
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range 50 {
				d, s := names[(g+i)%len(names)], services[(g*7+i)%len(services)]
				v, _ := net.LoadOrStore(d+"/"+s, new(atomic.Int64))
				if (g+i)%2 == 0 {
					if _, err := e.m.AddService(ctx, sl.FleetDecky(d), s); err == nil {
						v.(*atomic.Int64).Add(1)
					} else if !errors.Is(err, sl.ErrConflict) {
						t.Error(err)
					}
				} else {
					if _, err := e.m.RemoveService(ctx, sl.FleetDecky(d), s); err == nil {
						v.(*atomic.Int64).Add(-1)
					} else if !errors.Is(err, sl.ErrConflict) {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	for _, d := range names {
		got := e.decky(t, sl.FleetDecky(d))
		for _, s := range services {
			v, ok := net.Load(d + "/" + s)
			want := ok && v.(*atomic.Int64).Load() == 1
			if !ok || v.(*atomic.Int64).Load() < 0 || v.(*atomic.Int64).Load() > 1 {
				if ok {
					t.Fatalf("%s/%s: net successful adds = %d, want 0 or 1", d, s, v.(*atomic.Int64).Load())
				}
			}
			if got.HasService(s) != want {
				t.Fatalf("%s/%s: stored %v, calls imply %v", d, s, got.HasService(s), want)
			}
		}
	}
	// The fake engine agrees with the store: every base, every service.
	fleet, err := e.mem.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, d := range fleet {
		want = append(want, d.ComposeKeys()...)
	}
	slices.Sort(want)
	if got := e.composer.RunningIn("decnet"); !slices.Equal(got, want) {
		t.Fatalf("running %v, store says %v", got, want)
	}
}

// TestDifferentDeckiesDoNotWait blocks an add on one decky inside the engine
// and checks that an add on another decky completes meanwhile.
func TestDifferentDeckiesDoNotWait(t *testing.T) {
	e := newDeployedEnv(t)
	entered, release := make(chan struct{}), make(chan struct{})
	e.composer.SetHook(func(ctx context.Context, c servicelivetest.Call) error {
		if c.Service == "web1-ssh" {
			close(entered)
			<-release
		}
		return nil
	})
	done := make(chan error)
	go func() {
		_, err := e.m.AddService(context.Background(), sl.FleetDecky("web1"), "ssh")
		done <- err
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.m.AddService(ctx, sl.FleetDecky("web2"), "ssh"); err != nil {
		t.Fatalf("add on another decky waited: %v", err)
	}
	// The same decky waits, and honours its context while waiting.
	short, cancel2 := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel2()
	if _, err := e.m.AddService(short, sl.FleetDecky("web1"), "c"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("same-decky add: %v, want it to wait until its deadline", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestNewRejectsBadArguments(t *testing.T) {
	reg := testRegistry(t)
	mem := sl.NewMemoryStore(nil)
	c := &servicelivetest.Composer{}
	for _, tt := range []struct {
		name string
		fn   func() (*sl.Manager, error)
	}{
		{"nil store", func() (*sl.Manager, error) { return sl.New(nil, c, reg) }},
		{"nil composer", func() (*sl.Manager, error) { return sl.New(mem, nil, reg) }},
		{"nil registry", func() (*sl.Manager, error) { return sl.New(mem, c, nil) }},
		{"bad fleet project", func() (*sl.Manager, error) { return sl.New(mem, c, reg, sl.WithFleetProject("De_cnet")) }},
	} {
		if _, err := tt.fn(); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}

func ExampleManager_AddService() {
	store := sl.NewMemoryStore(map[string][]sl.Decky{
		"": {{Name: "web1", Image: "decnet/base", IP: "192.168.1.10"}},
	})
	reg, _ := sl.NewRegistry(sl.Service{Name: "ssh", Image: "decnet/ssh", Ports: []int{22}})
	composer := &servicelivetest.Composer{} // dockercompose.New() drives a real engine
	m, _ := sl.New(store, composer, reg)
	ctx := context.Background()

	_, err := m.AddService(ctx, sl.FleetDecky("web1"), "ssh")
	fmt.Println(errors.Is(err, servicelivetest.ErrBaseNotRunning)) // web1 is not deployed yet
	fmt.Println(m.Deploy(ctx, ""))
	services, err := m.AddService(ctx, sl.FleetDecky("web1"), "ssh")
	fmt.Println(services, err)
	_, err = m.AddService(ctx, sl.FleetDecky("web1"), "ssh")
	fmt.Println(errors.Is(err, sl.ErrConflict), err)
	fmt.Println(composer.Running())
	// Output:
	// true
	// <nil>
	// [ssh] <nil>
	// true servicelive: add ssh to fleet/web1: service already on decky
	// [web1 web1-ssh]
}

func TestComposeKeys(t *testing.T) {
	d := sl.Decky{Name: "web1", Services: []string{"ssh", "http"}}
	if got, want := d.ComposeKeys(), []string{"web1", "web1-ssh", "web1-http"}; !slices.Equal(got, want) {
		t.Fatalf("ComposeKeys() = %v, want %v", got, want)
	}
}
