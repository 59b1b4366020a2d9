package servicelive_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	sl "github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
)

func actions(r sl.Report) map[string]sl.Action {
	out := map[string]sl.Action{}
	for _, c := range r.Containers {
		out[c.Service] = c.Action
	}
	return out
}

func TestReconcile(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	// An empty engine: Reconcile is a full deploy.
	rep, err := e.m.Reconcile(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]sl.Action{"web1": sl.ActionCreated, "web1-http": sl.ActionCreated, "web2": sl.ActionCreated}
	if got := actions(rep); !mapsEqual(got, want) {
		t.Fatalf("first reconcile = %v, want %v", got, want)
	}
	if _, err := e.m.AddService(ctx, sl.FleetDecky("web2"), "ssh"); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, k := range []string{"web1", "web1-http", "web2", "web2-ssh"} {
		ids[k] = e.composer.ContainerID("decnet", k)
	}

	// A converged engine is left alone.
	e.composer.Reset()
	rep, err = e.m.Reconcile(ctx, "")
	if err != nil || rep.Changed() != 0 || len(e.composer.Calls()) != 0 {
		t.Fatalf("reconcile of a converged scope: %+v, %v, calls %v", rep, err, callOps(e.composer.Calls()))
	}

	// Drift of every kind.
	e.composer.SetState("decnet", "web2-ssh", "exited")         // killed
	e.composer.SetState("decnet", "web1", "paused")             // paused base
	e.composer.Inject("decnet", "web2-telnet", "web2")          // stray service
	e.composer.Inject("decnet", "gone", "gone")                 // base of a decky not in the store
	e.composer.Inject(e.m.ProjectName("Lab"), "web1-x", "web1") // another scope: not ours
	rep, err = e.m.Reconcile(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	want = map[string]sl.Action{
		"web1": sl.ActionRecreated, "web1-http": sl.ActionRecreated, // base repaired: its services too
		"web2": sl.ActionNone, "web2-ssh": sl.ActionStarted,
		"web2-telnet": sl.ActionRemoved, "gone": sl.ActionRemoved,
	}
	if got := actions(rep); !mapsEqual(got, want) {
		t.Fatalf("reconcile = %v, want %v", got, want)
	}
	if got := e.composer.ContainerID("decnet", "web2"); got != ids["web2"] {
		t.Fatal("a correct container was recreated")
	}
	if got := e.composer.ContainerID("decnet", "web2-ssh"); got != ids["web2-ssh"] {
		t.Fatal("a stopped container was recreated instead of started")
	}
	if e.composer.ContainerID(e.m.ProjectName("Lab"), "web1-x") == "" {
		t.Fatal("reconcile of the fleet touched a topology")
	}
	if got, want := e.composer.RunningIn("decnet"), []string{"web1", "web1-http", "web2", "web2-ssh"}; !slices.Equal(got, want) {
		t.Fatalf("running = %v, want %v", got, want)
	}

	// A diverged container is recreated.
	e.composer.Diverge("decnet", "web2-ssh")
	rep, err = e.m.Reconcile(ctx, "")
	if err != nil || actions(rep)["web2-ssh"] != sl.ActionRecreated || rep.Changed() != 1 {
		t.Fatalf("diverged: %+v, %v", rep, err)
	}
}

func mapsEqual(a, b map[string]sl.Action) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

type upDownOnly struct{ sl.Composer }

func TestReconcileUnsupported(t *testing.T) {
	reg := testRegistry(t)
	m, err := sl.New(sl.NewMemoryStore(nil), upDownOnly{&servicelivetest.Composer{}}, reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Reconcile(context.Background(), ""); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("err = %v, want ErrUnsupported", err)
	}
}

func TestReconcileReportsFailures(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	engineErr := errors.New("no space left")
	e.composer.FailOn(servicelivetest.OpUp, "web1-http", engineErr)
	rep, err := e.m.Reconcile(ctx, "")
	if !errors.Is(err, engineErr) {
		t.Fatalf("err = %v", err)
	}
	for _, c := range rep.Containers {
		if (c.Err != nil) != (c.Service == "web1-http") {
			t.Fatalf("report: %+v", rep.Containers)
		}
	}
	// Once the engine recovers, a second run converges.
	e.composer.FailOn(servicelivetest.OpUp, "web1-http", nil)
	if rep, err := e.m.Reconcile(ctx, ""); err != nil || actions(rep)["web1-http"] != sl.ActionCreated || rep.Changed() != 1 {
		t.Fatalf("second run: %+v, %v", rep, err)
	}
}

// TestReconcileConcurrentWithMutations runs Reconcile in a loop while
// mutations run; afterwards one more Reconcile changes nothing and the
// engine matches the store.
func TestReconcileConcurrentWithMutations(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := e.m.Reconcile(ctx, ""); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for i := range 200 {
		d := []string{"web1", "web2"}[i%2]
		if i%4 < 2 {
			_, _ = e.m.AddService(ctx, sl.FleetDecky(d), "ssh")
		} else {
			_, _ = e.m.RemoveService(ctx, sl.FleetDecky(d), "ssh")
		}
	}
	close(stop)
	wg.Wait()
	rep, err := e.m.Reconcile(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	// After the loop, the engine may lag the store only where the last
	// concurrent reconcile raced a mutation; the final one fixes it, and a
	// further one finds nothing to do.
	_ = rep
	rep, err = e.m.Reconcile(ctx, "")
	if err != nil || rep.Changed() != 0 {
		t.Fatalf("not converged: %+v, %v", rep, err)
	}
	var want []string
	for _, name := range []string{"web1", "web2"} {
		want = append(want, e.decky(t, sl.FleetDecky(name)).ComposeKeys()...)
	}
	slices.Sort(want)
	if got := e.composer.RunningIn("decnet"); !slices.Equal(got, want) {
		t.Fatalf("running %v, store %v", got, want)
	}
}

// TestReconcileStrayWithoutDecky removes containers of the project whose
// decky label names no decky (missing, or set by hand).
func TestReconcileStrayWithoutDecky(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.m.Reconcile(ctx, ""); err != nil {
		t.Fatal(err)
	}
	e.composer.Inject("decnet", "other", "")
	e.composer.Inject("decnet", "weird", "../etc")
	e.composer.Inject("decnet", "upper", "Web1")
	rep, err := e.m.Reconcile(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	got := actions(rep)
	for _, k := range []string{"other", "weird", "upper"} {
		if got[k] != sl.ActionRemoved {
			t.Fatalf("%s: %v (report %+v)", k, got[k], rep)
		}
	}
	if got, want := e.composer.RunningIn("decnet"), []string{"web1", "web1-http", "web2"}; !slices.Equal(got, want) {
		t.Fatalf("running %v, want %v", got, want)
	}
}

func TestDeployEmptyScope(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, sl.WithProjectDir(dir))
	ctx := context.Background()
	if err := e.mem.Put(ctx, "empty", sl.Decky{Name: "x", Image: "b"}); err != nil {
		t.Fatal(err)
	}
	if err := e.mem.Delete(ctx, sl.TopologyDecky("empty", "x")); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Deploy(ctx, "empty"); err != nil {
		t.Fatalf("deploy of an empty scope: %v", err)
	}
	if _, err := e.m.Reconcile(ctx, "empty"); err != nil {
		t.Fatalf("reconcile of an empty scope: %v", err)
	}
}
