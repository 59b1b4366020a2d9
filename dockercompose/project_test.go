package dockercompose_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/dockercompose"
	"github.com/decnet/servicelive/internal/testimage"
)

// externalNetwork creates a bridge network with a /24 subnet (so containers
// can get static addresses) and removes it at the end of the test. It
// returns its name and the subnet's prefix ("10.231.7.").
func externalNetwork(t *testing.T, c client.APIClient) (string, string) {
	t.Helper()
	ctx := t.Context()
	for range 20 {
		b := make([]byte, 2)
		_, _ = rand.Read(b)
		prefix := fmt.Sprintf("10.%d.%d.", 200+int(b[0])%50, b[1])
		name := fmt.Sprintf("sltest_ext_%x", b)
		sub := netip.MustParsePrefix(prefix + "0/24")
		res, err := c.NetworkCreate(ctx, name, client.NetworkCreateOptions{
			Driver: "bridge",
			IPAM:   &network.IPAM{Config: []network.IPAMConfig{{Subnet: sub}}},
		})
		if err != nil {
			t.Logf("network %s on %s: %v", name, sub, err)
			continue
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if _, err := c.NetworkRemove(ctx, res.ID, client.NetworkRemoveOptions{}); err != nil && !errdefs.IsNotFound(err) {
				t.Logf("cleanup network %s: %v", name, err)
			}
		})
		return name, prefix
	}
	t.Fatal("no free subnet for an external network")
	return "", ""
}

func TestRemoveProject(t *testing.T) {
	t.Parallel()
	api, image := engine(t)
	ctx := t.Context()
	c := newComposer(t)
	ext, prefix := externalNetwork(t, api)

	// Project one: a base on an external network at a fixed address, a base
	// on the project's default network, a service on each.
	one := uniqueProject(t, api)
	p1 := newProject(one)
	addBase(p1, "web1", image, ext, prefix+"10")
	addBase(p1, "web2", image, "", "")
	s1 := addService(p1, "web1", "ssh", image, testimage.ModeBanner, nil)
	s2 := addService(p1, "web2", "ssh", image, testimage.ModeBanner, nil)
	for _, s := range []string{"web1", "web2", s1, s2} {
		require.NoError(t, c.Up(ctx, p1, s))
	}
	assert.Equal(t, prefix+"10", ipOf(t, api, one+".web1"))

	// Project two, on its own default network.
	two := uniqueProject(t, api)
	p2 := newProject(two)
	addBase(p2, "web1", image, "", "")
	require.NoError(t, c.Up(ctx, p2, "web1"))
	other := identityOf(t, api, two+".web1")

	require.NoError(t, c.RemoveProject(ctx, p1))
	assert.Empty(t, projectContainers(t, api, one))
	_, err := api.NetworkInspect(ctx, one+"_default", client.NetworkInspectOptions{})
	assert.True(t, errdefs.IsNotFound(err), "the project's network is removed: %v", err)
	_, err = api.NetworkInspect(ctx, ext, client.NetworkInspectOptions{})
	assert.NoError(t, err, "the external network stays")
	_, err = api.NetworkInspect(ctx, two+"_default", client.NetworkInspectOptions{})
	assert.NoError(t, err, "the other project's network stays")
	assert.Equal(t, other, identityOf(t, api, two+".web1"), "the other project is untouched")

	require.NoError(t, c.RemoveProject(ctx, p1), "nothing left to remove")

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	assert.ErrorIs(t, c.RemoveProject(cancelled, p2), context.Canceled)
	assert.Equal(t, other, identityOf(t, api, two+".web1"))
}

// TestConcurrentUps brings up ten deckies of one project at once (their
// bases racing to create the project's network), then a service on each,
// then takes the services down, all at once.
func TestConcurrentUps(t *testing.T) {
	t.Parallel()
	api, image := engine(t)
	ctx := t.Context()
	c := newComposer(t)
	name := uniqueProject(t, api)

	const n = 10
	p := newProject(name)
	keys := make([]string, n)
	for i := range n {
		decky := fmt.Sprintf("web%d", i)
		addBase(p, decky, image, "", "")
		keys[i] = addService(p, decky, "ssh", image, testimage.ModeBanner, nil)
	}
	all := func(fn func(i int) error) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { errs[i] = fn(i) })
		}
		wg.Wait()
		for _, err := range errs {
			require.NoError(t, err)
		}
	}

	start := time.Now()
	all(func(i int) error { return c.Up(ctx, p, fmt.Sprintf("web%d", i)) })
	t.Logf("%d bases in %v", n, time.Since(start))
	start = time.Now()
	all(func(i int) error { return c.Up(ctx, p, keys[i]) })
	t.Logf("%d services in %v", n, time.Since(start))

	ctrs := projectContainers(t, api, name)
	assert.Len(t, ctrs, 2*n)
	for _, ctr := range ctrs {
		assert.Equal(t, "running", string(ctr.State), ctr.Names)
	}
	nets, err := api.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("name", name+"_default")})
	require.NoError(t, err)
	assert.Len(t, nets.Items, 1, "one default network, not one per racing Up")

	start = time.Now()
	all(func(i int) error { return c.Down(ctx, p, keys[i]) })
	t.Logf("%d services down in %v", n, time.Since(start))
	for i := range n {
		assert.Empty(t, serviceContainers(t, api, name, keys[i]))
		assert.Equal(t, servicelive.ServiceKey(fmt.Sprintf("web%d", i), "ssh"), keys[i])
	}
	assert.Len(t, projectContainers(t, api, name), n, "the bases stay")
}

// TestPublishedPorts brings up deckies publishing a port on a host port the
// engine picks, concurrently: each gets its own, and the banner answers there.
func TestPublishedPorts(t *testing.T) {
	t.Parallel()
	api, image := engine(t)
	ctx := t.Context()
	c := newComposer(t)
	name := uniqueProject(t, api)

	const n = 4
	p := newProject(name)
	for i := range n {
		decky := fmt.Sprintf("web%d", i)
		addBase(p, decky, image, "", "")
		s := p.Services[decky]
		s.Command = testimage.Command(testimage.ModeBanner)
		s.Ports = []types.ServicePortConfig{{Target: testimage.DefaultPort, Protocol: "tcp", HostIP: "127.0.0.1"}}
		p.Services[decky] = s
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { assert.NoError(t, c.Up(ctx, p, fmt.Sprintf("web%d", i))) })
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		in := inspect(t, api, fmt.Sprintf("%s.web%d", name, i))
		var hostPort string
		for _, bindings := range in.NetworkSettings.Ports {
			for _, b := range bindings {
				hostPort = b.HostPort
			}
		}
		require.NotEmpty(t, hostPort, "web%d publishes its port", i)
		assert.False(t, seen[hostPort], "host port %s given twice", hostPort)
		seen[hostPort] = true
		assert.Equal(t, testimage.Banner, readBanner(t, net.JoinHostPort("127.0.0.1", hostPort)))
	}
}

// TestRemoveProjectOrder: RemoveProject removes a decky's services (which
// join their base's network namespace) before the base, as `docker compose
// down` does, and waits out a network the engine refuses for a moment
// (here: an outsider's endpoint, disconnected shortly after).
func TestRemoveProjectOrder(t *testing.T) {
	t.Parallel()
	api, image := engine(t)
	ctx := t.Context()
	var (
		mu      sync.Mutex
		deletes []string // container names or IDs, in request order
	)
	hooked, err := client.New(client.FromEnv, client.WithHTTPRequestHook(func(r *http.Request) error {
		if r.Method == http.MethodDelete && strings.Contains(r.URL.Path, "/containers/") {
			mu.Lock()
			deletes = append(deletes, path.Base(r.URL.Path))
			mu.Unlock()
		}
		return nil
	}))
	require.NoError(t, err)
	t.Cleanup(func() { _ = hooked.Close() })
	c := newComposer(t, dockercompose.WithAPIClient(hooked))

	name := uniqueProject(t, api)
	p := newProject(name)
	addBase(p, "web1", image, "", "")
	ssh := addService(p, "web1", "ssh", image, testimage.ModeBanner, nil)
	for _, s := range []string{"web1", ssh} {
		require.NoError(t, c.Up(ctx, p, s))
	}
	base, svc := inspect(t, api, name+".web1").ID, inspect(t, api, name+".web1.ssh").ID

	// An outsider (no project label) holds an endpoint on the project's
	// network for 300 ms after RemoveProject starts.
	out, err := api.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config:     &container.Config{Image: image, Cmd: testimage.Command(testimage.ModeBase)},
		HostConfig: &container.HostConfig{NetworkMode: container.NetworkMode(name + "_default")},
		Name:       name + "-outsider",
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = api.ContainerRemove(context.Background(), out.ID, client.ContainerRemoveOptions{Force: true})
	})
	_, err = api.ContainerStart(ctx, out.ID, client.ContainerStartOptions{})
	require.NoError(t, err)
	go func() {
		time.Sleep(300 * time.Millisecond)
		_, _ = api.NetworkDisconnect(context.Background(), name+"_default", client.NetworkDisconnectOptions{Container: out.ID, Force: true})
	}()

	require.NoError(t, c.RemoveProject(ctx, p), "the network is removed once the outsider has left")
	_, err = api.NetworkInspect(ctx, name+"_default", client.NetworkInspectOptions{})
	assert.True(t, errdefs.IsNotFound(err), "the project's network is removed: %v", err)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{svc, base}, deletes, "the service before its base")
}
