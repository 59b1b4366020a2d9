package integration_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/client"

	sl "github.com/decnet/servicelive"
	"github.com/decnet/servicelive/dockercompose"
	"github.com/decnet/servicelive/internal/testimage"
	"github.com/decnet/servicelive/servicelivetest"
)

// downRegistry is a private registry that is down (nothing listens on
// port 1): an image named after it cannot be had, the engine's pull fails
// at once with "connection refused".
const downRegistry = "127.0.0.1:1"

// reconfigureRegistry registers ssh, whose configuration is its banner, its
// port and its version (any version but the bundled one is pulled from
// downRegistry), and http, a plain banner service.
func reconfigureRegistry(t *testing.T, image string) *sl.Registry {
	t.Helper()
	reg, err := sl.NewRegistry(
		sl.Service{
			Name: "ssh", Image: image, Ports: []int{2222},
			Schema: []sl.Field{{Key: "banner", Type: sl.FieldString}, {Key: "port", Type: sl.FieldInt}, {Key: "version", Type: sl.FieldString}},
			Compose: func(d sl.Decky, cfg sl.Config, s *types.ServiceConfig) {
				b, p := "SSH-2.0-default "+d.Name, "2222"
				if v, ok := cfg["banner"].(string); ok {
					b = v
				}
				if v, ok := cfg["port"].(int); ok {
					p = fmt.Sprint(v)
				}
				if v, ok := cfg["version"].(string); ok {
					s.Image = downRegistry + "/servicelive-ssh:" + v
				}
				b += "\r\n"
				s.Command = testimage.Command(testimage.ModeBanner)
				s.Environment = types.MappingWithEquals{"BANNER": &b, "PORT": &p}
			},
		},
		sl.Service{Name: "http", Image: image, Ports: []int{8080}, Compose: bannerHook("HTTP-rf", "8080", nil)},
	)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// TestReconfigureOnEngine reconfigures a running service on the real engine
// with UpdateServiceConfig and checks, through the Engine API and the
// service's port:
//
//   - WithRecreate recreates that service's container, and only it (its
//     decky's base and other service, the other deckies and the other scope
//     keep their container ID and start time), and the new container serves
//     the new configuration;
//   - a new configuration the engine cannot run is undone: the old
//     configuration is stored and written back and a container with the old
//     configuration runs — the very old one when the engine failed before
//     touching it (its image cannot be pulled), a new one when the engine had
//     already replaced it (the new container cannot start);
//   - after all that, Reconcile finds nothing to change;
//   - without WithRecreate the change is stored only, and Reconcile applies
//     it, recreating that container alone.
func TestReconfigureOnEngine(t *testing.T) {
	api, image := engine(t)
	ctx := t.Context()
	fleet := randomName("slrf")
	store := sl.NewMemoryStore(map[string][]sl.Decky{
		"": {
			{Name: "web1", Image: image, Services: []string{"ssh", "http"}, Config: map[string]sl.Config{"ssh": {"banner": "SSH-2.0-old"}}},
			{Name: "web2", Image: image, Services: []string{"ssh"}},
		},
		"Lab": {{Name: "web1", Image: image, Services: []string{"ssh"}}},
	})
	// The grace catches a container that starts, then exits at once.
	composer, err := dockercompose.New(dockercompose.WithStartGrace(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	bus := new(servicelivetest.Bus)
	dir := t.TempDir()
	m, err := sl.New(store, composer, reconfigureRegistry(t, image), sl.WithFleetProject(fleet), sl.WithProjectDir(dir), sl.WithBus(bus))
	if err != nil {
		t.Fatal(err)
	}
	lab := m.ProjectName("Lab")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		removeProjects(ctx, t, api, fleet, lab)
		composer.Close()
	})
	t0 := time.Now()
	for _, scope := range []string{"", "Lab"} {
		if err := m.Deploy(ctx, scope); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("deployed in %v", time.Since(t0))

	ref := sl.FleetDecky("web1")
	file := filepath.Join(dir, fleet, "deckies", "web1.yaml")
	labBefore := containers(t, api, lab)
	before := containers(t, api, fleet)
	ip := ipOf(t, api, before["web1"].ID)
	if got := readBanner(t, net.JoinHostPort(ip, "2222")); got != "SSH-2.0-old" {
		t.Fatalf("deployed banner %q", got)
	}

	// Applied: only web1-ssh is recreated, and serves the new configuration.
	t0 = time.Now()
	newCfg := sl.Config{"banner": "SSH-2.0-new", "port": 2200}
	if err := m.UpdateServiceConfig(ctx, ref, "ssh", newCfg, sl.WithRecreate()); err != nil {
		t.Fatal(err)
	}
	t.Logf("UpdateServiceConfig WithRecreate took %v", time.Since(t0))
	applied := containers(t, api, fleet)
	assertUntouched(t, before, applied, "web1-ssh")
	assertUntouched(t, labBefore, containers(t, api, lab))
	ssh := applied["web1-ssh"]
	switch {
	case ssh.ID == before["web1-ssh"].ID:
		t.Fatal("web1-ssh was not recreated")
	case ssh.State != "running":
		t.Fatalf("web1-ssh is %s", ssh.State)
	case ssh.NetworkMode != "container:"+applied["web1"].ID:
		t.Fatalf("web1-ssh network mode %q, want the base's namespace", ssh.NetworkMode)
	}
	if got := readBanner(t, net.JoinHostPort(ip, "2200")); got != "SSH-2.0-new" {
		t.Fatalf("banner after the update %q, want SSH-2.0-new", got)
	}
	assertRunsConfig(t, api, ssh.ID, "SSH-2.0-new", "2200")
	assertStored(t, store, ref, newCfg)
	fileApplied, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(fileApplied), "SSH-2.0-new") {
		t.Fatalf("compose file not rewritten:\n%s", fileApplied)
	}
	evs := bus.Events()
	if len(evs) == 0 {
		t.Fatal("no event published")
	}
	if e := evs[len(evs)-1]; e.Kind != sl.ServiceConfigChanged || e.Decky != "web1" || e.Service != "ssh" || !e.Applied ||
		!slices.Equal(e.ConfigKeys, []string{"banner", "port"}) {
		t.Errorf("event %+v", e)
	}

	// Failures of the engine are undone.
	for _, tt := range []struct {
		name    string
		cfg     sl.Config
		inError string
		// replaced: the engine had removed the old container before failing,
		// so the rollback runs a new one (with the old configuration).
		replaced bool
	}{
		{"image cannot be pulled", sl.Config{"banner": "SSH-2.0-v9", "port": 2200, "version": "9.9"}, downRegistry, false},
		{"container cannot start", sl.Config{"banner": "SSH-2.0-bad", "port": 99999}, "invalid port", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := containers(t, api, fleet)
			events := len(bus.Events())
			t0 := time.Now()
			err := m.UpdateServiceConfig(ctx, ref, "ssh", tt.cfg, sl.WithRecreate())
			t.Logf("failed UpdateServiceConfig, rollback included, took %v: %v", time.Since(t0), err)
			switch {
			case err == nil:
				t.Fatal("a configuration the engine cannot run was applied")
			case !errors.Is(err, sl.ErrEngine):
				t.Errorf("error does not match ErrEngine: %v", err)
			case errors.Is(err, sl.ErrConflict) || errors.Is(err, sl.ErrInvalidService) || errors.Is(err, sl.ErrNotFound):
				t.Errorf("engine failure matches a sentinel: %v", err)
			case !strings.Contains(err.Error(), tt.inError):
				t.Errorf("error lacks %q (the engine's message or the container's last log line): %v", tt.inError, err)
			case strings.Contains(err.Error(), "rollback failed"):
				t.Errorf("rollback failed: %v", err)
			}
			assertStored(t, store, ref, newCfg)
			if got, _ := os.ReadFile(file); string(got) != string(fileApplied) {
				t.Errorf("compose file not rolled back:\n%s", got)
			}
			if n := len(bus.Events()); n != events {
				t.Errorf("a failed update published %d events", n-events)
			}

			after := assertConverged(t, api, store, "", fleet)
			assertUntouched(t, before, after, "web1-ssh")
			ssh := after["web1-ssh"]
			if tt.replaced {
				if ssh.ID == before["web1-ssh"].ID {
					t.Errorf("web1-ssh %.12s: want a new container, the engine removed the old one", ssh.ID)
				}
			} else {
				assertUntouched(t, pick(before, "web1-ssh"), after)
			}
			assertRunsConfig(t, api, ssh.ID, "SSH-2.0-new", "2200")
			if got := readBanner(t, net.JoinHostPort(ip, "2200")); got != "SSH-2.0-new" {
				t.Errorf("banner after the rollback %q, want SSH-2.0-new", got)
			}
			assertUntouched(t, labBefore, containers(t, api, lab))
		})
	}

	// What the rollbacks left is what the Store renders: nothing to do.
	settled := assertConverged(t, api, store, "", fleet)
	for _, scope := range []string{"", "Lab"} {
		rep, err := m.Reconcile(ctx, scope)
		if err != nil || rep.Changed() != 0 {
			logReport(t, rep)
			t.Fatalf("reconcile of %q after the updates: changed %d, %v", scope, rep.Changed(), err)
		}
	}
	assertUntouched(t, settled, containers(t, api, fleet))
	assertUntouched(t, labBefore, containers(t, api, lab))

	// Stored only: the container keeps the old configuration until
	// Reconcile recreates it, alone.
	ref2 := sl.FleetDecky("web2")
	if err := m.UpdateServiceConfig(ctx, ref2, "ssh", sl.Config{"banner": "SSH-2.0-later"}); err != nil {
		t.Fatal(err)
	}
	assertUntouched(t, settled, containers(t, api, fleet))
	ip2 := ipOf(t, api, settled["web2"].ID)
	if got := readBanner(t, net.JoinHostPort(ip2, "2222")); got != "SSH-2.0-default web2" {
		t.Fatalf("banner before Reconcile %q: the stored-only change was applied", got)
	}
	if e := bus.Events()[len(bus.Events())-1]; e.Kind != sl.ServiceConfigChanged || e.Decky != "web2" || e.Applied {
		t.Errorf("event %+v, want an unapplied ServiceConfigChanged of web2", e)
	}
	rep, err := m.Reconcile(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Containers {
		want := sl.ActionNone
		if c.Service == "web2-ssh" {
			want = sl.ActionRecreated
		}
		if c.Action != want {
			logReport(t, rep)
			t.Fatalf("reconcile: %s %s, want %s", c.Service, c.Action, want)
		}
	}
	reconciled := assertConverged(t, api, store, "", fleet)
	assertUntouched(t, settled, reconciled, "web2-ssh")
	if got := readBanner(t, net.JoinHostPort(ip2, "2222")); got != "SSH-2.0-later" {
		t.Fatalf("banner after Reconcile %q, want SSH-2.0-later", got)
	}
	if rep, err := m.Reconcile(ctx, ""); err != nil || rep.Changed() != 0 {
		logReport(t, rep)
		t.Fatalf("second reconcile: changed %d, %v", rep.Changed(), err)
	}
	assertUntouched(t, reconciled, containers(t, api, fleet))
}

// assertStored fails unless the Store holds cfg for ssh on ref.
func assertStored(t *testing.T, store sl.Store, ref sl.Ref, cfg sl.Config) {
	t.Helper()
	d, err := store.Get(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Config["ssh"]; fmt.Sprint(got) != fmt.Sprint(cfg) {
		t.Errorf("stored config %v, want %v", got, cfg)
	}
}

// assertRunsConfig fails unless the container runs with the banner and port
// of the given configuration, as the Engine API reports its environment.
func assertRunsConfig(t *testing.T, api client.APIClient, id, banner, port string) {
	t.Helper()
	env := envOf(t, api, id)
	if !slices.Contains(env, "BANNER="+banner+"\r\n") || !slices.Contains(env, "PORT="+port) {
		t.Errorf("container %.12s runs with %q, want BANNER=%s and PORT=%s", id, env, banner, port)
	}
}
