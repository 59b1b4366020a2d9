package servicelive_test

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	sl "github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
)

// router is a fake host-routing Composer: one fake engine per host, as
// dockercompose.Hosts has one Composer per host.
type router struct {
	mu      sync.Mutex
	engines map[string]*servicelivetest.Composer
	down    map[string]bool // hosts whose calls fail
}

func (r *router) RoutesHosts() bool { return true }

func (r *router) engine(host string) (*servicelivetest.Composer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down[host] {
		return nil, &sl.HostError{Host: host, Err: errors.New("connection refused")}
	}
	if r.engines[host] == nil {
		r.engines[host] = &servicelivetest.Composer{}
	}
	return r.engines[host], nil
}

func (r *router) Up(ctx context.Context, p *types.Project, service string) error {
	c, err := r.engine(sl.ServiceHost(p.Services[service]))
	if err != nil {
		return err
	}
	return c.Up(ctx, p, service)
}

func (r *router) Down(ctx context.Context, p *types.Project, service string) error {
	c, err := r.engine(sl.ServiceHost(p.Services[service]))
	if err != nil {
		return err
	}
	return c.Down(ctx, p, service)
}

func (r *router) Containers(ctx context.Context, p *types.Project) ([]sl.Container, error) {
	r.mu.Lock()
	hosts := slices.Collect(maps.Keys(r.engines))
	r.mu.Unlock()
	var out []sl.Container
	var errs []error
	for _, h := range hosts {
		c, err := r.engine(h)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cs, err := c.Containers(ctx, p)
		if err != nil {
			errs = append(errs, &sl.HostError{Host: h, Err: err})
		}
		for i := range cs {
			cs[i].Host = h
		}
		out = append(out, cs...)
	}
	return out, errors.Join(errs...)
}

func (r *router) running(host string) []string {
	c, _ := r.engine(host)
	return c.Running()
}

func newRouted(t *testing.T) (*sl.Manager, *sl.MemoryStore, *router, string) {
	t.Helper()
	reg, err := sl.NewRegistry(sl.Service{Name: "ssh", Image: "img"})
	if err != nil {
		t.Fatal(err)
	}
	store := sl.NewMemoryStore(map[string][]sl.Decky{"": {
		{Name: "a1", Image: "img", Services: []string{"ssh"}},
		{Name: "b1", Image: "img", Services: []string{"ssh"}, Host: "site-b"},
		{Name: "c1", Image: "img", Host: "ssh://ops@10.0.0.3"},
	}})
	r := &router{engines: map[string]*servicelivetest.Composer{}, down: map[string]bool{}}
	dir := t.TempDir()
	m, err := sl.New(store, r, reg, sl.WithProjectDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	return m, store, r, filepath.Join(dir, m.ProjectName(""))
}

func TestServiceHostRendered(t *testing.T) {
	m, _, _, _ := newRouted(t)
	p, err := m.Project(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a1": "", "a1-ssh": "", "b1": "site-b", "b1-ssh": "site-b", "c1": "ssh://ops@10.0.0.3"}
	for key, host := range want {
		if got := sl.ServiceHost(p.Services[key]); got != host {
			t.Errorf("%s: host %q, want %q", key, got, host)
		}
	}
	if f := p.Services["b1"].CustomLabels["com.docker.compose.project.config_files"]; filepath.Base(f) != "compose.host.site-b.yaml" {
		t.Errorf("b1's config files label %q", f)
	}

	// Without a routing Composer the host is ignored.
	reg, _ := sl.NewRegistry(sl.Service{Name: "ssh", Image: "img"})
	store := sl.NewMemoryStore(map[string][]sl.Decky{"": {{Name: "b1", Image: "img", Host: "site-b"}}})
	plain, err := sl.New(store, &servicelivetest.Composer{}, reg)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := plain.Project(context.Background(), ""); sl.ServiceHost(p.Services["b1"]) != "" || len(p.Services["b1"].Extensions) != 0 {
		t.Errorf("a plain Composer gets a host: %v", p.Services["b1"].Extensions)
	}
}

func TestRoutedDeployFilesAndMove(t *testing.T) {
	m, store, r, dir := newRouted(t)
	ctx := context.Background()
	if err := m.Deploy(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if got := r.running(""); !slices.Equal(got, []string{"a1", "a1-ssh"}) {
		t.Errorf("default host runs %v", got)
	}
	if got := r.running("site-b"); !slices.Equal(got, []string{"b1", "b1-ssh"}) {
		t.Errorf("site-b runs %v", got)
	}
	files := func() map[string]string {
		out := map[string]string{}
		names, _ := filepath.Glob(filepath.Join(dir, "compose*.yaml"))
		for _, n := range names {
			b, _ := os.ReadFile(n)
			var inc []string
			for _, l := range strings.Split(string(b), "\n") {
				if p, ok := strings.CutPrefix(l, "  - path: deckies/"); ok {
					inc = append(inc, strings.TrimSuffix(p, ".yaml"))
				}
			}
			out[filepath.Base(n)] = strings.Join(inc, ",")
		}
		return out
	}
	got := files()
	if len(got) != 3 || got["compose.yaml"] != "a1" || got["compose.host.site-b.yaml"] != "b1" {
		t.Fatalf("compose files %v", got)
	}

	// Move b1 to the default host, c1 to site-b: Reconcile creates them there
	// and removes them from their former hosts.
	store.Update(ctx, sl.FleetDecky("b1"), func(d *sl.Decky) error { d.Host = ""; return nil })
	store.Update(ctx, sl.FleetDecky("c1"), func(d *sl.Decky) error { d.Host = "site-b"; return nil })
	rep, err := m.Reconcile(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var acts []string
	for _, c := range rep.Containers {
		if c.Action != sl.ActionNone {
			acts = append(acts, string(c.Action)+" "+c.Service+"@"+c.Host)
		}
	}
	slices.Sort(acts)
	if w := []string{"created b1-ssh@", "created b1@", "created c1@site-b", "removed b1-ssh@site-b", "removed b1@site-b", "removed c1@ssh://ops@10.0.0.3"}; !slices.Equal(acts, w) {
		t.Errorf("move: %v, want %v", acts, w)
	}
	if got := r.running(""); !slices.Equal(got, []string{"a1", "a1-ssh", "b1", "b1-ssh"}) {
		t.Errorf("default host runs %v", got)
	}
	if got := r.running("site-b"); !slices.Equal(got, []string{"c1"}) {
		t.Errorf("site-b runs %v", got)
	}
	if got := files(); len(got) != 2 || got["compose.yaml"] != "a1,b1" || got["compose.host.site-b.yaml"] != "c1" {
		t.Errorf("compose files after the move %v", got)
	}

	// A host that cannot be listed fails only its deckies.
	r.mu.Lock()
	r.down["site-b"] = true
	r.mu.Unlock()
	r.engines[""].SetState(m.ProjectName(""), "a1-ssh", "exited")
	rep, err = m.Reconcile(ctx, "")
	var he *sl.HostError
	if !errors.As(err, &he) || he.Host != "site-b" {
		t.Fatalf("reconcile with site-b down: %v", err)
	}
	for _, c := range rep.Containers {
		switch {
		case c.Service == "a1-ssh" && (c.Action != sl.ActionStarted || c.Err != nil):
			t.Errorf("a1-ssh: %s %v", c.Action, c.Err)
		case c.Decky == "c1" && (c.Err == nil || c.Host != "site-b"):
			t.Errorf("c1 on a down host: %+v", c)
		case c.Decky != "c1" && c.Err != nil:
			t.Errorf("%s failed: %v", c.Service, c.Err)
		}
	}
}

func TestHostError(t *testing.T) {
	cause := errors.New("connection refused")
	e := &sl.HostError{Host: "site-b", Err: cause}
	if e.Error() != `host "site-b": connection refused` || !errors.Is(e, cause) {
		t.Errorf("%v", e)
	}
	if e := (&sl.HostError{Err: cause}); e.Error() != "host (default): connection refused" {
		t.Errorf("%v", e)
	}
}

// A host that holds no decky of the scope but is listed (opened before)
// and fails: Reconcile reconciles the others and reports it, by name, in
// Report.HostErrors and its error.
func TestReconcileReportsHostWithoutDecky(t *testing.T) {
	m, store, r, _ := newRouted(t)
	ctx := context.Background()
	if err := m.Deploy(ctx, ""); err != nil {
		t.Fatal(err)
	}
	// c1 leaves ssh://ops@10.0.0.3, which then goes down.
	store.Update(ctx, sl.FleetDecky("c1"), func(d *sl.Decky) error { d.Host = "site-b"; return nil })
	r.mu.Lock()
	r.down["ssh://ops@10.0.0.3"] = true
	r.mu.Unlock()
	rep, err := m.Reconcile(ctx, "")
	var he *sl.HostError
	if !errors.As(err, &he) || he.Host != "ssh://ops@10.0.0.3" {
		t.Fatalf("reconcile with a decky-less host down: %v", err)
	}
	if len(rep.HostErrors) != 1 || !errors.As(rep.HostErrors[0], &he) || he.Host != "ssh://ops@10.0.0.3" || !errors.Is(rep.Err(), rep.HostErrors[0]) {
		t.Errorf("report host errors %v", rep.HostErrors)
	}
	for _, c := range rep.Containers {
		if c.Err != nil {
			t.Errorf("%s failed: %v", c.Service, c.Err)
		}
	}
	if got := r.running("site-b"); !slices.Equal(got, []string{"b1", "b1-ssh", "c1"}) {
		t.Errorf("site-b runs %v", got)
	}
}

// The host files are compose.host.<host>.yaml: a host named "override"
// does not write compose.override.yaml (which Docker Compose merges into
// compose.yaml), and the sweep of stale host files leaves a user's
// compose.override.yaml and other compose.*.yaml files alone.
func TestHostFilesLeaveOtherFiles(t *testing.T) {
	m, store, _, dir := newRouted(t)
	ctx := context.Background()
	store.Update(ctx, sl.FleetDecky("c1"), func(d *sl.Decky) error { d.Host = "override"; return nil })
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	mine := map[string]string{"compose.override.yaml": "services: {}\n", "compose.site-b.yaml": "# mine\n"}
	for f, body := range mine {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Deploy(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "compose.host.override.yaml")); err != nil {
		t.Errorf("host override's file: %v", err)
	}
	// c1 and b1 leave their hosts: their files go, the user's stay.
	store.Update(ctx, sl.FleetDecky("c1"), func(d *sl.Decky) error { d.Host = ""; return nil })
	store.Update(ctx, sl.FleetDecky("b1"), func(d *sl.Decky) error { d.Host = ""; return nil })
	if _, err := m.Reconcile(ctx, ""); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "compose*.yaml"))
	var got []string
	for _, n := range names {
		got = append(got, filepath.Base(n))
	}
	if want := []string{"compose.override.yaml", "compose.site-b.yaml", "compose.yaml"}; !slices.Equal(got, want) {
		t.Errorf("files %v, want %v", got, want)
	}
	for f, body := range mine {
		if b, _ := os.ReadFile(filepath.Join(dir, f)); string(b) != body {
			t.Errorf("%s changed: %q", f, b)
		}
	}
}

// A stray found on two hosts is removed from each, with a report entry per
// host (ContainerReport.Host names one host).
func TestStrayOnTwoHosts(t *testing.T) {
	m, _, r, _ := newRouted(t)
	ctx := context.Background()
	if err := m.Deploy(ctx, ""); err != nil {
		t.Fatal(err)
	}
	p, err := m.Project(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	stray := p.Services["a1-ssh"]
	stray.Name, stray.ContainerName = "a1-http", stray.ContainerName+"-http"
	stray.Labels = maps.Clone(stray.Labels)
	stray.Labels[sl.LabelService] = "http"
	stray.CustomLabels = maps.Clone(stray.CustomLabels)
	stray.CustomLabels["com.docker.compose.service"] = "a1-http"
	p.Services["a1-http"] = stray
	for _, h := range []string{"", "site-b"} {
		c, _ := r.engine(h)
		c.Lenient = true // site-b does not run a1's base
		if err := c.Up(ctx, p, "a1-http"); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := m.Reconcile(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range rep.Containers {
		if c.Service == "a1-http" {
			got = append(got, c.Host+":"+string(c.Action))
		}
	}
	slices.Sort(got)
	if want := []string{":removed", "site-b:removed"}; !slices.Equal(got, want) {
		t.Errorf("stray reports %v, want %v", got, want)
	}
	for _, h := range []string{"", "site-b"} {
		if slices.Contains(r.running(h), "a1-http") {
			t.Errorf("the stray still runs on %q", h)
		}
	}
}
