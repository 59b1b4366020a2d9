package dockercompose_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/cli/cli/command"
	"github.com/docker/cli/cli/context/docker"
	"github.com/docker/cli/cli/context/store"
	"github.com/moby/moby/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/decnet/servicelive/dockercompose"
	"github.com/decnet/servicelive/internal/testimage"
)

func TestNewOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []dockercompose.Option
		host string // the client's daemon host; "" means New fails
	}{
		{"unix socket", []dockercompose.Option{dockercompose.WithHost("unix:///tmp/sltest.sock")}, "unix:///tmp/sltest.sock"},
		{"tcp", []dockercompose.Option{dockercompose.WithHost("tcp://127.0.0.1:2375")}, "tcp://127.0.0.1:2375"},
		{"host:port means tcp", []dockercompose.Option{dockercompose.WithHost("127.0.0.1:2375")}, "tcp://127.0.0.1:2375"},
		{"ssh, not dialled by New", []dockercompose.Option{dockercompose.WithHost("ssh://sltest@example.invalid")}, "http://docker.example.com"},
		{"bad scheme", []dockercompose.Option{dockercompose.WithHost("bogus://x")}, ""},
		{"empty host", []dockercompose.Option{dockercompose.WithHost("")}, ""},
		{"unknown context", []dockercompose.Option{dockercompose.WithContext("nope")}, ""},
		{"host and context", []dockercompose.Option{dockercompose.WithHost("tcp://127.0.0.1:2375"), dockercompose.WithContext("default")}, ""},
		{"client and host", []dockercompose.Option{dockercompose.WithAPIClient(&client.Client{}), dockercompose.WithHost("tcp://127.0.0.1:2375")}, ""},
		{"nil client", []dockercompose.Option{dockercompose.WithAPIClient(nil)}, ""},
		{"negative stop timeout", []dockercompose.Option{dockercompose.WithStopTimeout(-time.Second)}, ""},
		{"zero wait timeout", []dockercompose.Option{dockercompose.WithWaitTimeout(0)}, ""},
		{"negative start grace", []dockercompose.Option{dockercompose.WithStartGrace(-time.Second)}, ""},
		{"everything else", []dockercompose.Option{
			dockercompose.WithHost("tcp://127.0.0.1:2375"),
			dockercompose.WithLogger(slog.New(slog.DiscardHandler)),
			dockercompose.WithProgress(func(dockercompose.Event) {}),
			dockercompose.WithStopTimeout(time.Second),
			dockercompose.WithWait(false),
			dockercompose.WithWaitTimeout(time.Second),
			dockercompose.WithStartGrace(time.Millisecond),
			nil,
		}, "tcp://127.0.0.1:2375"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dockercompose.New(tc.opts...)
			if tc.host == "" {
				require.Error(t, err)
				assert.True(t, strings.HasPrefix(err.Error(), "dockercompose: "), err.Error())
				t.Log(err)
				return
			}
			require.NoError(t, err)
			defer c.Close()
			assert.Equal(t, tc.host, c.Client().DaemonHost())
		})
	}
}

// TestNewFromEnvironment checks the default engine: DOCKER_HOST, else
// DOCKER_CONTEXT, else the local socket; a context from the store works and
// an unknown one is an error, never an exit.
func TestNewFromEnvironment(t *testing.T) {
	// Not parallel: it sets environment variables. The context store is
	// TestMain's (DOCKER_CONFIG is read once per process).
	t.Setenv("DOCKER_HOST", "tcp://127.0.0.1:2376")
	c, err := dockercompose.New()
	require.NoError(t, err)
	assert.Equal(t, "tcp://127.0.0.1:2376", c.Client().DaemonHost())
	require.NoError(t, c.Close())

	t.Setenv("DOCKER_HOST", "")
	c, err = dockercompose.New()
	require.NoError(t, err)
	assert.Equal(t, client.DefaultDockerHost, c.Client().DaemonHost())
	require.NoError(t, c.Close())

	t.Setenv("DOCKER_CONTEXT", "sltest-nope")
	_, err = dockercompose.New()
	require.ErrorContains(t, err, `"sltest-nope" not found`)

	// A context in the store.
	st := store.New(filepath.Join(os.Getenv("DOCKER_CONFIG"), "contexts"), command.DefaultContextStoreConfig())
	require.NoError(t, st.CreateOrUpdate(store.Metadata{
		Name:      "sltest-ctx",
		Metadata:  command.DockerContext{Description: "servicelive test"},
		Endpoints: map[string]any{docker.DockerEndpoint: docker.EndpointMeta{Host: "tcp://127.0.0.1:2377"}},
	}))
	t.Cleanup(func() { _ = st.Remove("sltest-ctx") })
	t.Setenv("DOCKER_CONTEXT", "sltest-ctx")
	c, err = dockercompose.New()
	require.NoError(t, err)
	assert.Equal(t, "tcp://127.0.0.1:2377", c.Client().DaemonHost())
	require.NoError(t, c.Close())
	t.Setenv("DOCKER_CONTEXT", "")
	c, err = dockercompose.New(dockercompose.WithContext("sltest-ctx"))
	require.NoError(t, err)
	assert.Equal(t, "tcp://127.0.0.1:2377", c.Client().DaemonHost())
	require.NoError(t, c.Close())
	_, err = dockercompose.New(dockercompose.WithContext("nope"))
	require.ErrorContains(t, err, `dockercompose: docker context "nope" not found`)
}

func TestBadCalls(t *testing.T) {
	t.Parallel()
	c, err := dockercompose.New(dockercompose.WithHost("tcp://127.0.0.1:1"))
	require.NoError(t, err)
	ctx := t.Context()
	p := newProject("sltest_bad")
	addBase(p, "web1", "servicelive-test:none", "", "")

	assert.ErrorContains(t, c.Up(ctx, nil, "web1"), "nil project")
	assert.ErrorContains(t, c.Up(ctx, p, "nope"), `no service "nope"`)
	assert.ErrorContains(t, c.Up(ctx, &types.Project{Services: p.Services}, "web1"), "no name")
	assert.ErrorContains(t, c.Down(ctx, p, ""), "empty service")
	assert.ErrorContains(t, c.RemoveProject(ctx, nil), "nil project")
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	assert.ErrorIs(t, c.Up(cancelled, p, "web1"), context.Canceled)
	assert.ErrorIs(t, c.Down(cancelled, p, "web1"), context.Canceled)

	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "Close twice")
	assert.ErrorContains(t, c.Up(ctx, p, "web1"), "closed")
	assert.ErrorContains(t, c.Down(ctx, p, "web1"), "closed")
	assert.ErrorContains(t, c.RemoveProject(ctx, p), "closed")
}

// TestNoGoroutineLeak runs a Composer through Up, Down, RemoveProject and
// Close and checks that every goroutine it started is gone.
func TestNoGoroutineLeak(t *testing.T) {
	// Not parallel, and goroutines already running (other tests paused by
	// t.Parallel, the test framework) are ignored: only what this test
	// starts counts.
	api, image := engine(t)
	opts := []goleak.Option{goleak.IgnoreCurrent()}
	ctx := t.Context()
	name := uniqueProject(t, api)
	func() {
		var events []dockercompose.Event
		var mu sync.Mutex
		c, err := dockercompose.New(
			dockercompose.WithStartGrace(10*time.Millisecond), // exercises the exit watch
			dockercompose.WithProgress(func(e dockercompose.Event) { mu.Lock(); events = append(events, e); mu.Unlock() }))
		require.NoError(t, err)
		p := newProject(name)
		addBase(p, "web1", image, "", "")
		key := addService(p, "web1", "ssh", image, testimage.ModeBanner, nil)
		require.NoError(t, c.Up(ctx, p, "web1"))
		require.NoError(t, c.Up(ctx, p, key))
		require.NoError(t, c.Down(ctx, p, key))
		require.NoError(t, c.RemoveProject(ctx, p))
		require.NoError(t, c.Close())
		mu.Lock()
		defer mu.Unlock()
		var texts []string
		for _, e := range events {
			if e.Service == key {
				texts = append(texts, e.Op+":"+e.Text)
			}
		}
		assert.Subset(t, texts, []string{"up:Creating", "up:Created", "up:Starting", "up:Started", "up:Running", "down:Stopping", "down:Removed"})
	}()
	goleak.VerifyNone(t, opts...)
}
