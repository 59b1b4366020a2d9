package dockercompose

import (
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"
	"github.com/stretchr/testify/assert"
)

// TestNameOf: only a service with one container under a container_name is
// looked up by name.
func TestNameOf(t *testing.T) {
	two := 2
	one := 1
	named := func(f func(*types.ServiceConfig)) types.ServiceConfig {
		var s types.ServiceConfig
		s.ContainerName = "p.a.ssh"
		f(&s)
		return s
	}
	for _, tc := range []struct {
		svc  types.ServiceConfig
		name string
		ok   bool
	}{
		{named(func(*types.ServiceConfig) {}), "p.a.ssh", true},
		{named(func(s *types.ServiceConfig) { s.Scale = &one }), "p.a.ssh", true},
		{types.ServiceConfig{}, "", false},
		{named(func(s *types.ServiceConfig) { s.Scale = &two }), "", false},
		{named(func(s *types.ServiceConfig) { s.Deploy = &types.DeployConfig{Replicas: &two} }), "", false},
	} {
		name, ok := nameOf(tc.svc)
		assert.Equal(t, tc.name, name)
		assert.Equal(t, tc.ok, ok)
	}
}

// TestSummaryOf: an inspection seen as the engine's listing shows it, and
// label filters as the engine applies them.
func TestSummaryOf(t *testing.T) {
	in := container.InspectResponse{
		ID: "abc", Name: "/p.a", Image: "sha256:1", Path: "/app", Args: []string{"base"},
		Created:         "2026-11-30T07:00:00.123456789Z",
		State:           &container.State{Status: container.StateRunning, Running: true},
		Config:          &container.Config{Image: "img:1", Labels: map[string]string{"com.docker.compose.project": "p", "k": ""}},
		HostConfig:      &container.HostConfig{NetworkMode: "container:xyz"},
		NetworkSettings: &container.NetworkSettings{},
	}
	s := summaryOf(in)
	assert.Equal(t, []string{"/p.a"}, s.Names)
	assert.Equal(t, "img:1", s.Image)
	assert.Equal(t, "sha256:1", s.ImageID)
	assert.Equal(t, container.StateRunning, s.State)
	assert.Equal(t, "container:xyz", s.HostConfig.NetworkMode)
	assert.Equal(t, "/app base", s.Command)
	assert.NotZero(t, s.Created)
	assert.Equal(t, "p.a", canonicalName(s))
	assert.True(t, hasLabel(s.Labels, "com.docker.compose.project=p"))
	assert.True(t, hasLabel(s.Labels, "com.docker.compose.project"))
	assert.True(t, hasLabel(s.Labels, "k"))
	assert.True(t, hasLabel(s.Labels, "k="))
	assert.False(t, hasLabel(s.Labels, "com.docker.compose.project=q"))
	assert.False(t, hasLabel(s.Labels, "com.docker.compose.config-hash"))
}
