package dockercompose_test

import (
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/internal/testimage"
)

func TestContainers(t *testing.T) {
	t.Parallel()
	api, image := engine(t)
	ctx := t.Context()
	c := newComposer(t)
	name := uniqueProject(t, api)

	p := newProject(name)
	addBase(p, "web1", image, "", "")
	ssh := addService(p, "web1", "ssh", image, testimage.ModeBanner, nil)
	http := addService(p, "web1", "http", image, testimage.ModeBanner, map[string]string{"PORT": "8080"})
	stray := addService(p, "web1", "stray", image, testimage.ModeBanner, map[string]string{"PORT": "9090"})
	for _, s := range []string{"web1", ssh, http, stray} {
		require.NoError(t, c.Up(ctx, p, s))
	}
	_, err := api.ContainerStop(ctx, name+".web1.http", client.ContainerStopOptions{})
	require.NoError(t, err)
	delete(p.Services, stray)

	byService := func() map[string]servicelive.Container {
		t.Helper()
		list, err := c.Containers(ctx, p)
		require.NoError(t, err)
		m := map[string]servicelive.Container{}
		for _, ctr := range list {
			m[ctr.Service] = ctr
		}
		return m
	}
	got := byService()
	require.Len(t, got, 4)
	assert.Equal(t, servicelive.Container{ID: inspect(t, api, name+".web1.ssh").ID, Name: name + ".web1.ssh", Service: ssh, Decky: "web1", State: "running"}, got[ssh])
	assert.Equal(t, "exited", got[http].State)
	for _, ctr := range got {
		assert.False(t, ctr.Diverged, "%s is as Up made it", ctr.Service)
	}

	// A changed configuration diverges; the others do not.
	s := p.Services[ssh]
	v := "1"
	s.Environment = types.MappingWithEquals{"CHANGED": &v}
	p.Services[ssh] = s
	got = byService()
	assert.True(t, got[ssh].Diverged)
	assert.False(t, got["web1"].Diverged)
	assert.False(t, got[http].Diverged)
	require.NoError(t, c.Up(ctx, p, ssh))
	assert.False(t, byService()[ssh].Diverged, "Up converged it")

	// A container whose image reference now names another image diverges.
	other := "sltest-retag-" + name + ":latest"
	s = p.Services[http]
	s.Image = other
	p.Services[http] = s
	_, err = api.ImageTag(ctx, client.ImageTagOptions{Source: image, Target: other})
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = api.ImageRemove(t.Context(), other, client.ImageRemoveOptions{}) })
	assert.True(t, byService()[http].Diverged, "the image reference changed")

	// Recreating a base diverges the services in its namespace.
	b := p.Services["web1"]
	b.Environment = types.MappingWithEquals{"CHANGED": &v}
	p.Services["web1"] = b
	require.NoError(t, c.Up(ctx, p, "web1"))
	got = byService()
	assert.False(t, got["web1"].Diverged)
	assert.True(t, got[ssh].Diverged, "its namespace owner was recreated")
	require.NoError(t, c.Up(ctx, p, ssh))
	in := inspect(t, api, name+".web1.ssh")
	assert.Equal(t, container.NetworkMode("container:"+got["web1"].ID), in.HostConfig.NetworkMode)
	assert.False(t, byService()[ssh].Diverged)
}
