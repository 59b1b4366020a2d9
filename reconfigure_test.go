package servicelive_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	sl "github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
)

// configEnv is a deployed fleet where web1 runs http and ssh (banner "old").
func configEnv(t *testing.T, opts ...sl.Option) *env {
	t.Helper()
	e := newEnv(t, opts...)
	ctx := context.Background()
	if err := e.m.Deploy(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.AddService(ctx, sl.FleetDecky("web1"), "ssh", sl.WithConfig(sl.Config{"banner": "old"})); err != nil {
		t.Fatal(err)
	}
	e.composer.Reset()
	e.bus.Reset()
	return e
}

// ids returns the fake engine's container ID of every running key.
func ids(c *servicelivetest.Composer) map[string]string {
	out := map[string]string{}
	for _, key := range c.Running() {
		out[key] = c.ContainerID("decnet", key)
	}
	return out
}

func TestUpdateServiceConfig(t *testing.T) {
	for _, recreate := range []bool{false, true} {
		name := "stored"
		if recreate {
			name = "recreated"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			e := configEnv(t, sl.WithProjectDir(dir))
			ctx := context.Background()
			before := ids(e.composer)
			var opts []sl.UpdateOption
			if recreate {
				opts = append(opts, sl.WithRecreate())
			}
			err := e.m.UpdateServiceConfig(ctx, sl.FleetDecky("web1"), "ssh", sl.Config{"banner": "SSH-2.0-new", "port": 2222}, opts...)
			if err != nil {
				t.Fatal(err)
			}
			d := e.decky(t, sl.FleetDecky("web1"))
			if got := d.Config["ssh"]; got["banner"] != "SSH-2.0-new" || got["port"] != 2222 {
				t.Fatalf("stored config %v", got)
			}
			if f := readFile(t, filepath.Join(dir, "decnet", "deckies", "web1.yaml")); !strings.Contains(f, "SSH-2.0-new") {
				t.Fatalf("compose file not rewritten:\n%s", f)
			}
			after := ids(e.composer)
			for key, id := range before {
				changed := after[key] != id
				if want := recreate && key == "web1-ssh"; changed != want {
					t.Errorf("%s: container changed = %v, want %v", key, changed, want)
				}
			}
			wantCalls := []string(nil)
			if recreate {
				wantCalls = []string{"up web1-ssh"}
			}
			if got := callOps(e.composer.Calls()); !slices.Equal(got, wantCalls) {
				t.Errorf("composer calls %q, want %q", got, wantCalls)
			}
			ev := e.bus.Events()
			if len(ev) != 1 {
				t.Fatalf("events %+v", ev)
			}
			if ev[0].Kind != sl.ServiceConfigChanged || ev[0].Topic() != "decky.web1.service_config_changed" ||
				!slices.Equal(ev[0].ConfigKeys, []string{"banner", "port"}) || ev[0].Applied != recreate {
				t.Errorf("event %+v", ev[0])
			}
			// Without recreate the container is diverged: Reconcile applies it.
			rep, err := e.m.Reconcile(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			wantChanged := 1
			if recreate {
				wantChanged = 0
			}
			if rep.Changed() != wantChanged {
				t.Errorf("Reconcile changed %d containers, want %d: %+v", rep.Changed(), wantChanged, rep)
			}
		})
	}
}

func TestUpdateServiceConfigRefused(t *testing.T) {
	tests := []struct {
		name    string
		ref     sl.Ref
		svc     string
		cfg     sl.Config
		wantErr error
	}{
		{"bad value", sl.FleetDecky("web1"), "ssh", sl.Config{"port": "twenty-two"}, sl.ErrInvalidService},
		{"unknown service", sl.FleetDecky("web1"), "telnet", nil, sl.ErrInvalidService},
		{"bad service name", sl.FleetDecky("web1"), "SSH", nil, sl.ErrInvalidService},
		{"bad decky name", sl.FleetDecky("Web1"), "ssh", nil, sl.ErrInvalidService},
		{"not on the decky", sl.FleetDecky("web2"), "ssh", nil, sl.ErrConflict},
		{"missing decky", sl.FleetDecky("web9"), "ssh", nil, sl.ErrNotFound},
		{"missing topology", sl.TopologyDecky("nope", "web1"), "ssh", nil, sl.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := configEnv(t)
			before := e.decky(t, sl.FleetDecky("web1"))
			err := e.m.UpdateServiceConfig(context.Background(), tt.ref, tt.svc, tt.cfg, sl.WithRecreate())
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got := e.decky(t, sl.FleetDecky("web1")); got.Config["ssh"]["banner"] != before.Config["ssh"]["banner"] {
				t.Errorf("config changed to %v", got.Config["ssh"])
			}
			if c := e.composer.Calls(); len(c) != 0 {
				t.Errorf("composer calls %v", callOps(c))
			}
			if ev := e.bus.Events(); len(ev) != 0 {
				t.Errorf("events %+v", ev)
			}
		})
	}
	t.Run("bad value is a ConfigError", func(t *testing.T) {
		e := configEnv(t)
		err := e.m.UpdateServiceConfig(context.Background(), sl.FleetDecky("web1"), "ssh", sl.Config{"port": "x"})
		var ce *sl.ConfigError
		if !errors.As(err, &ce) || ce.Key != "port" {
			t.Fatalf("err = %v, want a *ConfigError for port", err)
		}
	})
}

// TestUpdateServiceConfigRollback: the engine fails the recreate: the old
// configuration is stored and written back, the old container runs.
func TestUpdateServiceConfigRollback(t *testing.T) {
	engineErr := errors.New("engine says no")
	cases := map[string]func(e *env){
		"up fails before touching the container": func(e *env) { e.composer.FailNext(servicelivetest.OpUp, engineErr) },
		"up fails after removing the container": func(e *env) {
			e.composer.SetHook(func(ctx context.Context, c servicelivetest.Call) error {
				if c.Op == servicelivetest.OpUp && strings.Contains(c.Spec.Services["web1-ssh"].Environment.ToMapping()["BANNER"], "new") {
					e.composer.SetState("decnet", "web1-ssh", "") // the recreate removed the old one
					return engineErr
				}
				return nil
			})
		},
	}
	for name, inject := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			e := configEnv(t, sl.WithProjectDir(dir))
			oldFile := readFile(t, filepath.Join(dir, "decnet", "deckies", "web1.yaml"))
			inject(e)
			err := e.m.UpdateServiceConfig(context.Background(), sl.FleetDecky("web1"), "ssh", sl.Config{"banner": "new"}, sl.WithRecreate())
			if !errors.Is(err, engineErr) || errors.Is(err, sl.ErrConflict) || errors.Is(err, sl.ErrInvalidService) || errors.Is(err, sl.ErrNotFound) {
				t.Fatalf("err = %v, want the engine's error and no sentinel", err)
			}
			if got := e.decky(t, sl.FleetDecky("web1")).Config["ssh"]["banner"]; got != "old" {
				t.Errorf("stored banner %v, want old", got)
			}
			if f := readFile(t, filepath.Join(dir, "decnet", "deckies", "web1.yaml")); f != oldFile {
				t.Errorf("compose file not restored:\n%s", f)
			}
			if !slices.Contains(e.composer.Running(), "web1-ssh") {
				t.Errorf("running %v: the old container did not come back", e.composer.Running())
			}
			rep, err := e.m.Reconcile(context.Background(), "")
			if err != nil || rep.Changed() != 0 {
				t.Errorf("Reconcile after the rollback: %v, %+v", err, rep)
			}
			if ev := e.bus.Events(); len(ev) != 0 {
				t.Errorf("events %+v", ev)
			}
		})
	}
}
