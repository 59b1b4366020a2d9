package dockercompose_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

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
	var calls atomic.Int32
	resolve := func(host string) ([]dockercompose.Option, error) {
		calls.Add(1)
		switch host {
		case "site-b":
			return []dockercompose.Option{dockercompose.WithHost("unix:///nonexistent/site-b.sock")}, nil
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
			if c, err := h.Engine("site-b"); err != nil || c.Client().DaemonHost() != "unix:///nonexistent/site-b.sock" {
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
// Composer, looked up (opened by the first iteration).
func BenchmarkHostsRouting(b *testing.B) {
	h, err := dockercompose.NewHosts(func(string) ([]dockercompose.Option, error) {
		return []dockercompose.Option{dockercompose.WithHost("unix:///nonexistent.sock")}, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	svc := types.ServiceConfig{Name: "d1-ssh", Extensions: types.Extensions{"x-servicelive-host": "site-b"}}
	p := &types.Project{Name: "slbench", Services: types.Services{"d1-ssh": svc}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.Engine(servicelive.ServiceHost(p.Services["d1-ssh"])); err != nil {
			b.Fatal(err)
		}
	}
}
