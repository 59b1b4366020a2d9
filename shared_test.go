package servicelive_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	sl "github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
)

// The tests of this file are the regressions of issue 7: two Managers, each
// with its own FileStore handle on one file, behave as two processes (the
// decky locks are flock(2) locks, which conflict between handles as they do
// between processes). Each scenario failed before FileStore was a
// DeckyLocker and before Deploy and Reconcile wrote files under the locks.

// stall is how long a scenario gives the other Manager to get as far as it
// can while the first one is held: with the locks it gets nowhere.
const stall = 200 * time.Millisecond

// openShared returns two handles on one new FileStore holding deckies.
func openShared(t *testing.T, deckies ...sl.Decky) (a, b *sl.FileStore) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.json")
	a, err := sl.OpenFileStore(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range deckies {
		if err := a.Put(context.Background(), "", d); err != nil {
			t.Fatal(err)
		}
	}
	if b, err = sl.OpenFileStore(path); err != nil {
		t.Fatal(err)
	}
	return a, b
}

// returnsWithin fails t if ch delivers within stall (the call it reports
// on got past a lock it should have waited for); it returns the function
// that waits for the call's result.
func returnsWithin(t *testing.T, ch <-chan error, what string) func() error {
	t.Helper()
	select {
	case err := <-ch:
		t.Errorf("%s returned (%v) while the other Manager held the decky", what, err)
		return func() error { return err }
	case <-time.After(stall):
		return func() error { return <-ch }
	}
}

// heldComposer runs the engine's calls and, once the one named op+" "+key
// has taken effect, signals reached and waits for release.
type heldComposer struct {
	*servicelivetest.Composer
	op, key  string
	reached  chan struct{}
	release  chan struct{}
	stopOnce sync.Once
}

func newHeld(engine *servicelivetest.Composer, op, key string) *heldComposer {
	return &heldComposer{Composer: engine, op: op, key: key, reached: make(chan struct{}), release: make(chan struct{})}
}

func (h *heldComposer) Down(ctx context.Context, p *types.Project, key string) error {
	err := h.Composer.Down(ctx, p, key)
	h.hold("down", key)
	return err
}

func (h *heldComposer) Up(ctx context.Context, p *types.Project, key string) error {
	err := h.Composer.Up(ctx, p, key)
	h.hold("up", key)
	return err
}

func (h *heldComposer) hold(op, key string) {
	if op == h.op && key == h.key {
		h.stopOnce.Do(func() { close(h.reached); <-h.release })
	}
}

// TestSharedRemoveVersusReconcile: RemoveService in A has removed the
// container; Reconcile in B must not recreate it from the Store A has not
// updated yet.
func TestSharedRemoveVersusReconcile(t *testing.T) {
	ctx := context.Background()
	storeA, storeB := openShared(t, sl.Decky{Name: "web1", Image: "decnet/base", Services: []string{"ssh"}})
	engine := &servicelivetest.Composer{}
	held := newHeld(engine, "down", "web1-ssh")
	mA, err := sl.New(storeA, held, testRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	mB, err := sl.New(storeB, engine, testRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := mB.Deploy(ctx, ""); err != nil {
		t.Fatal(err)
	}

	removed := make(chan error, 1)
	go func() { _, err := mA.RemoveService(ctx, sl.FleetDecky("web1"), "ssh"); removed <- err }()
	<-held.reached
	reconciled := make(chan error, 1)
	go func() { _, err := mB.Reconcile(ctx, ""); reconciled <- err }()
	early := returnsWithin(t, reconciled, "Reconcile of B")
	close(held.release)
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
	if err := early(); err != nil {
		t.Fatal(err)
	}
	d, err := storeA.Get(ctx, sl.FleetDecky("web1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Services) != 0 {
		t.Errorf("store: %v, want no service", d.Services)
	}
	if got := engine.Running(); slices.Contains(got, "web1-ssh") {
		t.Errorf("engine runs %v: Reconcile brought the removed service back", got)
	}
}

// pausedStore holds the first Update of one decky until release.
type pausedStore struct {
	*sl.FileStore
	ref      sl.Ref
	reached  chan struct{}
	release  chan struct{}
	stopOnce sync.Once
}

func (s *pausedStore) Update(ctx context.Context, ref sl.Ref, fn func(*sl.Decky) error) (sl.Decky, error) {
	if ref == s.ref {
		s.stopOnce.Do(func() { close(s.reached); <-s.release })
	}
	return s.FileStore.Update(ctx, ref, fn)
}

// TestSharedComposeKeyCollision: decky a adding b-c in A while decky a-b
// adds c in B would make compose key a-b-c twice; exactly one must win.
func TestSharedComposeKeyCollision(t *testing.T) {
	ctx := context.Background()
	fa, storeB := openShared(t, sl.Decky{Name: "a", Image: "decnet/base"}, sl.Decky{Name: "a-b", Image: "decnet/base"})
	storeA := &pausedStore{FileStore: fa, ref: sl.FleetDecky("a"), reached: make(chan struct{}), release: make(chan struct{})}
	engine := &servicelivetest.Composer{Lenient: true} // the deckies were never deployed
	mA, err := sl.New(storeA, engine, testRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	mB, err := sl.New(storeB, engine, testRegistry(t))
	if err != nil {
		t.Fatal(err)
	}

	errA := make(chan error, 1)
	go func() { _, err := mA.AddService(ctx, sl.FleetDecky("a"), "b-c"); errA <- err }()
	<-storeA.reached // A has checked the key and is about to store it
	errB := make(chan error, 1)
	go func() { _, err := mB.AddService(ctx, sl.FleetDecky("a-b"), "c"); errB <- err }()
	resultB := returnsWithin(t, errB, "B's add of the same compose key")
	close(storeA.release)
	if err := <-errA; err != nil {
		t.Fatalf("A: %v", err)
	}
	if err := resultB(); !errors.Is(err, sl.ErrConflict) {
		t.Fatalf("B: %v, want ErrConflict", err)
	}
	if _, err := mA.Project(ctx, ""); err != nil {
		t.Fatalf("the scope no longer renders: %v", err)
	}
}

// listPausedStore holds the first List until release (later ones pass).
type listPausedStore struct {
	sl.Store
	reached chan struct{}
	release chan struct{}
	first   atomic.Bool
}

func (s *listPausedStore) List(ctx context.Context, topology string) ([]sl.Decky, error) {
	ds, err := s.Store.List(ctx, topology)
	if !s.first.Swap(true) {
		close(s.reached)
		<-s.release
	}
	return ds, err
}

// TestReconcileKeepsConcurrentAddFile: in one process, an AddService that
// completes after Reconcile listed the scope keeps its compose file.
func TestReconcileKeepsConcurrentAddFile(t *testing.T) {
	for _, op := range []string{"reconcile", "deploy"} {
		t.Run(op, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			mem := sl.NewMemoryStore(map[string][]sl.Decky{"": {{Name: "web1", Image: "decnet/base"}, {Name: "web2", Image: "decnet/base"}}})
			st := &listPausedStore{Store: mem, reached: make(chan struct{}), release: make(chan struct{})}
			m, err := sl.New(st, &servicelivetest.Composer{Lenient: true}, testRegistry(t), sl.WithProjectDir(dir))
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				if op == "deploy" {
					done <- m.Deploy(ctx, "")
					return
				}
				_, err := m.Reconcile(ctx, "")
				done <- err
			}()
			<-st.reached
			if _, err := m.AddService(ctx, sl.FleetDecky("web2"), "ssh"); err != nil {
				t.Fatal(err)
			}
			close(st.release)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if f := readFile(t, filepath.Join(dir, "decnet", "deckies", "web2.yaml")); !strings.Contains(f, `"web2-ssh"`) {
				t.Fatalf("web2.yaml lost the service added during %s:\n%s", op, f)
			}
		})
	}
}

// TestComposeFilesPrivate: compose files can hold secrets.
func TestComposeFilesPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "compose")
	e := newEnv(t, sl.WithProjectDir(dir))
	if err := e.m.Deploy(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(dir, func(path string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := de.Info()
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		if de.IsDir() {
			want = 0o700
		}
		if got := info.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", path, got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDeployFailureIsolated: a decky that fails to deploy does not stop the
// others.
func TestDeployFailureIsolated(t *testing.T) {
	e := newEnv(t)
	e.composer.FailOn(servicelivetest.OpUp, "web1", errors.New("engine says no"))
	err := e.m.Deploy(context.Background(), "")
	if err == nil || !strings.Contains(err.Error(), "engine says no") {
		t.Fatalf("Deploy: %v, want web1's failure", err)
	}
	if got := e.composer.Running(); !slices.Contains(got, "web2") {
		t.Fatalf("running %v: web2 was not deployed", got)
	}
}

// listHeldComposer lists the engine's containers, then holds the Reconcile
// that asked until release.
type listHeldComposer struct {
	*servicelivetest.Composer
	reached, release chan struct{}
	once             sync.Once
}

func (c *listHeldComposer) Containers(ctx context.Context, p *types.Project) ([]sl.Container, error) {
	cs, err := c.Composer.Containers(ctx, p)
	c.once.Do(func() { close(c.reached); <-c.release })
	return cs, err
}

// TestReconcileStaleStray: decky a drops b-c and decky a-b adds c (both
// compose key a-b-c) after Reconcile listed the containers: the new
// container is a-b's, not a stray of a, and stays.
func TestReconcileStaleStray(t *testing.T) {
	ctx := context.Background()
	mem := sl.NewMemoryStore(map[string][]sl.Decky{"": {{Name: "a", Image: "decnet/base", Services: []string{"b-c"}}, {Name: "a-b", Image: "decnet/base"}}})
	engine := &servicelivetest.Composer{}
	held := &listHeldComposer{Composer: engine, reached: make(chan struct{}), release: make(chan struct{})}
	mR, err := sl.New(mem, held, testRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	m, err := sl.New(mem, engine, testRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Deploy(ctx, ""); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := mR.Reconcile(ctx, ""); done <- err }()
	<-held.reached
	if _, err := m.RemoveService(ctx, sl.FleetDecky("a"), "b-c"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.AddService(ctx, sl.FleetDecky("a-b"), "c"); err != nil {
		t.Fatal(err)
	}
	close(held.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, want := engine.Running(), []string{"a", "a-b", "a-b-c"}; !slices.Equal(got, want) {
		t.Fatalf("engine runs %v, want %v: Reconcile removed a-b's new container as a stray of a", got, want)
	}
}
