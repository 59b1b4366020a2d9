package dockercompose

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEngineHasBuildKit pins the engine side of the builder decision, the
// docker CLI's: BuildKit when the engine advertises it, else unless the
// engine runs Windows or is older than API 1.39.
func TestEngineHasBuildKit(t *testing.T) {
	for _, tc := range []struct {
		ping client.PingResult
		want bool
	}{
		{client.PingResult{OSType: "linux", APIVersion: "1.41"}, true}, // Docker 20.10: no Builder-Version header
		{client.PingResult{OSType: "linux", APIVersion: "1.41", BuilderVersion: "1"}, true},
		{client.PingResult{OSType: "windows", APIVersion: "1.41", BuilderVersion: "1"}, false},
		{client.PingResult{OSType: "windows", APIVersion: "1.44", BuilderVersion: "2"}, true},
		{client.PingResult{OSType: "linux", APIVersion: "1.38"}, false},
	} {
		assert.Equal(t, tc.want, engineHasBuildKit(tc.ping), "%+v", tc.ping)
	}
}

// TestBuildKitFromEnv: DOCKER_BUILDKIT as the docker CLI reads it, and
// WithBuildKit over it.
func TestBuildKitFromEnv(t *testing.T) {
	for v, want := range map[string]int{"": builderAuto, "1": builderBuildKit, "true": builderBuildKit, "0": builderClassic, "false": builderClassic} {
		t.Setenv("DOCKER_BUILDKIT", v)
		got, err := buildKitFromEnv()
		require.NoError(t, err)
		assert.Equal(t, want, got, "DOCKER_BUILDKIT=%q", v)
	}
	t.Setenv("DOCKER_BUILDKIT", "yes please")
	_, err := New(WithHost("unix:///nonexistent.sock"))
	require.ErrorContains(t, err, "DOCKER_BUILDKIT")
	c, err := New(WithHost("unix:///nonexistent.sock"), WithBuildKit(false))
	require.NoError(t, err)
	assert.Equal(t, builderClassic, c.cfg.builder)
	require.NoError(t, c.Close())
}

// TestBuilderPingHonoursCtx: while one ping for the builder hangs, another
// caller waits only as long as its own ctx allows; once the engine answers,
// the decision is kept (no second ping).
func TestBuilderPingHonoursCtx(t *testing.T) {
	t.Setenv("DOCKER_BUILDKIT", "")
	release := make(chan struct{})
	var pings atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/_ping") {
			pings.Add(1)
			<-release
			w.Header().Set("Api-Version", "1.41")
			w.Header().Set("Ostype", "linux")
			_, _ = w.Write([]byte("OK"))
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	c, err := New(WithHost("tcp://" + srv.Listener.Addr().String()))
	require.NoError(t, err)
	defer c.Close()

	first := make(chan error, 1)
	go func() { _, err := c.useBuildKit(context.Background()); first <- err }()
	for pings.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = c.useBuildKit(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded, "a waiter is not held by another caller's ping")

	close(release)
	require.NoError(t, <-first)
	bk, err := c.useBuildKit(context.Background())
	require.NoError(t, err)
	assert.True(t, bk, "a Linux engine on API 1.41 builds with BuildKit")
	assert.Equal(t, int32(1), pings.Load(), "one ping, kept")
}
