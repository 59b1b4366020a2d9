package hosts_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/client"

	sl "github.com/decnet/servicelive"
	"github.com/decnet/servicelive/dockercompose"
	"github.com/decnet/servicelive/internal/composecli"
	"github.com/decnet/servicelive/internal/dockerdtest"
	"github.com/decnet/servicelive/internal/enginetest"
	"github.com/decnet/servicelive/internal/testimage"
)

func TestMain(m *testing.M) { os.Exit(dockerdtest.Main(m)) }

const projectLabel = "com.docker.compose.project"

// engines are the two engines of a test: A is the local engine, B the
// second dockerd; each API client counts its requests.
type engines struct {
	a, b       client.APIClient // uncounted, for assertions
	countA     *dockerdtest.Counter
	countB     *dockerdtest.Counter
	clientA    *client.Client // counted, used by the Hosts
	clientB    *client.Client
	daemon     *dockerdtest.Daemon
	image      string
	mainSocket string
}

func newEngines(t *testing.T) *engines {
	t.Helper()
	d, image := dockerdtest.Require(t)
	a, _ := enginetest.Require(t)
	b, err := d.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	e := &engines{a: a, b: b, countA: &dockerdtest.Counter{}, countB: &dockerdtest.Counter{}, daemon: d, image: image, mainSocket: a.DaemonHost()}
	if e.clientA, err = dockerdtest.CountingClient(e.mainSocket, e.countA); err != nil {
		t.Fatal(err)
	}
	if e.clientB, err = dockerdtest.CountingClient(d.Host, e.countB); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.clientA.Close(); e.clientB.Close() })
	return e
}

// registry is one banner service, "ssh".
func registry(t testing.TB, image string) *sl.Registry {
	t.Helper()
	reg, err := sl.NewRegistry(sl.Service{Name: "ssh", Image: image, Ports: []int{2222}, Compose: func(d sl.Decky, _ sl.Config, s *types.ServiceConfig) {
		b, p := "SSH-2.0-hosts "+d.Name+"\r\n", "2222"
		s.Command = testimage.Command(testimage.ModeBanner)
		s.Environment = types.MappingWithEquals{"BANNER": &b, "PORT": &p}
	}})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func randomName(prefix string) string {
	var b [4]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// fleet is a Manager over Hosts with a fleet spread over two hosts.
type fleet struct {
	m       *sl.Manager
	store   *sl.MemoryStore
	hosts   *dockercompose.Hosts
	project string
	dir     string
}

// newFleet deploys deckies a1, a2 (host "") and b1, b2 (host hostB), each
// with service ssh, through a Hosts built by resolve and opts.
func newFleet(t *testing.T, e *engines, hostB string, resolve func(string) ([]dockercompose.Option, error), opts ...dockercompose.Option) *fleet {
	t.Helper()
	f := &fleet{project: randomName("slhost"), dir: t.TempDir()}
	var deckies []sl.Decky
	for _, n := range []string{"a1", "a2", "b1", "b2"} {
		d := sl.Decky{Name: n, Image: e.image, Services: []string{"ssh"}}
		if n[0] == 'b' {
			d.Host = hostB
		}
		deckies = append(deckies, d)
	}
	f.store = sl.NewMemoryStore(map[string][]sl.Decky{"": deckies})
	var err error
	if f.hosts, err = dockercompose.NewHosts(resolve, opts...); err != nil {
		t.Fatal(err)
	}
	if f.m, err = sl.New(f.store, f.hosts, registry(t, e.image), sl.WithFleetProject(f.project), sl.WithProjectDir(f.dir)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for _, api := range []client.APIClient{e.a, e.b} {
			removeProject(ctx, t, api, f.project)
		}
		f.hosts.Close()
	})
	if err := f.m.Deploy(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	return f
}

// removeProject removes every container and network of project on api.
func removeProject(ctx context.Context, t *testing.T, api client.APIClient, project string) {
	filter := make(client.Filters).Add("label", projectLabel+"="+project)
	cs, err := api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filter})
	if err != nil {
		if t != nil {
			t.Logf("cleanup: %v", err)
		}
		return
	}
	for _, c := range cs.Items {
		_, _ = api.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
	}
	ns, err := api.NetworkList(ctx, client.NetworkListOptions{Filters: filter})
	if err != nil {
		return
	}
	for _, n := range ns.Items {
		_, _ = api.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{})
	}
}

// box is one container as the Engine API reports it.
type box struct{ ID, State, StartedAt string }

// containers returns the containers of project on api by compose service key.
func containers(t *testing.T, api client.APIClient, project string) map[string]box {
	t.Helper()
	ctx := t.Context()
	res, err := api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", projectLabel+"="+project)})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]box{}
	for _, c := range res.Items {
		in, err := api.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		key := c.Labels["com.docker.compose.service"]
		if _, dup := out[key]; dup {
			t.Fatalf("two containers of %s in %s", key, project)
		}
		out[key] = box{ID: c.ID, State: string(in.Container.State.Status), StartedAt: in.Container.State.StartedAt}
	}
	return out
}

func keys(m map[string]box) []string { return slices.Sorted(maps.Keys(m)) }

// assertKeys checks that project runs exactly want on api, all running.
func assertKeys(t *testing.T, what string, api client.APIClient, project string, want ...string) map[string]box {
	t.Helper()
	got := containers(t, api, project)
	if !slices.Equal(keys(got), want) {
		t.Fatalf("%s runs %v, want %v", what, keys(got), want)
	}
	for k, b := range got {
		if b.State != "running" {
			t.Errorf("%s: %s is %s", what, k, b.State)
		}
	}
	return got
}

// assertUntouched checks that every container of before is still there
// with the same ID and start time.
func assertUntouched(t *testing.T, what string, before, after map[string]box) {
	t.Helper()
	for k, b := range before {
		if a, ok := after[k]; !ok || a != b {
			t.Errorf("%s: %s was touched: before %+v, after %+v", what, k, b, a)
		}
	}
}

// TestMutationOnOneHostOnly: AddService and RemoveService on a decky of host
// A send no request to host B, and the reverse.
func TestMutationOnOneHostOnly(t *testing.T) {
	e := newEngines(t)
	resolve := func(host string) ([]dockercompose.Option, error) {
		if host != "b" {
			return nil, errors.New("unknown host " + host)
		}
		return []dockercompose.Option{dockercompose.WithAPIClient(e.clientB)}, nil
	}
	f := newFleet(t, e, "b", resolve, dockercompose.WithAPIClient(e.clientA))
	ctx := t.Context()
	beforeA := assertKeys(t, "A", e.a, f.project, "a1", "a1-ssh", "a2", "a2-ssh")
	beforeB := assertKeys(t, "B", e.b, f.project, "b1", "b1-ssh", "b2", "b2-ssh")

	step := func(name string, fn func() error, idle *dockerdtest.Counter, busy *dockerdtest.Counter) {
		t.Helper()
		i0, b0 := idle.Count(), busy.Count()
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n := idle.Count() - i0; n != 0 {
			t.Errorf("%s sent %d requests to the other host: %v", name, n, idle.Requests()[i0:])
		}
		if busy.Count() == b0 {
			t.Errorf("%s sent no request to its host", name)
		}
	}
	step("remove ssh from b1", func() error { _, err := f.m.RemoveService(ctx, sl.FleetDecky("b1"), "ssh"); return err }, e.countA, e.countB)
	step("add ssh to b1", func() error { _, err := f.m.AddService(ctx, sl.FleetDecky("b1"), "ssh"); return err }, e.countA, e.countB)
	step("remove ssh from a1", func() error { _, err := f.m.RemoveService(ctx, sl.FleetDecky("a1"), "ssh"); return err }, e.countB, e.countA)
	step("add ssh to a1", func() error { _, err := f.m.AddService(ctx, sl.FleetDecky("a1"), "ssh"); return err }, e.countB, e.countA)

	afterA := assertKeys(t, "A", e.a, f.project, "a1", "a1-ssh", "a2", "a2-ssh")
	afterB := assertKeys(t, "B", e.b, f.project, "b1", "b1-ssh", "b2", "b2-ssh")
	delete(beforeA, "a1-ssh")
	delete(beforeB, "b1-ssh")
	assertUntouched(t, "A", beforeA, afterA)
	assertUntouched(t, "B", beforeB, afterB)
}

// TestSpanDeployReconcileMoveTeardown: a scope over two hosts named by URL
// (the default resolve: WithHost) deploys, reconciles to nothing, moves a
// decky from A to B through Reconcile, writes one compose file per host that
// reproduces that host's part, and tears down both.
func TestSpanDeployReconcileMoveTeardown(t *testing.T) {
	e := newEngines(t)
	hostB := e.daemon.Host
	f := newFleet(t, e, hostB, nil)
	ctx := t.Context()
	assertKeys(t, "A", e.a, f.project, "a1", "a1-ssh", "a2", "a2-ssh")
	assertKeys(t, "B", e.b, f.project, "b1", "b1-ssh", "b2", "b2-ssh")

	rep, err := f.m.Reconcile(ctx, "")
	if err != nil || rep.Changed() != 0 {
		t.Fatalf("reconcile of a deployed scope: changed %d, %v: %+v", rep.Changed(), err, rep.Containers)
	}
	for _, c := range rep.Containers {
		if want := map[bool]string{true: hostB, false: ""}[c.Decky[0] == 'b']; c.Host != want {
			t.Errorf("report: %s on host %q, want %q", c.Service, c.Host, want)
		}
	}

	// Move a2 to B.
	beforeA, beforeB := containers(t, e.a, f.project), containers(t, e.b, f.project)
	if _, err := f.store.Update(ctx, sl.FleetDecky("a2"), func(d *sl.Decky) error { d.Host = hostB; return nil }); err != nil {
		t.Fatal(err)
	}
	rep, err = f.m.Reconcile(ctx, "")
	if err != nil {
		t.Fatalf("reconcile of the move: %v", err)
	}
	var got []string
	for _, c := range rep.Containers {
		if c.Action != sl.ActionNone {
			h := "A"
			if c.Host == hostB {
				h = "B"
			}
			got = append(got, string(c.Action)+" "+c.Service+" on "+h)
		}
	}
	slices.Sort(got)
	want := []string{"created a2 on B", "created a2-ssh on B", "removed a2 on A", "removed a2-ssh on A"}
	if !slices.Equal(got, want) {
		t.Fatalf("move: report %v, want %v", got, want)
	}
	afterA := assertKeys(t, "A", e.a, f.project, "a1", "a1-ssh")
	afterB := assertKeys(t, "B", e.b, f.project, "a2", "a2-ssh", "b1", "b1-ssh", "b2", "b2-ssh")
	delete(beforeA, "a2")
	delete(beforeA, "a2-ssh")
	assertUntouched(t, "A", beforeA, afterA)
	assertUntouched(t, "B", beforeB, afterB)
	if rep, err := f.m.Reconcile(ctx, ""); err != nil || rep.Changed() != 0 {
		t.Fatalf("reconcile after the move: changed %d, %v", rep.Changed(), err)
	}

	// One compose file per host; each reproduces its host's part and
	// changes nothing there.
	checkHostFile(t, e, f, filepath.Join(f.dir, f.project, "compose.yaml"), "", e.a, afterA)
	entries, _ := filepath.Glob(filepath.Join(f.dir, f.project, "compose.host.*.yaml"))
	if len(entries) != 1 {
		t.Fatalf("host files %v, want one for B", entries)
	}
	checkHostFile(t, e, f, entries[0], hostB, e.b, afterB)

	// Teardown clears both hosts, networks included.
	if err := f.m.Teardown(ctx, ""); err != nil {
		t.Fatal(err)
	}
	for name, api := range map[string]client.APIClient{"A": e.a, "B": e.b} {
		if got := containers(t, api, f.project); len(got) != 0 {
			t.Errorf("teardown left on %s: %v", name, keys(got))
		}
		ns, err := api.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("label", projectLabel+"="+f.project)})
		if err != nil || len(ns.Items) != 0 {
			t.Errorf("teardown left networks on %s: %v %v", name, ns.Items, err)
		}
	}
}

// checkHostFile loads a host's compose file as `docker compose config`
// does (compose-go), checks that it names the project and holds exactly the
// services running on that host, and runs `up -d` of each service (bases
// first) through a Composer of that host alone: nothing may change.
func checkHostFile(t *testing.T, e *engines, f *fleet, path, host string, api client.APIClient, running map[string]box) {
	t.Helper()
	ctx := t.Context()
	opts, err := cli.NewProjectOptions([]string{path})
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(ctx)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if p.Name != f.project {
		t.Fatalf("%s names project %q", path, p.Name)
	}
	if got := slices.Sorted(maps.Keys(p.Services)); !slices.Equal(got, keys(running)) {
		t.Fatalf("%s holds %v, host %q runs %v", path, got, host, keys(running))
	}
	var hostOpt dockercompose.Option
	if host == "" {
		hostOpt = dockercompose.WithHost(e.mainSocket)
	} else {
		hostOpt = dockercompose.WithHost(host)
	}
	c, err := dockercompose.New(hostOpt)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	order := slices.Sorted(maps.Keys(p.Services))
	slices.SortStableFunc(order, func(a, b string) int {
		return strings.Count(a, "-") - strings.Count(b, "-") // bases before their services
	})
	for _, key := range order {
		if err := c.Up(ctx, p, key); err != nil {
			t.Fatalf("up %s from %s: %v", key, path, err)
		}
	}
	assertUntouched(t, path, running, containers(t, api, f.project))

	// The same by hand: `docker -H <host> compose -p <project> -f <file>
	// config`, then `up -d`, with the compose v2 CLI.
	t.Run("compose CLI "+filepath.Base(path), func(t *testing.T) {
		cli := composecli.Require(t)
		dockerHost := host
		if host == "" {
			dockerHost = e.mainSocket
		}
		for _, args := range [][]string{{"config", "--quiet"}, {"up", "-d"}} {
			if out, err := cli.Run(ctx, dockerHost, f.project, path, args...); err != nil {
				t.Fatalf("compose %v on %s: %v\n%s", args, path, err, out)
			}
		}
		after := containers(t, api, f.project)
		assertUntouched(t, path+" (compose CLI up -d)", running, after)
		if len(after) != len(running) {
			t.Errorf("compose CLI up -d on %s: containers %v, want %v", path, keys(after), keys(running))
		}
	})
}

// TestHostStoppedMidDeploy: host B's engine stops during a Deploy of a scope
// over both hosts; only B's deckies fail, the error names B, A's deckies
// run; once B is back, Reconcile completes it.
func TestHostStoppedMidDeploy(t *testing.T) {
	e := newEngines(t)
	resolve := func(host string) ([]dockercompose.Option, error) {
		return []dockercompose.Option{dockercompose.WithAPIClient(e.clientB)}, nil
	}
	project := randomName("slhost")
	var deckies []sl.Decky
	var wantA []string
	for i := range 6 {
		d := sl.Decky{Name: "a" + string(rune('0'+i)), Image: e.image, Services: []string{"ssh"}}
		wantA = append(wantA, d.ComposeKeys()...)
		deckies = append(deckies, d)
		deckies = append(deckies, sl.Decky{Name: "b" + string(rune('0'+i)), Image: e.image, Services: []string{"ssh"}, Host: "b"})
	}
	slices.Sort(wantA)
	store := sl.NewMemoryStore(map[string][]sl.Decky{"": deckies})
	hosts, err := dockercompose.NewHosts(resolve, dockercompose.WithAPIClient(e.clientA))
	if err != nil {
		t.Fatal(err)
	}
	m, err := sl.New(store, hosts, registry(t, e.image), sl.WithFleetProject(project))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := e.daemon.Restart(ctx); err != nil {
			t.Errorf("restart B: %v", err)
		}
		for _, api := range []client.APIClient{e.a, e.b} {
			removeProject(ctx, t, api, project)
		}
		hosts.Close()
	})

	// B stops as its first container is being created.
	stopped := make(chan struct{})
	e.countB.Before(func(method, path string) {
		if method == "POST" && strings.HasSuffix(path, "/containers/create") {
			select {
			case <-stopped:
			default:
				close(stopped)
				_ = e.daemon.Stop()
			}
		}
	})
	defer e.countB.Before(nil)
	ctx := t.Context()
	err = m.Deploy(ctx, "")
	if err == nil {
		t.Fatal("deploy with B stopped succeeded")
	}
	var he *sl.HostError
	if !errors.As(err, &he) || he.Host != "b" {
		t.Fatalf("deploy error names no host b: %v", err)
	}
	if !strings.Contains(err.Error(), `host "b"`) {
		t.Errorf("deploy error message does not name host b: %v", err)
	}
	for _, leaf := range leaves(err) {
		if !errors.As(leaf, &he) || he.Host != "b" || strings.Contains(leaf.Error(), "fleet/a") {
			t.Errorf("a failure that is not B's: %v", leaf)
		}
	}
	assertKeys(t, "A", e.a, project, wantA...)

	// B down: Reconcile converges A and reports B's deckies failed, by host.
	rep, err := m.Reconcile(ctx, "")
	if err == nil {
		t.Fatal("reconcile with B stopped succeeded")
	}
	for _, c := range rep.Containers {
		switch {
		case c.Decky[0] == 'a' && (c.Err != nil || c.Action != sl.ActionNone):
			t.Errorf("A's %s: %s, %v", c.Service, c.Action, c.Err)
		case c.Decky[0] == 'b' && (c.Err == nil || c.Host != "b" || !errors.As(c.Err, &he) || he.Host != "b"):
			t.Errorf("B's %s: host %q, %v", c.Service, c.Host, c.Err)
		}
	}

	// B back: Reconcile completes B and leaves A alone.
	if err := e.daemon.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	beforeA := containers(t, e.a, project)
	if rep, err := m.Reconcile(ctx, ""); err != nil {
		t.Fatalf("reconcile with B back: %v (%+v)", err, rep.Containers)
	}
	var wantB []string
	for _, k := range wantA {
		wantB = append(wantB, "b"+k[1:])
	}
	assertKeys(t, "B", e.b, project, wantB...)
	assertUntouched(t, "A", beforeA, containers(t, e.a, project))
}

// leaves returns the errors a joined error is made of, recursively.
func leaves(err error) []error {
	if _, ok := err.(*sl.Error); ok {
		return []error{err}
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	return []error{err}
}
