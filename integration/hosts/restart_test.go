package hosts_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"

	sl "github.com/decnet/servicelive"
	"github.com/decnet/servicelive/dockercompose"
)

// TestEngineRestartOnSecondHost: issue 12's promise, on the second engine.
// A decky with a service runs on host B; B's dockerd stops (it stops the
// containers) and starts again. The engine starts the base and its service
// again by itself (restart policy unless-stopped): same containers, running.
// Reconcile then recreates only a service stranded in a former network
// namespace of its base (the lister marks it diverged), if the engine left
// one so; a second Reconcile changes nothing; the service answers on the
// decky's IP (dialled from inside B's network namespace, where its
// networks' bridges are). Then the base alone restarts (as its restart
// policy does when its process dies), which strands the service for sure:
// Reconcile recreates the service only.
func TestEngineRestartOnSecondHost(t *testing.T) {
	e := newEngines(t)
	hostB := e.daemon.Host
	project := randomName("slrestart")
	store := sl.NewMemoryStore(map[string][]sl.Decky{"": {{Name: "r1", Image: e.image, Services: []string{"ssh"}, Host: hostB}}})
	hosts, err := dockercompose.NewHosts(nil, dockercompose.WithHost(e.mainSocket), dockercompose.WithKnownHosts(""))
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
		removeProject(ctx, t, e.b, project)
		hosts.Close()
	})
	ctx := t.Context()
	if err := m.Deploy(ctx, ""); err != nil {
		t.Fatal(err)
	}
	before := assertKeys(t, "B", e.b, project, "r1", "r1-ssh")
	for key, b := range before {
		in := inspect(t, e.b, b.ID)
		if p := in.HostConfig.RestartPolicy.Name; p != "unless-stopped" {
			t.Fatalf("%s: restart policy %q", key, p)
		}
	}
	t.Logf("before: r1 %s started %s, r1-ssh %s started %s", short(before["r1"].ID), before["r1"].StartedAt, short(before["r1-ssh"].ID), before["r1-ssh"].StartedAt)

	t0 := time.Now()
	if err := e.daemon.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := e.daemon.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("B stopped and answering again in %v", time.Since(t0).Round(time.Millisecond))
	b, err := e.daemon.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	// The engine restarts both by itself.
	var after map[string]box
	deadline := time.Now().Add(60 * time.Second)
	for {
		after = containers(t, b, project)
		if after["r1"].State == "running" && after["r1-ssh"].State == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("60 s after B's restart: %+v", after)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("both running again %v after B's stop began", time.Since(t0).Round(time.Millisecond))
	for _, key := range []string{"r1", "r1-ssh"} {
		if after[key].ID != before[key].ID {
			t.Errorf("%s: container %s after the restart, %s before", key, short(after[key].ID), short(before[key].ID))
		}
		in := inspect(t, b, after[key].ID)
		t.Logf("after: %s %s, started %s (was %s), restart count %d, network mode %s, netns %s",
			key, in.State.Status, in.State.StartedAt, before[key].StartedAt, in.RestartCount, in.HostConfig.NetworkMode, netns(t, in.State.Pid))
	}
	stranded := netns(t, inspect(t, b, after["r1"].ID).State.Pid) != netns(t, inspect(t, b, after["r1-ssh"].ID).State.Pid)
	t.Logf("r1-ssh stranded in a former namespace of r1: %v", stranded)

	// Reconcile: only a stranded service is recreated.
	rep, err := m.Reconcile(ctx, "")
	if err != nil {
		t.Fatalf("reconcile after B's restart: %v (%+v)", err, rep.Containers)
	}
	for _, c := range rep.Containers {
		t.Logf("reconcile: %s on %q found %q: %s", c.Service, c.Host, c.Found, c.Action)
		want := sl.ActionNone
		if c.Service == "r1-ssh" && stranded {
			want = sl.ActionRecreated
		}
		if c.Action != want {
			t.Errorf("reconcile: %s %s, want %s", c.Service, c.Action, want)
		}
	}
	if rep, err := m.Reconcile(ctx, ""); err != nil || rep.Changed() != 0 {
		t.Fatalf("second reconcile: changed %d, %v: %+v", rep.Changed(), err, rep.Containers)
	}
	final := assertKeys(t, "B", b, project, "r1", "r1-ssh")
	if final["r1"].ID != before["r1"].ID {
		t.Errorf("r1 replaced")
	}

	// The base alone restarted on B strands its service for sure: Reconcile
	// recreates the service only, then nothing.
	if _, err := b.ContainerRestart(ctx, final["r1"].ID, client.ContainerRestartOptions{}); err != nil {
		t.Fatal(err)
	}
	if base, svc := inspect(t, b, final["r1"].ID), inspect(t, b, final["r1-ssh"].ID); !svc.State.Running || netns(t, base.State.Pid) == netns(t, svc.State.Pid) {
		t.Fatalf("r1-ssh after r1's restart: running %v, in r1's namespace", svc.State.Running)
	}
	rep, err = m.Reconcile(ctx, "")
	if err != nil || rep.Changed() != 1 {
		t.Fatalf("reconcile of a stranded service: changed %d, %v: %+v", rep.Changed(), err, rep.Containers)
	}
	for _, c := range rep.Containers {
		if c.Action != map[bool]sl.Action{true: sl.ActionRecreated, false: sl.ActionNone}[c.Service == "r1-ssh"] {
			t.Errorf("reconcile of a stranded service: %s found %q: %s", c.Service, c.Found, c.Action)
		}
	}
	if rep, err := m.Reconcile(ctx, ""); err != nil || rep.Changed() != 0 {
		t.Fatalf("reconcile after the repair: changed %d, %v: %+v", rep.Changed(), err, rep.Containers)
	}
	final = assertKeys(t, "B", b, project, "r1", "r1-ssh")
	base, svc := inspect(t, b, final["r1"].ID), inspect(t, b, final["r1-ssh"].ID)
	if netns(t, base.State.Pid) != netns(t, svc.State.Pid) {
		t.Fatalf("r1-ssh is not in r1's network namespace after Reconcile")
	}

	// The service answers on the decky's IP, from B's network namespace.
	var ip string
	for _, n := range base.NetworkSettings.Networks {
		if n.IPAddress.IsValid() {
			ip = n.IPAddress.String()
		}
	}
	if ip == "" {
		t.Fatalf("r1 has no IP: %+v", base.NetworkSettings.Networks)
	}
	pid, err := os.ReadFile(filepath.Join(e.daemon.Dir, "docker.pid"))
	if err != nil {
		t.Fatal(err)
	}
	// The recreated service may not listen yet: a refused dial is tried
	// again for a while.
	var banner string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		banner, err = dialInNetns(fmt.Sprintf("/proc/%s/ns/net", strings.TrimSpace(string(pid))), net.JoinHostPort(ip, "2222"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("r1-ssh at %s:2222: %v", ip, err)
		}
	}
	if want := "SSH-2.0-hosts r1"; strings.TrimSpace(banner) != want {
		t.Errorf("banner %q, want %q", banner, want)
	}
}

func short(id string) string { return id[:min(12, len(id))] }

// inspect returns the Engine API's view of container id.
func inspect(t *testing.T, api client.APIClient, id string) container.InspectResponse {
	t.Helper()
	res, err := api.ContainerInspect(t.Context(), id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res.Container
}

// netns returns the network namespace of process pid, as its /proc link
// reads ("net:[<inode>]").
func netns(t *testing.T, pid int) string {
	t.Helper()
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// dialInNetns connects to addr from the network namespace at nsPath and
// returns the first line it reads.
func dialInNetns(nsPath, addr string) (string, error) {
	type result struct {
		line string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		// Never unlocked: the thread, moved to another namespace, ends
		// with this goroutine.
		runtime.LockOSThread()
		line, err := func() (string, error) {
			f, err := os.Open(nsPath)
			if err != nil {
				return "", err
			}
			defer f.Close()
			if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
				return "", fmt.Errorf("setns: %w", err)
			}
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				return "", err
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			return bufio.NewReader(conn).ReadString('\n')
		}()
		ch <- result{line, err}
	}()
	r := <-ch
	return r.line, r.err
}
