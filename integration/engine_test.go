package integration_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
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
	"github.com/decnet/servicelive/internal/enginetest"
	"github.com/decnet/servicelive/internal/testimage"
)

const projectLabel = "com.docker.compose.project"

// engine returns an API client of the local engine and the test image; see
// enginetest.Require.
func engine(t *testing.T) (client.APIClient, string) {
	t.Helper()
	return enginetest.Require(t)
}

// fixture is a Manager on the real engine with a fleet and a topology.
type fixture struct {
	api      client.APIClient
	m        *sl.Manager
	store    *sl.MemoryStore
	composer *dockercompose.Composer
	dir      string
	fleet    string // the fleet's project name
	lab      string // the topology "Lab"'s project name
}

func newFixture(t *testing.T, opts ...dockercompose.Option) *fixture {
	t.Helper()
	api, image := engine(t)
	var b [4]byte
	rand.Read(b[:])
	f := &fixture{api: api, dir: t.TempDir(), fleet: "slit" + hex.EncodeToString(b[:])}
	banner := func(text, port string) func(sl.Decky, sl.Config, *types.ServiceConfig) {
		return func(d sl.Decky, cfg sl.Config, s *types.ServiceConfig) {
			b, p := text+" "+d.Name+"\r\n", port
			if port, ok := cfg["port"].(int); ok {
				p = fmt.Sprint(port)
			}
			s.Command = testimage.Command(testimage.ModeBanner)
			s.Environment = types.MappingWithEquals{"BANNER": &b, "PORT": &p}
		}
	}
	reg, err := sl.NewRegistry(
		sl.Service{Name: "ssh", Image: image, Ports: []int{2222}, Schema: []sl.Field{{Key: "port", Type: sl.FieldInt}}, Compose: banner("SSH-2.0-it", "2222")},
		sl.Service{Name: "http", Image: image, Ports: []int{8080}, Compose: banner("HTTP-it", "8080")},
		// broken cannot start: its entrypoint is not in the image.
		sl.Service{Name: "broken", Image: image, Compose: func(d sl.Decky, c sl.Config, s *types.ServiceConfig) {
			s.Entrypoint = types.ShellCommand{"/nonexistent"}
		}},
		// crashy starts, writes a line to stderr and exits 1 at once.
		sl.Service{Name: "crashy", Image: image, Compose: func(d sl.Decky, c sl.Config, s *types.ServiceConfig) {
			s.Command = testimage.Command(testimage.ModeFail)
		}},
	)
	if err != nil {
		t.Fatal(err)
	}
	f.store = sl.NewMemoryStore(map[string][]sl.Decky{
		"":    {{Name: "web1", Image: image, Services: []string{"http"}}, {Name: "web2", Image: image}},
		"Lab": {{Name: "web1", Image: image}},
	})
	f.composer, err = dockercompose.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	f.m, err = sl.New(f.store, f.composer, reg, sl.WithFleetProject(f.fleet), sl.WithProjectDir(f.dir))
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
	ctx := t.Context()
	if err := f.m.Deploy(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Deploy(ctx, "Lab"); err != nil {
		t.Fatal(err)
	}
	return f
}

// removeProjects removes, through the Engine API, every container and
// network labelled with one of projects.
func removeProjects(ctx context.Context, t *testing.T, api client.APIClient, projects ...string) {
	for _, p := range projects {
		filter := make(client.Filters).Add("label", projectLabel+"="+p)
		cs, err := api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filter})
		if err != nil {
			t.Errorf("cleanup: %v", err)
			continue
		}
		for _, c := range cs.Items {
			if _, err := api.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		ns, err := api.NetworkList(ctx, client.NetworkListOptions{Filters: filter})
		if err != nil {
			t.Errorf("cleanup: %v", err)
			continue
		}
		for _, n := range ns.Items {
			if _, err := api.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	}
}

// box is what the Engine API says of one container.
type box struct {
	ID, State, StartedAt, NetworkMode string
	Labels                            map[string]string
}

// containers returns the containers of a project by compose service key,
// as the Engine API reports them.
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
		out[key] = box{ID: c.ID, State: string(in.Container.State.Status), StartedAt: in.Container.State.StartedAt,
			NetworkMode: string(in.Container.HostConfig.NetworkMode), Labels: c.Labels}
	}
	return out
}

// assertUntouched checks that every container of before is still there with
// the same ID and start time.
func assertUntouched(t *testing.T, before, after map[string]box, except ...string) {
	t.Helper()
	for key, b := range before {
		if slices.Contains(except, key) {
			continue
		}
		a, ok := after[key]
		if !ok || a.ID != b.ID || a.StartedAt != b.StartedAt || a.State != "running" {
			t.Errorf("%s was touched: before %s started %s, after %+v", key, b.ID[:12], b.StartedAt, a)
		}
	}
}

// ipOf returns the IP address of a container on its first network.
func ipOf(t *testing.T, api client.APIClient, id string) string {
	t.Helper()
	in, err := api.ContainerInspect(t.Context(), id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range in.Container.NetworkSettings.Networks {
		if n != nil && n.IPAddress.IsValid() {
			return n.IPAddress.String()
		}
	}
	t.Fatalf("container %s has no IP", id)
	return ""
}

// readBanner connects to addr and returns the first line it writes.
func readBanner(t *testing.T, addr string) string {
	t.Helper()
	var conn net.Conn
	var err error
	for range 100 { // the service may still be binding its port
		conn, err = net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("read %s: %v", addr, err)
	}
	return strings.TrimSpace(line)
}

func TestAddRemoveOnEngine(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	fleetBefore, labBefore := containers(t, f.api, f.fleet), containers(t, f.api, f.lab)
	if got := slices.Sorted(maps.Keys(fleetBefore)); !slices.Equal(got, []string{"web1", "web1-http", "web2"}) {
		t.Fatalf("deployed %v", got)
	}

	services, err := f.m.AddService(ctx, sl.FleetDecky("web1"), "ssh", sl.WithConfig(sl.Config{"port": 2200}))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(services, []string{"http", "ssh"}) {
		t.Fatalf("services = %v", services)
	}
	after := containers(t, f.api, f.fleet)
	ssh, ok := after["web1-ssh"]
	switch {
	case !ok:
		t.Fatalf("no container for web1-ssh: %v", slices.Sorted(maps.Keys(after)))
	case ssh.State != "running":
		t.Fatalf("web1-ssh is %s", ssh.State)
	case ssh.NetworkMode != "container:"+after["web1"].ID:
		t.Fatalf("web1-ssh network mode %q, want the base's namespace", ssh.NetworkMode)
	case ssh.Labels[sl.LabelDecky] != "web1" || ssh.Labels[sl.LabelService] != "ssh" || ssh.Labels[sl.LabelTopology] != "" || ssh.Labels[projectLabel] != f.fleet:
		t.Fatalf("labels %v", ssh.Labels)
	}
	// The service answers on the base's IP: they share one namespace.
	if got := readBanner(t, net.JoinHostPort(ipOf(t, f.api, after["web1"].ID), "2200")); got != "SSH-2.0-it web1" {
		t.Fatalf("banner %q", got)
	}
	assertUntouched(t, fleetBefore, after)
	assertUntouched(t, labBefore, containers(t, f.api, f.lab))

	if _, err := f.m.RemoveService(ctx, sl.FleetDecky("web1"), "ssh"); err != nil {
		t.Fatal(err)
	}
	after = containers(t, f.api, f.fleet)
	if _, ok := after["web1-ssh"]; ok {
		t.Fatal("web1-ssh still exists after RemoveService")
	}
	assertUntouched(t, fleetBefore, after)
	file, err := os.ReadFile(filepath.Join(f.dir, f.fleet, "deckies", "web1.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(file), "web1-ssh") {
		t.Fatalf("compose file still lists web1-ssh:\n%s", file)
	}

	// A topology mutation leaves the fleet alone.
	if _, err := f.m.AddService(ctx, sl.TopologyDecky("Lab", "web1"), "ssh"); err != nil {
		t.Fatal(err)
	}
	if _, ok := containers(t, f.api, f.lab)["web1-ssh"]; !ok {
		t.Fatal("no web1-ssh in the topology")
	}
	assertUntouched(t, fleetBefore, containers(t, f.api, f.fleet))
}

func TestFailedAddRollsBackOnEngine(t *testing.T) {
	for _, tt := range []struct {
		service string
		opts    []dockercompose.Option
		inError string
	}{
		{"broken", nil, "nonexistent"},
		// A container that runs for a moment then exits is caught by a grace.
		{"crashy", []dockercompose.Option{dockercompose.WithStartGrace(time.Second)}, "fail mode"},
	} {
		t.Run(tt.service, func(t *testing.T) {
			f := newFixture(t, tt.opts...)
			ctx := t.Context()
			ref := sl.FleetDecky("web2")
			file := filepath.Join(f.dir, f.fleet, "deckies", "web2.yaml")
			fileBefore, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			before := containers(t, f.api, f.fleet)
			_, err = f.m.AddService(ctx, ref, tt.service)
			if err == nil {
				t.Fatal("adding a service whose container cannot run succeeded")
			}
			if errors.Is(err, sl.ErrConflict) || errors.Is(err, sl.ErrInvalidService) || errors.Is(err, sl.ErrNotFound) {
				t.Fatalf("engine failure matches a sentinel: %v", err)
			}
			if !strings.Contains(err.Error(), tt.inError) {
				t.Errorf("error lacks %q (the engine's message or the container's last log line): %v", tt.inError, err)
			}
			d, _ := f.store.Get(ctx, ref)
			if len(d.Services) != 0 {
				t.Fatalf("store not rolled back: %v", d.Services)
			}
			if got, _ := os.ReadFile(file); string(got) != string(fileBefore) {
				t.Fatalf("compose file not rolled back:\n%s", got)
			}
			after := containers(t, f.api, f.fleet)
			if _, ok := after["web2-"+tt.service]; ok {
				t.Fatal("a container of the failed service was left behind")
			}
			assertUntouched(t, before, after)
			// A retry fails the same way, not with ErrConflict.
			if _, err := f.m.AddService(ctx, ref, tt.service); err == nil || errors.Is(err, sl.ErrConflict) {
				t.Fatalf("retry: %v", err)
			}
		})
	}
}

// TestRedeployFromComposeFile tears the fleet down and brings it back from
// the compose file alone: the engine must then run exactly the stored
// services.
func TestRedeployFromComposeFile(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	if _, err := f.m.AddService(ctx, sl.FleetDecky("web2"), "ssh"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.AddService(ctx, sl.FleetDecky("web1"), "ssh"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.RemoveService(ctx, sl.FleetDecky("web1"), "http"); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Teardown(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if got := containers(t, f.api, f.fleet); len(got) != 0 {
		t.Fatalf("teardown left %v", slices.Sorted(maps.Keys(got)))
	}
	if got := containers(t, f.api, f.lab); len(got) != 1 {
		t.Fatalf("teardown of the fleet touched the topology: %v", got)
	}

	opts, err := cli.NewProjectOptions([]string{filepath.Join(f.dir, f.fleet, "compose.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != f.fleet {
		t.Fatalf("project name %q", p.Name)
	}
	// Bases first, then their services, as `docker compose up -d` would.
	keys := slices.Sorted(maps.Keys(p.Services))
	slices.SortStableFunc(keys, func(a, b string) int {
		return boolInt(p.Services[a].NetworkMode != "") - boolInt(p.Services[b].NetworkMode != "")
	})
	for _, key := range keys {
		if err := f.composer.Up(ctx, p, key); err != nil {
			t.Fatalf("up %s from the file: %v", key, err)
		}
	}
	deckies, _ := f.store.List(ctx, "")
	want := wantedKeys(deckies)
	got := containers(t, f.api, f.fleet)
	if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, want) {
		t.Fatalf("redeployed %v, store says %v", keys, want)
	}
	for key, c := range got {
		if c.State != "running" {
			t.Errorf("%s is %s", key, c.State)
		}
	}
	// The redeployed containers are what the library renders: Deploy finds
	// nothing to change.
	if err := f.m.Deploy(ctx, ""); err != nil {
		t.Fatal(err)
	}
	assertUntouched(t, got, containers(t, f.api, f.fleet))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestDeployIdempotentOnEngine(t *testing.T) {
	f := newFixture(t)
	before := containers(t, f.api, f.fleet)
	if err := f.m.Deploy(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	assertUntouched(t, before, containers(t, f.api, f.fleet))
}
