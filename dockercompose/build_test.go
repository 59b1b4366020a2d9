package dockercompose_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/decnet/servicelive/dockercompose"
	"github.com/decnet/servicelive/internal/testimage"
)

// TestNoSubprocess builds a service's image (the path on which the Compose
// SDK would run `docker buildx bake` and credential helpers) and checks,
// through the traps TestMain planted, that nothing was executed.
func TestNoSubprocess(t *testing.T) {
	t.Parallel()
	api, image := engine(t)
	ctx := t.Context()
	c := newComposer(t)
	name := uniqueProject(t, api)

	dir := t.TempDir()
	require.NoError(t, testimage.WriteContext(ctx, api, dir))
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	built := "sltest-built-" + hex.EncodeToString(b) + ":latest"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		purgeProject(t, api, name) // before the image, which they use
		_, _ = api.ImageRemove(ctx, built, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	})

	p := newProject(name)
	addBase(p, "web1", image, "", "")
	key := addService(p, "web1", "built", built, testimage.ModeBanner, nil)
	s := p.Services[key]
	s.Build = &types.BuildConfig{Context: dir}
	p.Services[key] = s

	require.NoError(t, c.Up(ctx, p, "web1"))
	require.NoError(t, c.Up(ctx, p, key))
	_, err := api.ImageInspect(ctx, built)
	require.NoError(t, err, "the image was built")
	first := identityOf(t, api, name+".web1.built")
	assert.Equal(t, testimage.Banner, readBanner(t, net.JoinHostPort(ipOf(t, api, name+".web1"), "2222")))

	// `up --build` rebuilds (from cache): same image, nothing recreated.
	require.NoError(t, c.Up(ctx, p, key))
	assert.Equal(t, first, identityOf(t, api, name+".web1.built"))

	assert.Empty(t, trapped(), "no subprocess may be started")
}

// buildKitDockerfile uses BuildKit-only syntax: a cache mount (not kept in
// the image) and COPY --chmod. The base is the local test image (nothing
// can be pulled); its program appends lines, as the image has no shell.
const buildKitDockerfile = `FROM %s
COPY --chmod=0640 note.txt /note.txt
RUN --mount=type=cache,target=/cache ["/app", "append", "built", "/cache/runs", "/built"]
`

// builtService adds to p a service of decky web1 built from a context dir
// holding dockerfile (with %s replaced by base) and note.txt, and returns
// its key and image name (removed at the end of the test).
func builtService(t *testing.T, api client.APIClient, p *types.Project, svcName, base, dockerfile string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Dockerfile"), fmt.Appendf(nil, dockerfile, base), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "note.txt"), []byte("note\n"), 0o600))
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	image := "sltest-built-" + hex.EncodeToString(b) + ":latest"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		purgeProject(t, api, p.Name)
		_, _ = api.ImageRemove(ctx, image, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	})
	key := addService(p, "web1", svcName, image, testimage.ModeBanner, nil)
	s := p.Services[key]
	// The engine here has no default bridge (docker0): RUN steps run
	// without a network.
	s.Build = &types.BuildConfig{Context: dir, Network: "none"}
	p.Services[key] = s
	return key, image
}

// TestBuildKit builds, in-process with BuildKit, a Dockerfile that the
// classic builder refuses (RUN --mount=type=cache, COPY --chmod), runs the
// service, and checks what BuildKit did: the file's mode, the RUN's output
// in the image, the cache mount not in it. A failing RUN is a *BuildError
// naming the step, with its output, and creates no container. The same
// Dockerfile with the classic builder (WithBuildKit(false), the fallback)
// fails, and no subprocess ever runs.
func TestBuildKit(t *testing.T) {
	t.Parallel()
	api, image := engine(t)
	ctx := t.Context()
	name := uniqueProject(t, api)
	p := newProject(name)
	addBase(p, "web1", image, "", "")
	key, built := builtService(t, api, p, "bk", image, buildKitDockerfile)
	failKey, _ := builtService(t, api, p, "bkfail", image, "FROM %s\nRUN [\"/app\", \"fail\"]\n")

	var events []dockercompose.Event
	var mu sync.Mutex
	c := newComposer(t, dockercompose.WithProgress(func(e dockercompose.Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}))
	require.NoError(t, c.Up(ctx, p, "web1"))
	require.NoError(t, c.Up(ctx, p, key))
	res, err := api.ImageInspect(ctx, built)
	require.NoError(t, err, "the image was built")
	assert.Equal(t, "buildkit", res.Config.Labels["com.docker.compose.image.builder"])
	ctr := name + ".web1.bk"
	st, err := api.ContainerStatPath(ctx, ctr, client.ContainerStatPathOptions{Path: "/note.txt"})
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), st.Stat.Mode.Perm(), "COPY --chmod=0640")
	_, err = api.ContainerStatPath(ctx, ctr, client.ContainerStatPathOptions{Path: "/built"})
	require.NoError(t, err, "the RUN step wrote /built")
	_, err = api.ContainerStatPath(ctx, ctr, client.ContainerStatPathOptions{Path: "/cache/runs"})
	assert.True(t, errdefs.IsNotFound(err), "a cache mount is not part of the image: %v", err)
	assert.Equal(t, testimage.Banner, readBanner(t, net.JoinHostPort(ipOf(t, api, name+".web1"), "2222")))
	mu.Lock()
	var statuses []string
	for _, e := range events {
		if e.Resource == "Image "+built {
			statuses = append(statuses, e.Text)
		}
	}
	mu.Unlock()
	assert.Equal(t, []string{"Building", "Built"}, statuses)

	// A warm rebuild (`up --build`): same image, nothing recreated.
	first := identityOf(t, api, ctr)
	require.NoError(t, c.Up(ctx, p, key))
	assert.Equal(t, first, identityOf(t, api, ctr))

	// A failing step.
	err = c.Up(ctx, p, failKey)
	var be *dockercompose.BuildError
	require.ErrorAs(t, err, &be)
	assert.Equal(t, failKey, be.Service)
	assert.Contains(t, be.Step, "RUN")
	assert.Contains(t, be.Message, "exit code: 1")
	assert.Contains(t, be.Logs, testimage.FailMessage)
	assert.Empty(t, serviceContainers(t, api, name, failKey), "no container after a failed build")

	// The classic builder cannot build it.
	classic := newComposer(t, dockercompose.WithBuildKit(false))
	key2, _ := builtService(t, api, p, "classic", image, buildKitDockerfile)
	err = classic.Up(ctx, p, key2)
	require.Error(t, err)
	assert.NotErrorAs(t, err, &be)
	assert.Empty(t, serviceContainers(t, api, name, key2))

	assert.Empty(t, trapped(), "no subprocess may be started")
}

// TestBuildKitCancel: an Up cancelled during a BuildKit build returns soon
// with the context's error, the build cancelled with it (its session
// closed), and creates no container.
func TestBuildKitCancel(t *testing.T) {
	t.Parallel()
	api, image := engine(t)
	name := uniqueProject(t, api)
	p := newProject(name)
	addBase(p, "web1", image, "", "")
	key, _ := builtService(t, api, p, "slow", image, "FROM %s\nENV FAIL_AFTER=30s\nRUN [\"/app\", \"fail\"]\n")
	c := newComposer(t, dockercompose.WithBuildKit(true))
	require.NoError(t, c.Up(t.Context(), p, "web1"))

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	t0 := time.Now()
	err := c.Up(ctx, p, key)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(t0), 15*time.Second, "the build stops with the Up")
	assert.Empty(t, serviceContainers(t, api, name, key))
}
