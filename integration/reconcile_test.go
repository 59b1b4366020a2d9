package integration_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	sl "github.com/decnet/servicelive"
	"github.com/decnet/servicelive/dockercompose"
	"github.com/decnet/servicelive/internal/testimage"
)

// bannerHook renders a banner service listening on port in the decky's
// namespace; extra, when set, is read at each render and put in the
// environment (flip it to make the rendering diverge from what runs).
func bannerHook(text, port string, extra *atomic.Int64) func(sl.Decky, sl.Config, *types.ServiceConfig) {
	return func(d sl.Decky, cfg sl.Config, s *types.ServiceConfig) {
		b, p := text+" "+d.Name+"\r\n", port
		if v, ok := cfg["port"].(int); ok {
			p = fmt.Sprint(v)
		}
		s.Command = testimage.Command(testimage.ModeBanner)
		s.Environment = types.MappingWithEquals{"BANNER": &b, "PORT": &p}
		if extra != nil {
			v := fmt.Sprint(extra.Load())
			s.Environment["FLIP"] = &v
		}
	}
}

// bannerRegistry registers ssh, http and ftp (banners on distinct ports,
// so any of them can share a namespace) and flip, whose rendering follows
// the value of flip.
func bannerRegistry(t *testing.T, image string, flip *atomic.Int64) *sl.Registry {
	t.Helper()
	reg, err := sl.NewRegistry(
		sl.Service{Name: "ssh", Image: image, Ports: []int{2222}, Schema: []sl.Field{{Key: "port", Type: sl.FieldInt}}, Compose: bannerHook("SSH-2.0-rc", "2222", nil)},
		sl.Service{Name: "http", Image: image, Ports: []int{8080}, Compose: bannerHook("HTTP-rc", "8080", nil)},
		sl.Service{Name: "ftp", Image: image, Ports: []int{2121}, Compose: bannerHook("220 rc", "2121", nil)},
		sl.Service{Name: "flip", Image: image, Ports: []int{7070}, Compose: bannerHook("FLIP", "7070", flip)},
	)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// randomName returns prefix and 8 random hex digits: a fresh project name.
func randomName(prefix string) string {
	var b [4]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// wantedKeys returns the compose keys the Store describes: every decky's
// base and service keys, sorted.
func wantedKeys(deckies []sl.Decky) []string {
	var keys []string
	for _, d := range deckies {
		keys = append(keys, d.ComposeKeys()...)
	}
	slices.Sort(keys)
	return keys
}

// observe returns every container of project by compose service key, as the
// Engine API reports them (several per key when the engine has duplicates).
func observe(ctx context.Context, api client.APIClient, project string) (map[string][]box, error) {
	res, err := api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", projectLabel+"="+project)})
	if err != nil {
		return nil, err
	}
	out := map[string][]box{}
	for _, c := range res.Items {
		in, err := api.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		key := c.Labels["com.docker.compose.service"]
		out[key] = append(out[key], box{ID: c.ID, State: string(in.Container.State.Status), StartedAt: in.Container.State.StartedAt,
			NetworkMode: string(in.Container.HostConfig.NetworkMode), Labels: c.Labels})
	}
	return out, nil
}

// drift compares the engine's containers of project with the Store's
// deckies of that scope and returns every difference: a missing, duplicate,
// stray or not running container, a service out of its base's namespace or
// with the wrong labels. None means the scope is converged.
func drift(ctx context.Context, api client.APIClient, project string, deckies []sl.Decky) (map[string]box, []string, error) {
	found, err := observe(ctx, api, project)
	if err != nil {
		return nil, nil, err
	}
	var problems []string
	single := map[string]box{}
	for key, bs := range found {
		if len(bs) > 1 {
			problems = append(problems, fmt.Sprintf("%s: %d containers", key, len(bs)))
		}
		single[key] = bs[0]
	}
	wanted := map[string]bool{}
	for _, d := range deckies {
		wanted[d.Name] = true
		base, ok := single[d.Name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s: base missing", d.Name))
		case base.State != "running":
			problems = append(problems, fmt.Sprintf("%s: base %s%s", d.Name, base.State, exitInfo(ctx, api, base.ID)))
		}
		for _, s := range d.Services {
			key := sl.ServiceKey(d.Name, s)
			wanted[key] = true
			c, ok := single[key]
			switch {
			case !ok:
				problems = append(problems, key+": missing")
				continue
			case c.State != "running":
				problems = append(problems, fmt.Sprintf("%s: %s%s", key, c.State, exitInfo(ctx, api, c.ID)))
			}
			if base.ID == "" || c.NetworkMode != "container:"+base.ID {
				problems = append(problems, fmt.Sprintf("%s: network mode %q, base %.12s", key, c.NetworkMode, base.ID))
			}
			if c.Labels[sl.LabelDecky] != d.Name || c.Labels[sl.LabelService] != s {
				problems = append(problems, fmt.Sprintf("%s: labels %v", key, c.Labels))
			}
		}
	}
	for key := range single {
		if !wanted[key] {
			problems = append(problems, key+": stray ("+single[key].State+")")
		}
	}
	slices.Sort(problems)
	return single, problems, nil
}

// exitInfo describes how a container that does not run ended, for drift
// reports: " (exit code 0 at <time>)".
func exitInfo(ctx context.Context, api client.APIClient, id string) string {
	in, err := api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil || in.Container.State == nil {
		return ""
	}
	st := in.Container.State
	return fmt.Sprintf(" (exit code %d at %s, started %s)", st.ExitCode, st.FinishedAt, st.StartedAt)
}

// assertConverged fails the test unless the engine runs exactly what the
// Store describes for the scope; it returns the containers by key.
func assertConverged(t *testing.T, api client.APIClient, store sl.Store, topology, project string) map[string]box {
	t.Helper()
	deckies, err := store.List(t.Context(), topology)
	if err != nil {
		t.Fatal(err)
	}
	got, problems, err := drift(t.Context(), api, project, deckies)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) > 0 {
		t.Fatalf("%s drifts from the store:\n  %s", project, strings.Join(problems, "\n  "))
	}
	return got
}

// reconcileFixture is a Manager with a MemoryStore, on the real engine, with
// a fleet and a topology deployed.
type reconcileFixture struct {
	api      client.APIClient
	image    string
	store    *sl.MemoryStore
	composer *dockercompose.Composer
	m        *sl.Manager
	flip     *atomic.Int64
	fleet    string
	lab      string
}

func newReconcileFixture(t *testing.T, fleet []sl.Decky, lab []sl.Decky) *reconcileFixture {
	t.Helper()
	api, image := engine(t)
	f := &reconcileFixture{api: api, image: image, flip: &atomic.Int64{}, fleet: randomName("slrc")}
	for _, ds := range [][]sl.Decky{fleet, lab} {
		for i := range ds {
			ds[i].Image = image
		}
	}
	f.store = sl.NewMemoryStore(map[string][]sl.Decky{"": fleet, "Lab": lab})
	var err error
	if f.composer, err = dockercompose.New(); err != nil {
		t.Fatal(err)
	}
	f.m, err = sl.New(f.store, f.composer, bannerRegistry(t, image, f.flip), sl.WithFleetProject(f.fleet), sl.WithProjectDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	f.lab = f.m.ProjectName("Lab")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		removeProjects(ctx, t, api, f.fleet, f.lab)
		f.composer.Close()
	})
	for _, scope := range []string{"", "Lab"} {
		if err := f.m.Deploy(t.Context(), scope); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// found is what a Report says of one container: what was found, what was done.
type found struct {
	Found  string
	Action sl.Action
}

func reportOf(t *testing.T, rep sl.Report) map[string]found {
	t.Helper()
	out := map[string]found{}
	for _, c := range rep.Containers {
		if _, dup := out[c.Service]; dup {
			t.Errorf("report lists %s twice", c.Service)
		}
		if c.Err != nil {
			t.Errorf("report: %s: %v", c.Service, c.Err)
		}
		out[c.Service] = found{c.Found, c.Action}
	}
	return out
}

func logReport(t *testing.T, rep sl.Report) {
	t.Helper()
	var b strings.Builder
	for _, c := range rep.Containers {
		fmt.Fprintf(&b, "\n  %-10s decky %-3s found %-20q → %s", c.Service, c.Decky, c.Found, c.Action)
	}
	t.Logf("report of %s (%d changed):%s", rep.Project, rep.Changed(), b.String())
}

// TestReconcileOnEngine causes every kind of drift out of band, through the
// Engine API and the Store, then checks that one Reconcile repairs exactly
// that (reporting it per container), leaves every correct container as it
// was, and that a second one finds nothing to do.
func TestReconcileOnEngine(t *testing.T) {
	f := newReconcileFixture(t, []sl.Decky{
		{Name: "a", Services: []string{"ssh", "http"}}, // a-ssh killed
		{Name: "b", Services: []string{"ssh"}},         // b-ssh removed
		{Name: "c", Services: []string{"http"}},        // base paused
		{Name: "d", Services: []string{"ssh", "http"}}, // base stopped
		{Name: "e", Services: []string{"flip"}},        // rendering diverged
		{Name: "f", Services: []string{"ssh"}},         // f-http: stray (left the store only)
		{Name: "g", Services: []string{"ssh"}},         // deleted from the store
		{Name: "h", Services: []string{"ssh"}},         // h-bogus: stray made through the Engine API
	}, []sl.Decky{{Name: "a", Services: []string{"ssh"}}})
	ctx := t.Context()
	api := f.api

	// The stray of f: added, then dropped from the Store only.
	if _, err := f.m.AddService(ctx, sl.FleetDecky("f"), "http"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Update(ctx, sl.FleetDecky("f"), func(d *sl.Decky) error {
		d.Services = slices.DeleteFunc(d.Services, func(s string) bool { return s == "http" })
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	before := containers(t, api, f.fleet)
	labBefore := containers(t, api, f.lab)

	// Drift out of band.
	if _, err := api.ContainerKill(ctx, before["a-ssh"].ID, client.ContainerKillOptions{Signal: "SIGKILL"}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.ContainerRemove(ctx, before["b-ssh"].ID, client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.ContainerPause(ctx, before["c"].ID, client.ContainerPauseOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.ContainerStop(ctx, before["d"].ID, client.ContainerStopOptions{}); err != nil {
		t.Fatal(err)
	}
	f.flip.Add(1)
	if err := f.store.Delete(ctx, sl.FleetDecky("g")); err != nil {
		t.Fatal(err)
	}
	bogus, err := api.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: f.image, Cmd: testimage.Command(testimage.ModeBase), Labels: map[string]string{
			projectLabel: f.fleet, "com.docker.compose.service": "h-bogus", "com.docker.compose.oneoff": "False", sl.LabelDecky: "h",
		}},
		HostConfig: &container.HostConfig{NetworkMode: container.NetworkMode("container:" + before["h"].ID)},
		Name:       f.fleet + ".h.bogus",
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.ContainerStart(ctx, bogus.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	waitState(t, api, before["a-ssh"].ID, "exited")

	t0 := time.Now()
	rep, err := f.m.Reconcile(ctx, "")
	t.Logf("reconcile of the drifted fleet took %v", time.Since(t0))
	logReport(t, rep)
	if err != nil {
		t.Fatal(err)
	}
	const anyState = "*" // found: not asserted
	want := map[string]found{
		"a": {"running", sl.ActionNone}, "a-ssh": {"exited", sl.ActionStarted}, "a-http": {"running", sl.ActionNone},
		"b": {"running", sl.ActionNone}, "b-ssh": {"", sl.ActionCreated},
		"c": {"paused", sl.ActionRecreated}, "c-http": {anyState, sl.ActionRecreated},
		"d": {"exited", sl.ActionStarted}, "d-ssh": {anyState, sl.ActionRecreated}, "d-http": {anyState, sl.ActionRecreated},
		"e": {"running", sl.ActionNone}, "e-flip": {"running (diverged)", sl.ActionRecreated},
		"f": {"running", sl.ActionNone}, "f-ssh": {"running", sl.ActionNone}, "f-http": {"running", sl.ActionRemoved},
		"g": {"running", sl.ActionRemoved}, "g-ssh": {"running", sl.ActionRemoved},
		"h": {"running", sl.ActionNone}, "h-ssh": {"running", sl.ActionNone}, "h-bogus": {"running", sl.ActionRemoved},
	}
	got := reportOf(t, rep)
	for key, w := range want {
		g, ok := got[key]
		switch {
		case !ok:
			t.Errorf("report lacks %s", key)
		case g.Action != w.Action || (w.Found != anyState && g.Found != w.Found):
			t.Errorf("%s: report %+v, want %+v", key, g, w)
		}
	}
	for key := range got {
		if _, ok := want[key]; !ok {
			t.Errorf("report lists unexpected %s: %+v", key, got[key])
		}
	}
	if rep.Project != f.fleet || rep.Changed() != 12 {
		t.Errorf("report of %s changed %d, want %s and 12", rep.Project, rep.Changed(), f.fleet)
	}

	after := assertConverged(t, api, f.store, "", f.fleet)
	// Correct containers were left alone.
	assertUntouched(t, pick(before, "a", "a-http", "b", "e", "f", "f-ssh", "h", "h-ssh"), after)
	// Stopped ones were started again, not recreated.
	for _, key := range []string{"a-ssh", "d"} {
		if after[key].ID != before[key].ID || after[key].StartedAt == before[key].StartedAt {
			t.Errorf("%s: before %.12s started %s, after %.12s started %s: want the same container started again",
				key, before[key].ID, before[key].StartedAt, after[key].ID, after[key].StartedAt)
		}
	}
	// The paused base, the services of repaired bases and the diverged
	// service were recreated.
	for _, key := range []string{"c", "c-http", "d-ssh", "d-http", "e-flip"} {
		if after[key].ID == before[key].ID {
			t.Errorf("%s was not recreated", key)
		}
	}
	if env := envOf(t, api, after["e-flip"].ID); !slices.Contains(env, "FLIP=1") {
		t.Errorf("e-flip runs with %v, want FLIP=1", env)
	}
	// The strays are gone, by ID.
	for _, id := range []string{before["f-http"].ID, before["g"].ID, before["g-ssh"].ID, bogus.ID} {
		if _, err := api.ContainerInspect(ctx, id, client.ContainerInspectOptions{}); !errdefs.IsNotFound(err) {
			t.Errorf("stray %.12s still exists (%v)", id, err)
		}
	}
	// The other scope was not touched.
	assertUntouched(t, labBefore, containers(t, api, f.lab))

	// A second Reconcile finds nothing to do and touches nothing.
	rep, err = f.m.Reconcile(ctx, "")
	if err != nil || rep.Changed() != 0 {
		logReport(t, rep)
		t.Fatalf("second reconcile: changed %d, %v", rep.Changed(), err)
	}
	if len(rep.Containers) != len(after) {
		t.Errorf("second report lists %d containers, the engine has %d", len(rep.Containers), len(after))
	}
	assertUntouched(t, after, containers(t, api, f.fleet))
	rep, err = f.m.Reconcile(ctx, "Lab")
	if err != nil || rep.Changed() != 0 {
		t.Fatalf("reconcile of the untouched topology: changed %d, %v", rep.Changed(), err)
	}
	assertUntouched(t, labBefore, containers(t, api, f.lab))
}

// TestReconcileEmptyEngine: after a Teardown, Reconcile is a full deploy.
func TestReconcileEmptyEngine(t *testing.T) {
	f := newReconcileFixture(t, []sl.Decky{
		{Name: "a", Services: []string{"ssh", "http"}},
		{Name: "b"},
	}, []sl.Decky{{Name: "a", Services: []string{"ssh"}}})
	ctx := t.Context()
	labBefore := containers(t, f.api, f.lab)
	if err := f.m.Teardown(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if got := containers(t, f.api, f.fleet); len(got) != 0 {
		t.Fatalf("teardown left %v", slices.Sorted(maps.Keys(got)))
	}
	rep, err := f.m.Reconcile(ctx, "")
	logReport(t, rep)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]found{
		"a": {"", sl.ActionCreated}, "a-ssh": {"", sl.ActionCreated}, "a-http": {"", sl.ActionCreated}, "b": {"", sl.ActionCreated},
	}
	if got := reportOf(t, rep); !maps.Equal(got, want) {
		t.Errorf("report %v, want %v", got, want)
	}
	after := assertConverged(t, f.api, f.store, "", f.fleet)
	assertUntouched(t, labBefore, containers(t, f.api, f.lab))
	rep, err = f.m.Reconcile(ctx, "")
	if err != nil || rep.Changed() != 0 {
		t.Fatalf("second reconcile: changed %d, %v", rep.Changed(), err)
	}
	assertUntouched(t, after, containers(t, f.api, f.fleet))
}

// TestReconcileConcurrentWithMutations runs Reconcile in a loop while
// AddService/RemoveService loops mutate the same deckies: every call
// succeeds, and at the end the engine runs exactly what the Store says and
// one more Reconcile finds nothing to do.
func TestReconcileConcurrentWithMutations(t *testing.T) {
	f := newReconcileFixture(t, []sl.Decky{
		{Name: "a", Services: []string{"http"}},
		{Name: "b"},
	}, []sl.Decky{{Name: "a"}}) // not empty: see the report (Deploy of an empty scope fails)
	ctx := t.Context()
	const rounds = 4
	var mutations sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	acts := map[string]int{} // what the concurrent reconciles did
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	for _, target := range []struct{ decky, service string }{{"a", "ssh"}, {"a", "ftp"}, {"b", "ssh"}} {
		mutations.Go(func() {
			ref := sl.FleetDecky(target.decky)
			for i := range rounds {
				if _, err := f.m.AddService(ctx, ref, target.service); err != nil {
					fail(fmt.Errorf("round %d: add %s/%s: %w", i, target.decky, target.service, err))
					return
				}
				if _, err := f.m.RemoveService(ctx, ref, target.service); err != nil {
					fail(fmt.Errorf("round %d: remove %s/%s: %w", i, target.decky, target.service, err))
					return
				}
			}
			// Leave some services on.
			if target.service == "ssh" {
				if _, err := f.m.AddService(ctx, ref, target.service); err != nil {
					fail(fmt.Errorf("add %s/%s: %w", target.decky, target.service, err))
				}
			}
		})
	}
	done := make(chan struct{})
	var reconciles atomic.Int64
	var changed atomic.Int64
	var reconciler sync.WaitGroup
	reconciler.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			rep, err := f.m.Reconcile(ctx, "")
			if err != nil {
				fail(fmt.Errorf("reconcile: %w", err))
				return
			}
			reconciles.Add(1)
			changed.Add(int64(rep.Changed()))
			for _, c := range rep.Containers {
				if c.Action != sl.ActionNone {
					mu.Lock()
					acts[fmt.Sprintf("%s %s→%s", c.Service, c.Found, c.Action)]++
					mu.Unlock()
				}
			}
		}
	})
	mutations.Wait()
	close(done)
	reconciler.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	t.Logf("%d reconciles ran alongside %d mutations, acting on %d containers: %v", reconciles.Load(), 3*2*rounds+2, changed.Load(), acts)
	if reconciles.Load() == 0 {
		t.Error("no reconcile ran alongside the mutations")
	}
	before := assertConverged(t, f.api, f.store, "", f.fleet)
	if got := slices.Sorted(maps.Keys(before)); !slices.Equal(got, []string{"a", "a-http", "a-ssh", "b", "b-ssh"}) {
		t.Errorf("engine runs %v", got)
	}
	rep, err := f.m.Reconcile(ctx, "")
	if err != nil || rep.Changed() != 0 {
		logReport(t, rep)
		t.Fatalf("final reconcile: changed %d, %v", rep.Changed(), err)
	}
	assertUntouched(t, before, containers(t, f.api, f.fleet))
}

// pick returns the boxes of keys.
func pick(m map[string]box, keys ...string) map[string]box {
	out := make(map[string]box, len(keys))
	for _, k := range keys {
		out[k] = m[k]
	}
	return out
}

// waitState waits until the container's state is state.
func waitState(t *testing.T, api client.APIClient, id, state string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		in, err := api.ContainerInspect(t.Context(), id, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if string(in.Container.State.Status) == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%.12s is %s, want %s", id, in.Container.State.Status, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// envOf returns the container's environment.
func envOf(t *testing.T, api client.APIClient, id string) []string {
	t.Helper()
	in, err := api.ContainerInspect(t.Context(), id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return in.Container.Config.Env
}
