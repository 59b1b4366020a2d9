package dockercompose_test

import (
	"bufio"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

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

func TestUpMissingImage(t *testing.T) {
	t.Parallel()
	api, image := engine(t)
	ctx := t.Context()
	c := newComposer(t)
	name := uniqueProject(t, api)

	p := newProject(name)
	addBase(p, "web1", image, "", "")
	missing := addService(p, "web1", "missing", "servicelive-missing:does-not-exist", testimage.ModeBanner, nil)
	require.NoError(t, c.Up(ctx, p, "web1"))

	start := time.Now()
	err := c.Up(ctx, p, missing)
	require.Error(t, err)
	t.Logf("%v (after %v)", err, time.Since(start))
	assert.Contains(t, err.Error(), "servicelive-missing")
	assert.Empty(t, serviceContainers(t, api, name, missing), "no container left behind")
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

	// Renamed behind its back.
	_, err = api.ContainerRename(ctx, name+".web1.ssh", client.ContainerRenameOptions{NewName: name + ".renamed"})
	require.NoError(t, err)
	require.NoError(t, c.Up(ctx, p, ssh))
	ctrs := serviceContainers(t, api, name, ssh)
	require.NotEmpty(t, ctrs)
	for _, ctr := range ctrs {
		assert.Equal(t, "running", string(ctr.State), ctr.Names)
	}
	require.NoError(t, c.Down(ctx, p, ssh))
	assert.Empty(t, serviceContainers(t, api, name, ssh))
}
