package dockercompose_test

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/compose/v5/pkg/compose"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/dockercompose"
)

// The host a Manager renders is a service extension, which the Compose
// SDK's configuration hash leaves out: rendering it does not make the
// containers of an existing deployment diverge.
func TestConfigHashIgnoresHost(t *testing.T) {
	s := types.ServiceConfig{Name: "web1"}
	s.Image, s.NetworkMode = "img", "service:base"
	h1, err := compose.ServiceHash(s)
	if err != nil {
		t.Fatal(err)
	}
	s.Extensions = types.Extensions{"x-servicelive-host": "site-b"}
	h2, err := compose.ServiceHash(s)
	if err != nil {
		t.Fatal(err)
	}
	if h1 != h2 {
		t.Fatalf("the host changes the config hash: %s vs %s", h1, h2)
	}
}

func TestHostsResolveOncePerHost(t *testing.T) {
	api, _ := engine(t)
	var calls atomic.Int32
	resolve := func(host string) ([]dockercompose.Option, error) {
		calls.Add(1)
		switch host {
		case "site-b":
			return []dockercompose.Option{dockercompose.WithHost(api.DaemonHost())}, nil
		default:
			return nil, errors.New("unknown host")
		}
	}
	// The common options name a context that does not exist: the default
	// host fails, site-b's own endpoint replaces it.
	h, err := dockercompose.NewHosts(resolve, dockercompose.WithContext("sltest-no-such-context"), dockercompose.WithStopTimeout(0))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if c, err := h.Engine("site-b"); err != nil || c.Client().DaemonHost() != api.DaemonHost() {
				t.Errorf("site-b: %v", err)
			}
		})
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("resolve called %d times for one host", n)
	}
	var he *servicelive.HostError
	if _, err := h.Engine(""); !errors.As(err, &he) || he.Host != "" {
		t.Errorf("default host with an unknown context: %v", err)
	}
	if calls.Load() != 1 {
		t.Error("resolve called for the default host")
	}

	// A host resolve refuses: every call routed there is a HostError naming it.
	p := &types.Project{Name: "sltest", Services: types.Services{"x1": {Name: "x1", Extensions: types.Extensions{"x-servicelive-host": "site-x"}}}}
	err = h.Up(context.Background(), p, "x1")
	if !errors.As(err, &he) || he.Host != "site-x" {
		t.Errorf("up on an unknown host: %v", err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Engine("site-b"); err == nil {
		t.Error("engine after close")
	}
	if calls.Load() != 2 {
		t.Errorf("resolve calls %d", calls.Load())
	}
}

// A host that fails to open is tried again by the next call: a resolve
// that failed (a context created later), an engine that did not answer
// (started later). Once open, it is never resolved again; callers that
// arrive during an attempt share it.
func TestHostsOpenFailureNotKept(t *testing.T) {
	api, _ := engine(t)
	sock := filepath.Join(t.TempDir(), "late.sock")
	var calls atomic.Int32
	ready := atomic.Bool{}
	release := make(chan struct{})
	resolve := func(host string) ([]dockercompose.Option, error) {
		calls.Add(1)
		switch host {
		case "later":
			if !ready.Load() {
				return nil, errors.New("no such context yet")
			}
			return []dockercompose.Option{dockercompose.WithHost(api.DaemonHost())}, nil
		case "late-engine":
			return []dockercompose.Option{dockercompose.WithHost("unix://" + sock)}, nil
		case "slow":
			<-release
			return nil, errors.New("slow and failing")
		}
		return nil, errors.New("unknown host")
	}
	h, err := dockercompose.NewHosts(resolve)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var he *servicelive.HostError
	if _, err := h.Engine("later"); !errors.As(err, &he) || he.Host != "later" {
		t.Fatalf("first open of later: %v", err)
	}
	ready.Store(true)
	if _, err := h.Engine("later"); err != nil {
		t.Fatalf("later, once resolvable: %v", err)
	}
	n := calls.Load()
	if _, err := h.Engine("later"); err != nil || calls.Load() != n {
		t.Errorf("an open host resolved again (%d calls): %v", calls.Load()-n, err)
	}

	// No engine at the socket yet: the open fails (the engine is asked who
	// it is); once a proxy of the local engine listens there, it opens. (A
	// Hosts of its own: in h, it would be an alias of "later", the same
	// engine, and share its connection.)
	h2, err := dockercompose.NewHosts(resolve)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	if _, err := h2.Engine("late-engine"); !errors.As(err, &he) || he.Host != "late-engine" {
		t.Fatalf("late-engine before its engine: %v", err)
	}
	stop := proxyUnix(t, sock, strings.TrimPrefix(api.DaemonHost(), "unix://"))
	if _, err := h2.Engine("late-engine"); err != nil {
		t.Fatalf("late-engine once its engine answers: %v", err)
	}

	// An opened host that no service of a project names is still listed
	// and cleared: when it is down, Containers and RemoveProject fail,
	// naming it (Teardown cannot say the scope is gone from there).
	stop()
	p := &types.Project{Name: uniqueProject(t, api), Services: types.Services{}}
	if _, err := h2.Containers(context.Background(), p); !errors.As(err, &he) || he.Host != "late-engine" {
		t.Errorf("containers with an opened host down: %v", err)
	}
	if err := h2.RemoveProject(context.Background(), p); !errors.As(err, &he) || he.Host != "late-engine" {
		t.Errorf("remove project with an opened host down: %v", err)
	}

	// Callers arriving while an attempt runs share it (and its failure).
	n = calls.Load()
	var wg sync.WaitGroup
	var started atomic.Int32
	for range 10 {
		wg.Go(func() {
			started.Add(1)
			if _, err := h.Engine("slow"); err == nil {
				t.Error("slow opened")
			}
		})
	}
	for started.Load() < 10 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // all ten are waiting on the attempt
	close(release)
	wg.Wait()
	if got := calls.Load() - n; got != 1 {
		t.Errorf("slow resolved %d times by 10 concurrent callers", got)
	}
}

// Names of one engine are aliases: one Composer, the engine listed once,
// each container with its own service's host.
func TestHostsAliases(t *testing.T) {
	api, image := engine(t)
	sock := strings.TrimPrefix(api.DaemonHost(), "unix://")
	h, err := dockercompose.NewHosts(func(host string) ([]dockercompose.Option, error) {
		switch host {
		case "local":
			return []dockercompose.Option{dockercompose.WithHost(api.DaemonHost())}, nil
		case "double-slash":
			return []dockercompose.Option{dockercompose.WithHost("unix://" + filepath.Dir(sock) + "//" + filepath.Base(sock))}, nil
		}
		return nil, errors.New("unknown host")
	}, dockercompose.WithHost(api.DaemonHost()), dockercompose.WithStopTimeout(0))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	def, err := h.Engine("")
	if err != nil {
		t.Fatal(err)
	}
	for _, alias := range []string{"local", "double-slash"} {
		if c, err := h.Engine(alias); err != nil || c != def {
			t.Errorf("%s: %p, default %p, %v", alias, c, def, err)
		}
	}

	name := uniqueProject(t, api)
	p := newProject(name)
	addBase(p, "a1", image, "", "")
	addBase(p, "l1", image, "", "")
	for key, host := range map[string]string{"a1": "", "l1": "local"} {
		s := p.Services[key]
		if host != "" {
			s.Extensions = types.Extensions{"x-servicelive-host": host}
		}
		p.Services[key] = s
	}
	ctx := context.Background()
	for _, key := range []string{"a1", "l1"} {
		if err := h.Up(ctx, p, key); err != nil {
			t.Fatal(err)
		}
	}
	cs, err := h.Containers(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range cs {
		if _, dup := got[c.Service]; dup {
			t.Errorf("%s listed twice", c.Service)
		}
		got[c.Service] = c.Host
	}
	if len(got) != 2 || got["a1"] != "" || got["l1"] != "local" {
		t.Errorf("listed %v, want a1 on \"\", l1 on local", got)
	}
	if err := h.RemoveProject(ctx, p); err != nil {
		t.Fatal(err)
	}
	if left := projectContainers(t, api, name); len(left) != 0 {
		t.Errorf("left %d containers", len(left))
	}
}

// proxyUnix serves, at path, a proxy of the unix socket target until stop
// (which closes the connections too) or the end of the test.
func proxyUnix(t *testing.T, path, target string) (stop func()) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	stop = func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
		conns = nil
	}
	t.Cleanup(stop)
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, in)
			mu.Unlock()
			go func() {
				defer in.Close()
				out, err := net.Dial("unix", target)
				if err != nil {
					return
				}
				defer out.Close()
				go func() { _, _ = io.Copy(out, in) }()
				_, _ = io.Copy(in, out)
			}()
		}
	}()
	return stop
}

func TestResolveHost(t *testing.T) {
	for _, host := range []string{"unix:///run/b.sock", "tcp://10.0.0.2:2376", "ssh://ops@10.0.0.3"} {
		opts, err := dockercompose.ResolveHost(host)
		if err != nil || len(opts) != 1 {
			t.Fatalf("%s: %v", host, err)
		}
		c, err := dockercompose.New(opts...)
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		// An ssh:// engine is reached through the ssh command: its client's
		// host is a placeholder.
		if got := c.Client().DaemonHost(); got != host && host[:6] != "ssh://" {
			t.Errorf("%s reaches %s", host, got)
		}
		c.Close()
	}
	opts, _ := dockercompose.ResolveHost("sltest-no-such-context")
	if _, err := dockercompose.New(opts...); err == nil {
		t.Error("an unknown context name resolved")
	}
}

// BenchmarkHostsRouting is what Hosts adds to a call before the host's
// Composer runs it: the service's host, read from the project, and its
// Composer, looked up (opened before the loop).
func BenchmarkHostsRouting(b *testing.B) {
	api, _ := engine(b)
	h, err := dockercompose.NewHosts(func(string) ([]dockercompose.Option, error) {
		return []dockercompose.Option{dockercompose.WithHost(api.DaemonHost())}, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	svc := types.ServiceConfig{Name: "d1-ssh", Extensions: types.Extensions{"x-servicelive-host": "site-b"}}
	p := &types.Project{Name: "slbench", Services: types.Services{"d1-ssh": svc}}
	if _, err := h.Engine("site-b"); err != nil { // opened once, outside the loop
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.Engine(servicelive.ServiceHost(p.Services["d1-ssh"])); err != nil {
			b.Fatal(err)
		}
	}
}
