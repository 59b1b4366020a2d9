package dockercompose_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
