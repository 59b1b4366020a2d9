package dockercompose_test

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/dockercompose"
	"github.com/decnet/servicelive/internal/testimage"
)

// readBanner dials addr and returns the first line it sends.
func readBanner(t *testing.T, addr string) string {
	t.Helper()
	var line string
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if !assert.NoError(c, err) {
			return
		}
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		l, err := bufio.NewReader(conn).ReadString('\n')
		if assert.NoError(c, err) {
			line = l
		}
	}, 10*time.Second, 50*time.Millisecond)
	return line
}

func TestUpDown(t *testing.T) {
	t.Parallel()
	api, image := engine(t)
	ctx := t.Context()
	c := newComposer(t)
	name := uniqueProject(t, api)

	p := newProject(name)
	addBase(p, "web1", image, "", "")
	ssh := addService(p, "web1", "ssh", image, testimage.ModeBanner, nil)
	http := addService(p, "web1", "http", image, testimage.ModeBanner, map[string]string{"PORT": "8080", "BANNER": "HTTP/1.0 200 OK\r\n"})

	// The base, then a service sharing its network namespace.
	require.NoError(t, c.Up(ctx, p, "web1"))
	base := identityOf(t, api, name+".web1")
	require.NoError(t, c.Up(ctx, p, ssh))
	sshID := identityOf(t, api, name+".web1.ssh")
	assert.Empty(t, serviceContainers(t, api, name, http), "Up started only the service asked for")

	in := inspect(t, api, name+".web1.ssh")
	assert.True(t, in.State.Running)
	assert.Equal(t, "container:"+base.ID, string(in.HostConfig.NetworkMode))
	for k, v := range map[string]string{
		servicelive.LabelDecky:   "web1",
		servicelive.LabelService: "ssh",
		composeProject:           name,
		composeService:           ssh,
	} {
		assert.Equal(t, v, in.Config.Labels[k], "label %s", k)
	}
	ip := ipOf(t, api, name+".web1")
	assert.Equal(t, testimage.Banner, readBanner(t, net.JoinHostPort(ip, "2222")))

	// Another service: the others are untouched.
	require.NoError(t, c.Up(ctx, p, http))
	assert.Equal(t, "HTTP/1.0 200 OK\r\n", readBanner(t, net.JoinHostPort(ip, "8080")))
	assert.Equal(t, base, identityOf(t, api, name+".web1"))
	assert.Equal(t, sshID, identityOf(t, api, name+".web1.ssh"))

	// Up is idempotent: nothing recreated, nothing restarted.
	require.NoError(t, c.Up(ctx, p, ssh))
	require.NoError(t, c.Up(ctx, p, "web1"))
	assert.Equal(t, sshID, identityOf(t, api, name+".web1.ssh"))
	assert.Equal(t, base, identityOf(t, api, name+".web1"))

	// Down removes the service and only it; a second Down is a no-op.
	require.NoError(t, c.Down(ctx, p, ssh))
	assert.Empty(t, serviceContainers(t, api, name, ssh))
	require.NoError(t, c.Down(ctx, p, ssh))
	assert.Equal(t, base, identityOf(t, api, name+".web1"))
	assert.Len(t, serviceContainers(t, api, name, http), 1)
	assert.Equal(t, "HTTP/1.0 200 OK\r\n", readBanner(t, net.JoinHostPort(ip, "8080")))

	// The caller's project was not modified.
	assert.Empty(t, p.Services[ssh].CustomLabels["com.docker.compose.version"])
	assert.Nil(t, p.Networks["default"].CustomLabels)
}

func TestUpFailingService(t *testing.T) {
	t.Parallel()
	api, image := engine(t)
	ctx := t.Context()
	// The engine reports a process that exits at once as running for up to
	// ~150 ms after its start: a start grace catches it.
	c := newComposer(t, dockercompose.WithStartGrace(5*time.Second))
	name := uniqueProject(t, api)

	p := newProject(name)
	addBase(p, "web1", image, "", "")
	bad := addService(p, "web1", "bad", image, testimage.ModeFail, nil)
	require.NoError(t, newComposer(t).Up(ctx, p, "web1"))

	start := time.Now()
	err := c.Up(ctx, p, bad)
	require.Error(t, err)
	t.Logf("%v (after %v)", err, time.Since(start))
	assert.Less(t, time.Since(start), 5*time.Second, "an exit ends the grace")
	assert.Contains(t, err.Error(), testimage.FailMessage)
	assert.True(t, strings.HasPrefix(err.Error(), "dockercompose: up web1-bad in project "+name+": "), err.Error())
	var ce *dockercompose.ContainerError
	require.True(t, errors.As(err, &ce))
	assert.Equal(t, name+".web1.bad", ce.Container)
	assert.Equal(t, "exited", ce.State)
	assert.Equal(t, 1, ce.ExitCode)
	assert.Equal(t, []string{testimage.FailMessage}, ce.Logs)
	assert.Empty(t, serviceContainers(t, api, name, bad), "no container left behind")
	assert.True(t, inspect(t, api, name+".web1").State.Running, "the base is untouched")
}

func TestUpUnstartableService(t *testing.T) {
	t.Parallel()
	api, image := engine(t)
	ctx := t.Context()
	c := newComposer(t) // no start grace: the start itself fails
	name := uniqueProject(t, api)

	p := newProject(name)
	addBase(p, "web1", image, "", "")
	bad := addService(p, "web1", "bad", image, testimage.ModeBanner, nil)
	s := p.Services[bad]
	s.Entrypoint = []string{"/no/such/binary"}
	p.Services[bad] = s
	require.NoError(t, c.Up(ctx, p, "web1"))

	err := c.Up(ctx, p, bad)
	require.Error(t, err)
	t.Log(err)
	assert.Contains(t, err.Error(), "/no/such/binary")
	var ce *dockercompose.ContainerError
	require.True(t, errors.As(err, &ce))
	assert.Error(t, ce.Err, "the engine's error")
	assert.Empty(t, serviceContainers(t, api, name, bad), "no container left behind")
}

// TestUpMissingImage brings up services whose image the engine does not
// have and cannot pull: a *PullError carrying the engine's typed error
// (from a registry out of reach, or one that does not know the image),
// or, when the pull policy
// forbids the pull, a *MissingImageError. None is retried (as a container
// that vanished would be), and no container is left behind.
func TestUpMissingImage(t *testing.T) {
	t.Parallel()
	api, image := engine(t)
	ctx := t.Context()
	c, log := countingComposer(t)
	name := uniqueProject(t, api)

	p := newProject(name)
	addBase(p, "web1", image, "", "")
	require.NoError(t, c.Up(ctx, p, "web1"))

	up := func(key string) ([]string, error) {
		t.Helper()
		log.take()
		start := time.Now()
		err := c.Up(ctx, p, key)
		require.Error(t, err)
		t.Logf("%v (after %v)", err, time.Since(start))
		assert.Empty(t, serviceContainers(t, api, name, key), "no container left behind")
		return log.take(), err
	}
	count := func(calls []string, suffix string) int {
		n := 0
		for _, c := range calls {
			if strings.HasSuffix(c, suffix) {
				n++
			}
		}
		return n
	}

	// Not here, pulled from Docker Hub, out of reach.
	missing := addService(p, "web1", "missing", "servicelive-missing:does-not-exist", testimage.ModeBanner, nil)
	calls, err := up(missing)
	assert.Contains(t, err.Error(), "servicelive-missing")
	var pe *dockercompose.PullError
	require.True(t, errors.As(err, &pe), "%v", err)
	assert.Equal(t, "servicelive-missing:does-not-exist", pe.Image)
	assert.Error(t, pe.Err)
	assert.Equal(t, 1, count(calls, "POST /images/create"), "one pull, no retry: %v", calls)
	assert.Zero(t, count(calls, "POST /containers/create"), "%v", calls)

	// Not here, and the pull policy forbids a pull: the create is refused.
	never := addService(p, "web1", "never", "servicelive-missing:never", testimage.ModeBanner, nil)
	s := p.Services[never]
	s.PullPolicy = types.PullPolicyNever
	p.Services[never] = s
	calls, err = up(never)
	var me *dockercompose.MissingImageError
	require.True(t, errors.As(err, &me), "%v", err)
	assert.Equal(t, "servicelive-missing:never", me.Image)
	assert.True(t, errdefs.IsNotFound(err), "the engine's error: %v", err)
	assert.False(t, errors.As(err, &pe), "no pull")
	assert.Equal(t, 1, count(calls, "POST /containers/create"), "no retry: %v", calls)

	// A registry that does not know the image: the engine's 404 (a
	// "not found", as a vanished container's) is not retried either.
	if !strings.HasPrefix(api.DaemonHost(), "unix://") {
		t.Skip("a registry on this host is reachable only by a local engine")
	}
	var manifests atomic.Int32
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		if r.URL.Path == "/v2/" {
			w.WriteHeader(http.StatusOK)
			return
		}
		if strings.Contains(r.URL.Path, "/manifests/") {
			manifests.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`))
	}))
	t.Cleanup(reg.Close)
	ref := strings.TrimPrefix(reg.URL, "http://") + "/sltest/missing:latest"
	unknown := addService(p, "web1", "unknown", ref, testimage.ModeBanner, nil)
	calls, err = up(unknown)
	require.True(t, errors.As(err, &pe), "%v", err)
	assert.Equal(t, ref, pe.Image)
	// Docker 20.10 answers 500 (an internal error) for a manifest the
	// registry does not know; later engines may answer 404.
	assert.True(t, errdefs.IsInternal(pe.Err) || errdefs.IsNotFound(pe.Err), "the engine's error: %T %v", pe.Err, pe.Err)
	assert.Equal(t, 1, count(calls, "POST /images/create"), "one pull, no retry: %v", calls)
	assert.Positive(t, manifests.Load(), "the engine asked the registry")
}

// TestUpPortConflict brings up two services publishing the same host port:
// the second fails at its start with a *ContainerError carrying the
// engine's error (an internal error: the engine says which port only in
// its message), and its container is removed; the first is untouched.
func TestUpPortConflict(t *testing.T) {
	t.Parallel()
	api, image := engine(t)
	ctx := t.Context()
	c := newComposer(t)
	name := uniqueProject(t, api)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())

	p := newProject(name)
	for _, decky := range []string{"web1", "web2"} {
		addBase(p, decky, image, "", "")
		s := p.Services[decky]
		s.Ports = []types.ServicePortConfig{{Target: testimage.DefaultPort, Published: strconv.Itoa(port), Protocol: "tcp", HostIP: "127.0.0.1"}}
		p.Services[decky] = s
	}
	require.NoError(t, c.Up(ctx, p, "web1"))
	first := identityOf(t, api, name+".web1")

	err = c.Up(ctx, p, "web2")
	require.Error(t, err)
	t.Log(err)
	var ce *dockercompose.ContainerError
	require.True(t, errors.As(err, &ce), "%v", err)
	assert.Equal(t, name+".web2", ce.Container)
	require.Error(t, ce.Err, "the start failed")
	assert.True(t, errdefs.IsInternal(ce.Err), "the engine's error: %v", ce.Err)
	assert.True(t, ce.Removed)
	assert.Contains(t, err.Error(), strconv.Itoa(port))
	assert.Empty(t, serviceContainers(t, api, name, "web2"), "no container left behind")
	assert.Equal(t, first, identityOf(t, api, name+".web1"), "the first is untouched")
}

func TestUpStaleContainer(t *testing.T) {
	t.Parallel()
	api, image := engine(t)
	ctx := t.Context()
	c := newComposer(t)
	name := uniqueProject(t, api)

	p := newProject(name)
	addBase(p, "web1", image, "", "")
	ssh := addService(p, "web1", "ssh", image, testimage.ModeBanner, nil)
	require.NoError(t, c.Up(ctx, p, "web1"))

	// A stale leftover of the service holding its name, which the SDK does
	// not find (it has no configuration hash): removed and replaced. A
	// container that is not the service's is never removed (see
	// TestUpNameConflict).
	stale, err := api.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name + ".web1.ssh",
		Config: &container.Config{Image: image, Cmd: []string{"base"}, Labels: map[string]string{
			composeProject: name, composeService: ssh, "com.docker.compose.oneoff": "False",
		}},
	})
	require.NoError(t, err)
	require.NoError(t, c.Up(ctx, p, ssh))
	in := inspect(t, api, name+".web1.ssh")
	assert.True(t, in.State.Running)
	assert.NotEqual(t, stale.ID, in.ID, "the leftover was replaced")
	assert.Equal(t, ssh, in.Config.Labels[composeService])
	assert.NotEmpty(t, in.Config.Labels["com.docker.compose.config-hash"])

	// Removed behind the Composer's back.
	_, err = api.ContainerRemove(ctx, in.ID, client.ContainerRemoveOptions{Force: true})
	require.NoError(t, err)
	require.NoError(t, c.Up(ctx, p, ssh))
	assert.True(t, inspect(t, api, name+".web1.ssh").State.Running)

	// Stopped behind its back: Up starts it again.
	_, err = api.ContainerStop(ctx, name+".web1.ssh", client.ContainerStopOptions{})
	require.NoError(t, err)
	require.NoError(t, c.Up(ctx, p, ssh))
	assert.True(t, inspect(t, api, name+".web1.ssh").State.Running)

	// Renamed (and stopped: running, it would hold the service's port in
	// the base's namespace) behind its back: Up looks the service's
	// container up by its name, finds none and creates it; the renamed one
	// is left alone, and so is it by Down, which removes the container
	// holding the name. A Down with none under the name lists by label.
	_, err = api.ContainerRename(ctx, name+".web1.ssh", client.ContainerRenameOptions{NewName: name + ".renamed"})
	require.NoError(t, err)
	_, err = api.ContainerStop(ctx, name+".renamed", client.ContainerStopOptions{})
	require.NoError(t, err)
	require.NoError(t, c.Up(ctx, p, ssh))
	ctrs := serviceContainers(t, api, name, ssh)
	require.Len(t, ctrs, 2)
	assert.True(t, inspect(t, api, name+".web1.ssh").State.Running)
	require.NoError(t, c.Down(ctx, p, ssh))
	ctrs = serviceContainers(t, api, name, ssh)
	require.Len(t, ctrs, 1)
	assert.Equal(t, []string{"/" + name + ".renamed"}, ctrs[0].Names)
	// With nothing under the name, Down lists by label: the renamed one goes.
	require.NoError(t, c.Down(ctx, p, ssh))
	assert.Empty(t, serviceContainers(t, api, name, ssh))
}
