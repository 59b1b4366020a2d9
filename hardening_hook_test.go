package servicelive_test

import (
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	sl "github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
)

// everyOptOut opts out of every setting that has an opt-out.
var everyOptOut = sl.OptOut{Restart: true, SecurityOpt: true, Capabilities: true, Privileged: true, ReadOnly: true,
	PidsLimit: true, MemoryLimit: true, Namespaces: true, Devices: true, Sysctls: true, Ulimits: true, Runtime: true, CgroupParent: true}

// setOptOut returns o with its field named field set to v.
func setOptOut(o sl.OptOut, field string, v bool) sl.OptOut {
	reflect.ValueOf(&o).Elem().FieldByName(field).SetBool(v)
	return o
}

// renderErr renders one decky running services, returning the error.
func renderErr(t *testing.T, services ...sl.Service) (*types.Project, error) {
	t.Helper()
	reg, err := sl.NewRegistry(services...)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range services {
		names = append(names, s.Name)
	}
	store := sl.NewMemoryStore(map[string][]sl.Decky{"": {{Name: "web1", Image: "base", Services: names}}})
	m, err := sl.New(store, new(servicelivetest.Composer), reg)
	if err != nil {
		t.Fatal(err)
	}
	return m.Project(t.Context(), "")
}

// mountHook is a hostile hook on mounts, privileges and the OOM score;
// every slice it sets is shared with the caller's.
func mountHook(hooks []types.ServiceHook, vols []types.ServiceVolumeConfig) func(sl.Decky, sl.Config, *types.ServiceConfig) {
	return func(_ sl.Decky, _ sl.Config, s *types.ServiceConfig) {
		s.Privileged = true
		s.PostStart, s.PreStop = hooks, hooks
		s.OomScoreAdj = -1000
		s.Net = "host"
		s.Volumes = vols
		s.Tmpfs = types.StringList{"/run"}
		s.SecurityOpt = []string{"seccomp=unconfined", "apparmor=unconfined", "label=disable"}
	}
}

// TestHostileHookImposed: privileges, mounts and the OOM score a hook sets
// are replaced by the profile, unless the service opts out of exactly that.
func TestHostileHookImposed(t *testing.T) {
	hooks := []types.ServiceHook{{Command: types.ShellCommand{"sh"}, Privileged: true}}
	bind := &types.ServiceVolumeBind{Recursive: "writable", SELinux: "Z"}
	vols := []types.ServiceVolumeConfig{
		{Type: types.VolumeTypeBind, Source: "/srv/data", Target: "/data", Bind: bind},
		{Type: types.VolumeTypeVolume, Target: "/cache"},
		{Type: types.VolumeTypeTmpfs, Target: "/scratch", Tmpfs: &types.ServiceVolumeTmpfs{Size: 1 << 30, Mode: 0o1777}},
		{Type: types.VolumeTypeBind, Source: "/srv/x", Target: "/var/lib/x"}, // declared Writable: stays a tmpfs
		{Type: types.VolumeTypeTmpfs, Target: "/tmp"},
	}
	hookVols := slices.Clone(vols)
	hook := mountHook(hooks, vols)
	p, err := renderErr(t,
		sl.Service{Name: "strict", Image: "x", Writable: []string{"/var/lib/x"}, Compose: hook},
		sl.Service{Name: "priv", Image: "x", OptOut: sl.OptOut{Privileged: true}, Compose: hook},
		sl.Service{Name: "rw", Image: "x", OptOut: sl.OptOut{ReadOnly: true}, Compose: hook},
		sl.Service{Name: "oom", Image: "x", OptOut: sl.OptOut{MemoryLimit: true}, Compose: hook},
	)
	if err != nil {
		t.Fatal(err)
	}
	if !hooks[0].Privileged || !reflect.DeepEqual(vols, hookVols) || bind.Recursive != "writable" || bind.SELinux != "Z" {
		t.Error("hardening changed the hook's shared slices")
	}

	s := p.Services["web1-strict"]
	size := ",size=16777216"
	wantTmpfs := types.StringList{"/tmp:rw,noexec,nosuid,nodev" + size, "/var/lib/x:rw,noexec,nosuid,nodev" + size,
		"/scratch:rw,noexec,nosuid,nodev" + size + ",mode=1777"}
	wantVols := []types.ServiceVolumeConfig{
		{Type: types.VolumeTypeBind, Source: "/srv/data", Target: "/data", ReadOnly: true, Bind: &types.ServiceVolumeBind{}},
		{Type: types.VolumeTypeVolume, Target: "/cache", ReadOnly: true},
	}
	for what, ok := range map[string]bool{
		"privileged":    !s.Privileged,
		"post_start":    len(s.PostStart) == 1 && !s.PostStart[0].Privileged,
		"pre_stop":      len(s.PreStop) == 1 && !s.PreStop[0].Privileged,
		"oom_score_adj": s.OomScoreAdj == 0,
		"net":           s.Net == "" && s.NetworkMode == "service:web1",
		"security_opt":  slices.Equal(s.SecurityOpt, []string{sl.NoNewPrivileges}),
		"read_only":     s.ReadOnly,
		"tmpfs":         slices.Equal(s.Tmpfs, wantTmpfs),
		"volumes":       reflect.DeepEqual(s.Volumes, wantVols),
	} {
		if !ok {
			t.Errorf("strict: %s not hardened: %s", what, dump(s))
		}
	}

	if s := p.Services["web1-priv"]; !s.Privileged || !s.PostStart[0].Privileged || !s.PreStop[0].Privileged ||
		!slices.Equal(s.CapDrop, []string{"ALL"}) || !s.ReadOnly || s.OomScoreAdj != 0 || len(s.Volumes) != 3 || !s.Volumes[2].ReadOnly {
		t.Errorf("OptOut.Privileged: want privileged kept and the rest hardened: %s", dump(s))
	}
	if s := p.Services["web1-rw"]; !reflect.DeepEqual(s.Volumes, hookVols) || !slices.Equal(s.Tmpfs, types.StringList{"/run"}) ||
		s.ReadOnly || s.Privileged || s.OomScoreAdj != 0 {
		t.Errorf("OptOut.ReadOnly: want the hook's mounts kept and the rest hardened: %s", dump(s))
	}
	if s := p.Services["web1-oom"]; s.OomScoreAdj != -1000 || s.Privileged || !s.ReadOnly || len(s.Volumes) != 3 {
		t.Errorf("OptOut.MemoryLimit: want oom_score_adj kept and the rest hardened: %s", dump(s))
	}
}

// TestHostileHookRefused: a setting outside the profile that a hook sets
// fails the render with a *ProfileError naming it, unless the service opts
// out of exactly that setting (every other opt-out does not help); what
// nothing allows is refused even with every opt-out.
func TestHostileHookRefused(t *testing.T) {
	bind := func(src string) func(*types.ServiceConfig) {
		return func(s *types.ServiceConfig) {
			s.Volumes = []types.ServiceVolumeConfig{{Type: types.VolumeTypeBind, Source: src, Target: "/x", ReadOnly: true}}
		}
	}
	for _, tt := range []struct {
		name, setting, optOut string // optOut "": never allowed
		set                   func(*types.ServiceConfig)
	}{
		{"pid host", "pid", "Namespaces", func(s *types.ServiceConfig) { s.Pid = "host" }},
		{"pid of another container", "pid", "Namespaces", func(s *types.ServiceConfig) { s.Pid = "container:other" }},
		{"ipc host", "ipc", "Namespaces", func(s *types.ServiceConfig) { s.Ipc = "host" }},
		{"ipc of another service", "ipc", "Namespaces", func(s *types.ServiceConfig) { s.Ipc = "service:other" }},
		{"uts host", "uts", "Namespaces", func(s *types.ServiceConfig) { s.Uts = "host" }},
		{"userns host", "userns_mode", "Namespaces", func(s *types.ServiceConfig) { s.UserNSMode = "host" }},
		{"cgroup host", "cgroup", "Namespaces", func(s *types.ServiceConfig) { s.Cgroup = "host" }},
		{"devices", "devices", "Devices", func(s *types.ServiceConfig) {
			s.Devices = []types.DeviceMapping{{Source: "/dev/sda", Target: "/dev/sda", Permissions: "rwm"}}
		}},
		{"device cgroup rules", "device_cgroup_rules", "Devices", func(s *types.ServiceConfig) { s.DeviceCgroupRules = []string{"a *:* rwm"} }},
		{"gpus", "gpus", "Devices", func(s *types.ServiceConfig) { s.Gpus = []types.DeviceRequest{{Driver: "nvidia"}} }},
		{"reserved devices", "deploy.resources.reservations.devices", "Devices", func(s *types.ServiceConfig) {
			s.Deploy = &types.DeployConfig{Resources: types.Resources{Reservations: &types.Resource{Devices: []types.DeviceRequest{{Driver: "nvidia"}}}}}
		}},
		{"sysctls", "sysctls", "Sysctls", func(s *types.ServiceConfig) { s.Sysctls = types.Mapping{"net.ipv4.ip_forward": "1"} }},
		{"ulimits", "ulimits", "Ulimits", func(s *types.ServiceConfig) {
			s.Ulimits = map[string]*types.UlimitsConfig{"rtprio": {Single: 99}}
		}},
		{"runtime", "runtime", "Runtime", func(s *types.ServiceConfig) { s.Runtime = "weak" }},
		{"cgroup parent", "cgroup_parent", "CgroupParent", func(s *types.ServiceConfig) { s.CgroupParent = "/" }},
		{"tmpfs volume with options in its path", "volumes", "ReadOnly", func(s *types.ServiceConfig) {
			s.Volumes = []types.ServiceVolumeConfig{{Type: types.VolumeTypeTmpfs, Target: "/x:exec"}}
		}},
		{"api socket", "use_api_socket", "", func(s *types.ServiceConfig) { s.UseAPISocket = true }},
		{"docker.sock", "volumes", "", bind("/var/run/docker.sock")},
		{"docker.sock via /run", "volumes", "", bind("/run/docker.sock")},
		{"unclean docker.sock", "volumes", "", bind("/run//./docker.sock")},
		{"rootless docker.sock", "volumes", "", bind("/run/user/1000/docker.sock")},
		{"containerd", "volumes", "", bind("/run/containerd")},
		{"a directory holding it", "volumes", "", bind("/var/run")},
		{"var", "volumes", "", bind("/var")},
		{"root", "volumes", "", bind("/")},
		{"relative host path", "volumes", "", bind("../../var/run")},
		{"volumes_from", "volumes_from", "", func(s *types.ServiceConfig) { s.VolumesFrom = []string{"portainer"} }},
		{"pre_start", "pre_start", "", func(s *types.ServiceConfig) {
			s.PreStart = []types.PreStartHook{{ContainerSpec: types.ContainerSpec{Image: "x", Privileged: true}}}
		}},
		{"provider", "provider", "", func(s *types.ServiceConfig) { s.Provider = &types.ServiceProviderConfig{Type: "model"} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hook := func(_ sl.Decky, _ sl.Config, s *types.ServiceConfig) { tt.set(s) }
			opts := []sl.OptOut{{}}
			if tt.optOut == "" {
				opts = append(opts, everyOptOut)
			} else {
				opts = append(opts, setOptOut(everyOptOut, tt.optOut, false))
			}
			for _, o := range opts {
				_, err := renderErr(t, sl.Service{Name: "bad", Image: "x", OptOut: o, Compose: hook})
				var pe *sl.ProfileError
				switch {
				case !errors.Is(err, sl.ErrInvalidService) || !errors.As(err, &pe):
					t.Fatalf("opt-outs %+v: want a *ProfileError matching ErrInvalidService, got %v", o, err)
				case pe.Service != "bad" || pe.Setting != tt.setting || pe.OptOut != tt.optOut:
					t.Errorf("opt-outs %+v: refused %+v, want setting %q, opt-out %q", o, pe, tt.setting, tt.optOut)
				}
			}
			if tt.optOut == "" {
				return
			}
			p, err := renderErr(t, sl.Service{Name: "ok", Image: "x", OptOut: setOptOut(sl.OptOut{}, tt.optOut, true), Compose: hook})
			if err != nil {
				t.Fatalf("OptOut.%s: %v", tt.optOut, err)
			}
			want := types.ServiceConfig{}
			tt.set(&want)
			got := p.Services["web1-ok"]
			if got.Pid != want.Pid || got.Ipc != want.Ipc || got.Uts != want.Uts || got.UserNSMode != want.UserNSMode ||
				got.Cgroup != want.Cgroup || !reflect.DeepEqual(got.Devices, want.Devices) ||
				!slices.Equal(got.DeviceCgroupRules, want.DeviceCgroupRules) || !reflect.DeepEqual(got.Gpus, want.Gpus) ||
				!reflect.DeepEqual(got.Sysctls, want.Sysctls) || !reflect.DeepEqual(got.Ulimits, want.Ulimits) ||
				got.Runtime != want.Runtime || got.CgroupParent != want.CgroupParent {
				t.Errorf("OptOut.%s: the hook's value is not kept: %s", tt.optOut, dump(got))
			}
			if got.Privileged || !got.ReadOnly && tt.optOut != "ReadOnly" || !slices.Equal(got.CapDrop, []string{"ALL"}) ||
				!slices.Equal(got.SecurityOpt, []string{sl.NoNewPrivileges}) || got.PidsLimit != sl.DefaultPidsLimit {
				t.Errorf("OptOut.%s relaxed another setting: %s", tt.optOut, dump(got))
			}
		})
	}
}

// TestAddServiceRefusedHook: AddService of a service whose hook sets a
// refused setting fails with the *ProfileError at the render, and changes
// nothing: not the Store, not the engine.
func TestAddServiceRefusedHook(t *testing.T) {
	reg, err := sl.NewRegistry(sl.Service{Name: "ssh", Image: "x", Compose: func(_ sl.Decky, _ sl.Config, s *types.ServiceConfig) {
		s.Pid = "host"
	}})
	if err != nil {
		t.Fatal(err)
	}
	ref := sl.Ref{Decky: "web1"}
	store := sl.NewMemoryStore(map[string][]sl.Decky{"": {{Name: "web1", Image: "base"}}})
	c := &servicelivetest.Composer{Lenient: true}
	m, err := sl.New(store, c, reg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.AddService(t.Context(), ref, "ssh")
	var pe *sl.ProfileError
	var e *sl.Error
	if !errors.Is(err, sl.ErrInvalidService) || !errors.As(err, &pe) || pe.Setting != "pid" || !errors.As(err, &e) || e.Stage != sl.StageRender {
		t.Fatalf("AddService: want a render-stage *ProfileError on pid, got %v", err)
	}
	if d, err := store.Get(t.Context(), ref); err != nil || len(d.Services) != 0 {
		t.Errorf("the Store changed: %+v %v", d, err)
	}
	if ops := c.Ops(); len(ops) != 0 {
		t.Errorf("the engine was called: %v", ops)
	}
}
