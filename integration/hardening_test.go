package integration_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/moby/sys/capability"

	sl "github.com/decnet/servicelive"
	"github.com/decnet/servicelive/dockercompose"
	"github.com/decnet/servicelive/internal/composecli"
	"github.com/decnet/servicelive/internal/testimage"
)

// profile is what the Engine API must report of one hardened container.
type profile struct {
	caps    []string // cap_add, as the engine reports it ("CAP_NET_ADMIN")
	tmpfs   map[string]string
	pids    int64
	memory  int64
	capMask uint64 // CapEff of its processes
}

// TestHardenedOnEngine deploys a fleet as an older version would have (no
// hardening), checks that Reconcile finds every container diverged and
// recreates it hardened, then checks the profile of every container
// through the Engine API and from inside: the root filesystem is
// read-only, /tmp and the declared paths are writable, the capabilities
// are exactly the declared ones, a fork bomb stops at the pids limit, and
// a main process killed from inside comes back by itself, after which
// Reconcile changes nothing.
func TestHardenedOnEngine(t *testing.T) {
	api, image := engine(t)
	ctx := t.Context()
	var b [4]byte
	rand.Read(b[:])
	fleet := "slhd" + hex.EncodeToString(b[:])
	dir := t.TempDir()

	banner := func(port string) func(sl.Decky, sl.Config, *types.ServiceConfig) {
		return func(d sl.Decky, _ sl.Config, s *types.ServiceConfig) {
			text := "SSH-2.0-hardened " + d.Name + "\r\n"
			s.Command = testimage.Command(testimage.ModeBanner)
			s.Environment = types.MappingWithEquals{"BANNER": &text, "PORT": &port}
		}
	}
	data := t.TempDir() // a host directory the hooks bind mount, writable
	weaken := func(s *types.ServiceConfig) {
		// Everything a hook could do to undo the profile.
		s.Volumes = []types.ServiceVolumeConfig{
			{Type: types.VolumeTypeBind, Source: data, Target: "/data"},
			{Type: types.VolumeTypeTmpfs, Target: "/scratch", Tmpfs: &types.ServiceVolumeTmpfs{Mode: 0o1777}},
		}
		s.OomScoreAdj = -500
		s.Privileged = true
		s.CapAdd = []string{"SYS_ADMIN"}
		s.CapDrop = nil
		s.ReadOnly = false
		s.Tmpfs = types.StringList{"/var/run"}
		s.Restart = "no"
		s.SecurityOpt = []string{"no-new-privileges:false"}
		s.PidsLimit = -1
		s.MemLimit = 0
		s.OomKillDisable = true
		s.Deploy = &types.DeployConfig{
			RestartPolicy: &types.RestartPolicy{Condition: "none"},
			Resources:     types.Resources{Limits: &types.Resource{Pids: 100000, MemoryBytes: 1 << 40}},
		}
	}
	reg, err := sl.NewRegistry(
		// ssh listens on port 22 (NET_BIND_SERVICE), and its hook tries
		// to weaken everything.
		sl.Service{Name: "ssh", Image: image, Ports: []int{22}, Compose: func(d sl.Decky, c sl.Config, s *types.ServiceConfig) {
			banner("22")(d, c, s)
			weaken(s)
		}},
		// sensor declares NET_ADMIN, a writable /var/lib/x and its limits.
		sl.Service{Name: "sensor", Image: image, Ports: []int{2222}, CapAdd: []string{"NET_ADMIN"}, Writable: []string{"/var/lib/x"},
			PidsLimit: 100, MemoryLimit: 128 << 20, TmpfsSize: 8 << 20, Compose: banner("2222")},
		// relaxed opts out of the read-only root filesystem only.
		sl.Service{Name: "relaxed", Image: image, Ports: []int{2223}, OptOut: sl.OptOut{ReadOnly: true}, Compose: func(d sl.Decky, c sl.Config, s *types.ServiceConfig) {
			banner("2223")(d, c, s)
			weaken(s)
		}},
	)
	if err != nil {
		t.Fatal(err)
	}
	store := sl.NewMemoryStore(map[string][]sl.Decky{
		"": {{Name: "web1", Image: image, Services: []string{"relaxed", "sensor", "ssh"}}},
	})
	composer, err := dockercompose.New()
	if err != nil {
		t.Fatal(err)
	}
	m, err := sl.New(store, composer, reg, sl.WithFleetProject(fleet), sl.WithProjectDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		removeProjects(ctx, t, api, fleet)
		composer.Close()
	})

	// The containers of an older version: the same project without the
	// profile, brought up base first.
	old, err := m.Project(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"web1", "web1-relaxed", "web1-sensor", "web1-ssh"} {
		s := old.Services[key]
		s.Restart, s.SecurityOpt, s.CapDrop, s.CapAdd, s.ReadOnly, s.Tmpfs = "", nil, nil, nil, false, nil
		s.PidsLimit, s.MemLimit, s.MemSwapLimit, s.Deploy, s.Privileged, s.OomKillDisable = 0, 0, 0, nil, false, false
		old.Services[key] = s
		if err := composer.Up(ctx, old, key); err != nil {
			t.Fatalf("up %s unhardened: %v", key, err)
		}
	}
	rep, err := m.Reconcile(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Containers {
		if c.Found != "running (diverged)" || c.Action != sl.ActionRecreated {
			t.Errorf("reconcile of an unhardened %s: found %q, %s (want running (diverged), recreated)", c.Service, c.Found, c.Action)
		}
	}
	if len(rep.Containers) != 4 {
		t.Fatalf("reconcile reported %d containers: %+v", len(rep.Containers), rep.Containers)
	}

	tmp := func(size int) string { return "rw,noexec,nosuid,nodev,size=" + strconv.Itoa(size) }
	bit := func(c capability.Cap) uint64 { return 1 << uint(c) }
	want := map[string]profile{
		"web1": {tmpfs: map[string]string{"/tmp": tmp(sl.BaseTmpfsSize)}, pids: sl.BasePidsLimit, memory: sl.BaseMemoryLimit},
		"web1-ssh": {caps: []string{"CAP_NET_BIND_SERVICE"}, tmpfs: map[string]string{"/tmp": tmp(sl.DefaultTmpfsSize),
			"/scratch": tmp(sl.DefaultTmpfsSize) + ",mode=1777"}, // the hook's tmpfs volume, made one of the profile
			pids: sl.DefaultPidsLimit, memory: sl.DefaultMemoryLimit, capMask: bit(capability.CAP_NET_BIND_SERVICE)},
		"web1-sensor": {caps: []string{"CAP_NET_ADMIN"}, tmpfs: map[string]string{"/tmp": tmp(8 << 20), "/var/lib/x": tmp(8 << 20)},
			pids: 100, memory: 128 << 20, capMask: bit(capability.CAP_NET_ADMIN)},
		"web1-relaxed": {tmpfs: map[string]string{"/var/run": ""}, pids: sl.DefaultPidsLimit, memory: sl.DefaultMemoryLimit},
	}
	got := containers(t, api, fleet)
	if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, slices.Sorted(maps.Keys(want))) {
		t.Fatalf("containers %v", keys)
	}
	for key, w := range want {
		in, err := api.ContainerInspect(ctx, got[key].ID, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		hc := in.Container.HostConfig
		pids := int64(0)
		if hc.PidsLimit != nil {
			pids = *hc.PidsLimit
		}
		readOnly := key != "web1-relaxed"
		var problems []string
		check := func(what string, ok bool, v any) {
			if !ok {
				problems = append(problems, fmt.Sprintf("%s = %v", what, v))
			}
		}
		check("RestartPolicy", hc.RestartPolicy.Name == container.RestartPolicyUnlessStopped, hc.RestartPolicy)
		check("SecurityOpt", slices.Equal(hc.SecurityOpt, []string{"no-new-privileges:true"}), hc.SecurityOpt)
		check("CapDrop", slices.Equal(hc.CapDrop, []string{"ALL"}), hc.CapDrop)
		check("CapAdd", slices.Equal(normCaps(hc.CapAdd), w.caps), hc.CapAdd)
		check("Privileged", !hc.Privileged, hc.Privileged)
		check("ReadonlyRootfs", hc.ReadonlyRootfs == readOnly, hc.ReadonlyRootfs)
		check("Tmpfs", maps.Equal(hc.Tmpfs, w.tmpfs), hc.Tmpfs)
		check("PidsLimit", pids == w.pids, pids)
		check("Memory", hc.Memory == w.memory, hc.Memory)
		check("MemorySwap", hc.MemorySwap == w.memory, hc.MemorySwap)
		check("OomKillDisable", hc.OomKillDisable == nil || !*hc.OomKillDisable, hc.OomKillDisable)
		check("OomScoreAdj", hc.OomScoreAdj == 0, hc.OomScoreAdj)
		for _, mp := range in.Container.Mounts {
			// The hook's bind mount: read-only, unless ReadOnly is opted out.
			check("Mounts /data", mp.Destination != "/data" || mp.RW == !readOnly && key != "web1" && key != "web1-sensor", mp)
		}
		if len(problems) > 0 {
			t.Errorf("%s: %s", key, strings.Join(problems, "; "))
		}

		// From inside: the same container's processes, as they are.
		var p probe
		execJSON(t, api, got[key].ID, &p, testimage.ModeProbe, "/var/lib/x", "/data", "/scratch")
		rootErr := p.Writes["/"]
		switch key {
		case "web1-ssh":
			if !strings.Contains(p.Writes["/data"], "read-only file system") || p.Writes["/scratch"] != "ok" {
				t.Errorf("%s: writing the hook's bind mount gave %q (want read-only), its tmpfs %q", key, p.Writes["/data"], p.Writes["/scratch"])
			}
		case "web1-relaxed":
			if p.Writes["/data"] != "ok" || p.Writes["/scratch"] != "ok" {
				t.Errorf("%s (opted out): writing the hook's bind mount gave %q, its tmpfs %q", key, p.Writes["/data"], p.Writes["/scratch"])
			}
		}
		switch {
		case readOnly && !strings.Contains(rootErr, "read-only file system"):
			t.Errorf("%s: writing / gave %q, want a read-only file system", key, rootErr)
		case !readOnly && rootErr != "ok":
			t.Errorf("%s (opted out): writing / gave %q", key, rootErr)
		case p.Writes["/tmp"] != "ok" && key != "web1-relaxed":
			t.Errorf("%s: writing /tmp gave %q", key, p.Writes["/tmp"])
		case (p.Writes["/var/lib/x"] == "ok") != (key == "web1-sensor"):
			t.Errorf("%s: writing /var/lib/x gave %q", key, p.Writes["/var/lib/x"])
		}
		for who, status := range map[string]map[string]string{"exec": p.Self, "pid 1": p.Init} {
			for _, set := range []string{"CapEff", "CapPrm", "CapBnd"} {
				if v, err := strconv.ParseUint(status[set], 16, 64); err != nil || v != w.capMask {
					t.Errorf("%s: %s %s = %q, want %016x", key, who, set, status[set], w.capMask)
				}
			}
			if status["NoNewPrivs"] != "1" {
				t.Errorf("%s: %s NoNewPrivs = %q", key, who, status["NoNewPrivs"])
			}
		}
	}
	// The compose files carry the profile: loaded as the compose CLI
	// loads them, every service has the rendered settings.
	opts, err := cli.NewProjectOptions([]string{filepath.Join(dir, fleet, "compose.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	fromFile, err := opts.LoadProject(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := m.Project(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for key, r := range rendered.Services {
		f := fromFile.Services[key]
		if f.Restart != r.Restart || f.ReadOnly != r.ReadOnly || f.PidsLimit != r.PidsLimit || f.MemLimit != r.MemLimit ||
			f.MemSwapLimit != r.MemSwapLimit || !slices.Equal(f.CapDrop, r.CapDrop) || !slices.Equal(f.CapAdd, r.CapAdd) ||
			!slices.Equal(f.SecurityOpt, r.SecurityOpt) || !slices.Equal(f.Tmpfs, r.Tmpfs) {
			t.Errorf("%s: the compose file says %+v, rendered %+v", key, f, r)
		}
	}
	if s := rendered.Services["web1-sensor"]; !slices.Equal(s.CapAdd, []string{"NET_ADMIN"}) || s.PidsLimit != 100 {
		t.Errorf("sensor rendered with cap_add %v, pids_limit %d", s.CapAdd, s.PidsLimit)
	}

	// A fork bomb stops at the pids limit; the container, its neighbours
	// and the engine live on.
	ip := ipOf(t, api, got["web1"].ID)
	var bomb struct {
		Forked int
		Errno  int
		Err    string
	}
	execJSON(t, api, got["web1-sensor"].ID, &bomb, testimage.ModeForkBomb, "2000")
	if bomb.Errno != 11 || bomb.Forked >= 100 || bomb.Forked < 50 {
		t.Errorf("fork bomb under pids_limit 100: %+v, want EAGAIN after fewer than 100 forks", bomb)
	}
	if _, err := api.Ping(ctx, client.PingOptions{}); err != nil {
		t.Fatalf("engine after the fork bomb: %v", err)
	}
	if got := readBanner(t, net.JoinHostPort(ip, "2222")); got != "SSH-2.0-hardened web1" {
		t.Errorf("sensor after the fork bomb: %q", got)
	}

	// The main process killed from inside comes back by itself (the
	// restart policy): same container, restarted once, serving again.
	ssh := got["web1-ssh"]
	execJSON(t, api, ssh.ID, nil, testimage.ModeKill1)
	waitRestarted(t, api, "ssh", ssh)
	if got := readBanner(t, net.JoinHostPort(ip, "22")); got != "SSH-2.0-hardened web1" {
		t.Errorf("ssh after its restart: %q", got)
	}
	rep, err = m.Reconcile(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Changed() != 0 {
		t.Errorf("reconcile after the engine restarted ssh changed %d: %+v", rep.Changed(), rep.Containers)
	}
	after := containers(t, api, fleet)
	for _, key := range []string{"web1-ssh", "web1-sensor"} { // restarted by the engine (the sensor, maybe, by the fork bomb)
		if after[key].ID != got[key].ID || after[key].State != "running" {
			t.Errorf("%s was recreated or is not running: %+v", key, after[key])
		}
		delete(got, key)
	}
	assertUntouched(t, got, after)

	// The base killed from inside comes back by itself too, in a new
	// network namespace: its services, still running in the old one, no
	// longer answer on the decky's IP. Reconcile finds them diverged and
	// recreates them (and them only) into the base's namespace.
	execJSON(t, api, after["web1"].ID, nil, testimage.ModeKill1)
	waitRestarted(t, api, "the base", after["web1"])
	rep, err = m.Reconcile(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Containers {
		wantFound, wantAction := "running (diverged)", sl.ActionRecreated
		if c.Service == "web1" {
			wantFound, wantAction = "running", sl.ActionNone
		}
		if c.Found != wantFound || c.Action != wantAction {
			t.Errorf("reconcile after the base restarted: %s found %q, %s; want %q, %s", c.Service, c.Found, c.Action, wantFound, wantAction)
		}
	}
	if got := readBanner(t, net.JoinHostPort(ipOf(t, api, after["web1"].ID), "22")); got != "SSH-2.0-hardened web1" {
		t.Errorf("ssh after its base restarted and Reconcile: %q", got)
	}
	if rep, err := m.Reconcile(ctx, ""); err != nil || rep.Changed() != 0 {
		t.Errorf("second reconcile after the base restarted: %v, changed %+v", err, rep.Containers)
	}

	// The compose v2 CLI agrees with the hardened files: `docker compose
	// config` accepts them and `up -d` on them recreates nothing.
	t.Run("compose CLI", func(t *testing.T) {
		cli := composecli.Require(t)
		before := containers(t, api, fleet)
		file := filepath.Join(dir, fleet, "compose.yaml")
		for _, args := range [][]string{{"config", "--quiet"}, {"up", "-d"}} {
			if out, err := cli.Run(ctx, api.DaemonHost(), fleet, file, args...); err != nil {
				t.Fatalf("compose %v: %v\n%s", args, err, out)
			}
		}
		after := containers(t, api, fleet)
		assertUntouched(t, before, after)
		if len(after) != len(before) {
			t.Errorf("compose CLI up -d: %d containers, %d before", len(after), len(before))
		}
	})
}

// waitRestarted waits until the engine has restarted container c by its
// restart policy and it runs again.
func waitRestarted(t *testing.T, api client.APIClient, what string, c box) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		in, err := api.ContainerInspect(t.Context(), c.ID, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		st := in.Container.State
		if in.Container.RestartCount >= 1 && st.Running && !st.Restarting && st.StartedAt != c.StartedAt {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not back 30 s after its main process was killed: %+v, restarts %d", what, st, in.Container.RestartCount)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// probe is what testimage.ModeProbe prints.
type probe struct {
	UID    int
	Writes map[string]string
	Self   map[string]string
	Init   map[string]string
}

// normCaps returns caps without their "CAP_" prefix added back uniformly
// (the engine may report either form), sorted; nil for none.
func normCaps(caps []string) []string {
	var out []string
	for _, c := range caps {
		out = append(out, "CAP_"+strings.TrimPrefix(strings.ToUpper(c), "CAP_"))
	}
	slices.Sort(out)
	return out
}

// execJSON runs the test program in container id with args and decodes
// its standard output into v (unless v is nil); it must exit 0.
func execJSON(t *testing.T, api client.APIClient, id string, v any, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	ex, err := api.ExecCreate(ctx, id, client.ExecCreateOptions{Cmd: append([]string{"/app"}, args...), AttachStdout: true, AttachStderr: true})
	if err != nil {
		t.Fatalf("exec %v: %v", args, err)
	}
	att, err := api.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		t.Fatalf("exec %v: %v", args, err)
	}
	defer att.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, att.Reader); err != nil {
		t.Fatalf("exec %v: %v", args, err)
	}
	res, err := api.ExecInspect(ctx, ex.ID, client.ExecInspectOptions{})
	if err != nil {
		t.Fatalf("exec %v: %v", args, err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("exec %v: exit %d: %s%s", args, res.ExitCode, stdout.Bytes(), stderr.Bytes())
	}
	if v != nil {
		if err := json.Unmarshal(stdout.Bytes(), v); err != nil {
			t.Fatalf("exec %v: %v: %s", args, err, stdout.Bytes())
		}
	}
}
