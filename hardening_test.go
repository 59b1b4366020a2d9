package servicelive_test

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	sl "github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
)

func TestRegisterHardening(t *testing.T) {
	tests := []struct {
		name string
		edit func(*sl.Service)
		ok   bool
	}{
		{"defaults", func(s *sl.Service) {}, true},
		{"capabilities", func(s *sl.Service) { s.CapAdd = []string{"NET_ADMIN", "cap_net_raw", "CAP_SYS_TIME"} }, true},
		{"unknown capability", func(s *sl.Service) { s.CapAdd = []string{"NET_ADMINN"} }, false},
		{"ALL is no capability", func(s *sl.Service) { s.CapAdd = []string{"ALL"} }, false},
		{"empty capability", func(s *sl.Service) { s.CapAdd = []string{""} }, false},
		{"duplicate capability", func(s *sl.Service) { s.CapAdd = []string{"NET_ADMIN", "CAP_NET_ADMIN"} }, false},
		{"writable paths", func(s *sl.Service) { s.Writable = []string{"/var/lib/x", "/run", "/var/log/nginx"} }, true},
		{"relative path", func(s *sl.Service) { s.Writable = []string{"var/lib/x"} }, false},
		{"unclean path", func(s *sl.Service) { s.Writable = []string{"/var/lib/../x"} }, false},
		{"trailing slash", func(s *sl.Service) { s.Writable = []string{"/var/lib/x/"} }, false},
		{"root", func(s *sl.Service) { s.Writable = []string{"/"} }, false},
		{"tmp", func(s *sl.Service) { s.Writable = []string{"/tmp"} }, false},
		{"proc", func(s *sl.Service) { s.Writable = []string{"/proc/sys"} }, false},
		{"sys", func(s *sl.Service) { s.Writable = []string{"/sys"} }, false},
		{"dev", func(s *sl.Service) { s.Writable = []string{"/dev/shm"} }, false},
		{"devices is fine", func(s *sl.Service) { s.Writable = []string{"/devices"} }, true},
		{"colon in path", func(s *sl.Service) { s.Writable = []string{"/a:b"} }, false},
		{"comma in path", func(s *sl.Service) { s.Writable = []string{"/a,size=1g"} }, false},
		{"duplicate path", func(s *sl.Service) { s.Writable = []string{"/a", "/a"} }, false},
		{"pids", func(s *sl.Service) { s.PidsLimit = 1000 }, true},
		{"negative pids", func(s *sl.Service) { s.PidsLimit = -1 }, false},
		{"huge pids", func(s *sl.Service) { s.PidsLimit = sl.MaxPidsLimit + 1 }, false},
		{"memory", func(s *sl.Service) { s.MemoryLimit = 1 << 30 }, true},
		{"tiny memory", func(s *sl.Service) { s.MemoryLimit = 1 << 20 }, false},
		{"negative memory", func(s *sl.Service) { s.MemoryLimit = -1 }, false},
		{"tmpfs size", func(s *sl.Service) { s.TmpfsSize = 64 << 20 }, true},
		{"tmpfs above memory", func(s *sl.Service) { s.TmpfsSize = sl.DefaultMemoryLimit + 1 }, false},
		{"tmpfs below a page", func(s *sl.Service) { s.TmpfsSize = 100 }, false},
		{"every opt-out", func(s *sl.Service) {
			s.OptOut = everyOptOut
		}, true},
		{"caps and their opt-out", func(s *sl.Service) { s.CapAdd, s.OptOut.Capabilities = []string{"NET_ADMIN"}, true }, false},
		{"writable and its opt-out", func(s *sl.Service) { s.Writable, s.OptOut.ReadOnly = []string{"/x"}, true }, false},
		{"tmpfs size and its opt-out", func(s *sl.Service) { s.TmpfsSize, s.OptOut.ReadOnly = 1<<20, true }, false},
		{"pids and its opt-out", func(s *sl.Service) { s.PidsLimit, s.OptOut.PidsLimit = 10, true }, false},
		{"memory and its opt-out", func(s *sl.Service) { s.MemoryLimit, s.OptOut.MemoryLimit = 1<<30, true }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := imageService("ssh")
			tt.edit(&s)
			var r sl.Registry
			err := r.Register(s)
			if tt.ok {
				if err != nil {
					t.Fatalf("Register: %v", err)
				}
				return
			}
			checkInvalidService(t, err)
			if _, ok := r.Lookup("ssh"); ok {
				t.Error("a refused service was registered")
			}
		})
	}
}

func TestRegisterCopiesHardening(t *testing.T) {
	caps, paths := []string{"NET_ADMIN"}, []string{"/var/lib/x"}
	var r sl.Registry
	if err := r.Register(sl.Service{Name: "ssh", Image: "ssh", CapAdd: caps, Writable: paths}); err != nil {
		t.Fatal(err)
	}
	caps[0], paths[0] = "SYS_ADMIN", "/"
	got, _ := r.Lookup("ssh")
	if !slices.Equal(got.CapAdd, []string{"NET_ADMIN"}) || !slices.Equal(got.Writable, []string{"/var/lib/x"}) {
		t.Errorf("mutating the caller's slices changed the registered service: %v %v", got.CapAdd, got.Writable)
	}
}

// weaken is a hook that sets everything the profile covers to its weakest.
func weaken(shared *types.DeployConfig) func(sl.Decky, sl.Config, *types.ServiceConfig) {
	return func(_ sl.Decky, _ sl.Config, s *types.ServiceConfig) {
		s.Privileged = true
		s.CapAdd = []string{"SYS_ADMIN"}
		s.CapDrop = nil
		s.ReadOnly = false
		s.Tmpfs = types.StringList{"/run"}
		s.Restart = "no"
		s.SecurityOpt = []string{"seccomp=unconfined"}
		s.PidsLimit = -1
		s.MemLimit = 0
		s.MemSwapLimit = -1
		s.OomKillDisable = true
		s.Deploy = shared
	}
}

// renderHardening renders the fleet of one decky running services.
func renderHardening(t *testing.T, services ...sl.Service) *types.Project {
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
	p, err := m.Project(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	again, err := m.Project(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.Services, again.Services) {
		t.Error("two renders differ")
	}
	return p
}

func TestHardenedProfile(t *testing.T) {
	shared := &types.DeployConfig{
		RestartPolicy: &types.RestartPolicy{Condition: "none"},
		Resources:     types.Resources{Limits: &types.Resource{Pids: 1 << 20, MemoryBytes: 1 << 40}},
	}
	p := renderHardening(t,
		sl.Service{Name: "ssh", Image: "ssh", Ports: []int{2222, 22}, Compose: weaken(shared)},
		sl.Service{Name: "http", Image: "http", Ports: []int{1024, 8080}},
		sl.Service{Name: "sensor", Image: "sensor", Ports: []int{80}, CapAdd: []string{"net_raw", "CAP_NET_ADMIN"},
			Writable: []string{"/var/lib/x", "/run/x"}, TmpfsSize: 1 << 20, PidsLimit: 50, MemoryLimit: 64 << 20},
	)
	if shared.RestartPolicy == nil || shared.Resources.Limits.Pids != 1<<20 || shared.Resources.Limits.MemoryBytes != 1<<40 {
		t.Errorf("hardening changed the hook's shared deploy: %+v %+v", shared, shared.Resources.Limits)
	}
	tmp := func(size string, paths ...string) types.StringList {
		var l types.StringList
		for _, p := range paths {
			l = append(l, p+":rw,noexec,nosuid,nodev,size="+size)
		}
		return l
	}
	for _, tt := range []struct {
		key        string
		caps       []string
		tmpfs      types.StringList
		pids, mem  int64
		deployLims bool
	}{
		{"web1", nil, tmp("1048576", "/tmp"), sl.BasePidsLimit, sl.BaseMemoryLimit, false},
		{"web1-ssh", []string{"NET_BIND_SERVICE"}, tmp("16777216", "/tmp"), sl.DefaultPidsLimit, sl.DefaultMemoryLimit, true},
		{"web1-http", nil, tmp("16777216", "/tmp"), sl.DefaultPidsLimit, sl.DefaultMemoryLimit, false},
		{"web1-sensor", []string{"NET_ADMIN", "NET_BIND_SERVICE", "NET_RAW"}, tmp("1048576", "/tmp", "/var/lib/x", "/run/x"), 50, 64 << 20, false},
	} {
		s := p.Services[tt.key]
		var problems []string
		check := func(what string, ok bool, v any) {
			if !ok {
				problems = append(problems, what+": "+strings.TrimSpace(strings.ReplaceAll(dump(v), "\n", " ")))
			}
		}
		check("restart", s.Restart == sl.RestartPolicy, s.Restart)
		check("security_opt", slices.Equal(s.SecurityOpt, []string{sl.NoNewPrivileges}), s.SecurityOpt)
		check("cap_drop", slices.Equal(s.CapDrop, []string{"ALL"}), s.CapDrop)
		check("cap_add", slices.Equal(s.CapAdd, tt.caps), s.CapAdd)
		check("privileged", !s.Privileged, s.Privileged)
		check("read_only", s.ReadOnly, s.ReadOnly)
		check("tmpfs", slices.Equal(s.Tmpfs, tt.tmpfs), s.Tmpfs)
		check("pids_limit", s.PidsLimit == tt.pids, s.PidsLimit)
		check("mem_limit", int64(s.MemLimit) == tt.mem && s.MemSwapLimit == s.MemLimit, []any{s.MemLimit, s.MemSwapLimit})
		check("oom_kill_disable", !s.OomKillDisable, s.OomKillDisable)
		if tt.deployLims {
			l := s.Deploy.Resources.Limits
			check("deploy", s.Deploy.RestartPolicy == nil && l.Pids == tt.pids && int64(l.MemoryBytes) == tt.mem, s.Deploy)
		} else {
			check("deploy", s.Deploy == nil, s.Deploy)
		}
		if len(problems) > 0 {
			t.Errorf("%s: %s", tt.key, strings.Join(problems, "; "))
		}
	}
}

// TestHardeningOptOut: each opt-out leaves exactly its setting to the hook.
func TestHardeningOptOut(t *testing.T) {
	shared := &types.DeployConfig{
		RestartPolicy: &types.RestartPolicy{Condition: "none"},
		Resources:     types.Resources{Limits: &types.Resource{Pids: 1 << 20, MemoryBytes: 1 << 40}},
	}
	hook := weaken(shared)
	weak := types.ServiceConfig{}
	hook(sl.Decky{}, nil, &weak)
	for _, tt := range []struct {
		name  string
		opt   sl.OptOut
		check func(s types.ServiceConfig) bool // the hook's value is kept
		other func(s types.ServiceConfig) bool // the setting is hardened
	}{
		{"restart", sl.OptOut{Restart: true},
			func(s types.ServiceConfig) bool { return s.Restart == "no" && s.Deploy.RestartPolicy != nil },
			func(s types.ServiceConfig) bool {
				return s.Restart == sl.RestartPolicy && s.Deploy.RestartPolicy == nil
			}},
		{"security_opt", sl.OptOut{SecurityOpt: true},
			func(s types.ServiceConfig) bool { return slices.Equal(s.SecurityOpt, weak.SecurityOpt) },
			func(s types.ServiceConfig) bool { return slices.Equal(s.SecurityOpt, []string{sl.NoNewPrivileges}) }},
		{"capabilities", sl.OptOut{Capabilities: true},
			func(s types.ServiceConfig) bool {
				return !s.Privileged && slices.Equal(s.CapAdd, weak.CapAdd) && s.CapDrop == nil
			},
			func(s types.ServiceConfig) bool {
				return !s.Privileged && s.CapAdd == nil && slices.Equal(s.CapDrop, []string{"ALL"})
			}},
		{"privileged", sl.OptOut{Privileged: true},
			func(s types.ServiceConfig) bool { return s.Privileged },
			func(s types.ServiceConfig) bool { return !s.Privileged }},
		{"read_only", sl.OptOut{ReadOnly: true},
			func(s types.ServiceConfig) bool { return !s.ReadOnly && slices.Equal(s.Tmpfs, weak.Tmpfs) },
			func(s types.ServiceConfig) bool {
				return s.ReadOnly && len(s.Tmpfs) == 1 && strings.HasPrefix(s.Tmpfs[0], "/tmp:")
			}},
		{"pids_limit", sl.OptOut{PidsLimit: true},
			func(s types.ServiceConfig) bool { return s.PidsLimit == -1 && s.Deploy.Resources.Limits.Pids == 1<<20 },
			func(s types.ServiceConfig) bool {
				return s.PidsLimit == sl.DefaultPidsLimit && s.Deploy.Resources.Limits.Pids == sl.DefaultPidsLimit
			}},
		{"memory", sl.OptOut{MemoryLimit: true},
			func(s types.ServiceConfig) bool {
				return s.MemLimit == 0 && s.MemSwapLimit == -1 && s.OomKillDisable && s.Deploy.Resources.Limits.MemoryBytes == 1<<40
			},
			func(s types.ServiceConfig) bool {
				return s.MemLimit == sl.DefaultMemoryLimit && s.MemSwapLimit == sl.DefaultMemoryLimit && !s.OomKillDisable
			}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := renderHardening(t,
				sl.Service{Name: "relaxed", Image: "x", OptOut: tt.opt, Compose: hook},
				sl.Service{Name: "strict", Image: "x", Compose: hook},
			)
			relaxed, strict := p.Services["web1-relaxed"], p.Services["web1-strict"]
			if !tt.check(relaxed) {
				t.Errorf("opted out, the hook's value is not kept: %s", dump(relaxed))
			}
			if !tt.other(strict) {
				t.Errorf("not opted out, the setting is not hardened: %s", dump(strict))
			}
			// Every other setting of the relaxed service is hardened.
			if !tt.opt.Restart && relaxed.Restart != sl.RestartPolicy ||
				!tt.opt.SecurityOpt && !slices.Equal(relaxed.SecurityOpt, []string{sl.NoNewPrivileges}) ||
				!tt.opt.Capabilities && !slices.Equal(relaxed.CapDrop, []string{"ALL"}) ||
				!tt.opt.Privileged && relaxed.Privileged ||
				!tt.opt.ReadOnly && !relaxed.ReadOnly ||
				!tt.opt.PidsLimit && relaxed.PidsLimit != sl.DefaultPidsLimit ||
				!tt.opt.MemoryLimit && relaxed.MemLimit != sl.DefaultMemoryLimit {
				t.Errorf("an opt-out relaxed another setting: %s", dump(relaxed))
			}
		})
	}
}

func dump(v any) string { return fmt.Sprintf("%+v", v) }
