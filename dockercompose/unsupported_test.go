package dockercompose_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/mount"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/dockercompose"
	"github.com/decnet/servicelive/internal/testimage"
)

// TestUpUnsupported brings up services carrying a field the Composer
// cannot honour in-process: each Up fails with an *UnsupportedError naming
// the field, matching servicelive.ErrInvalidService, before any Engine API
// request, and no container is created; nothing runs a subprocess. A
// provider service and models elsewhere in the project do not stop the Up
// of another service, and a file-sourced secret is bind-mounted.
func TestUpUnsupported(t *testing.T) {
	t.Parallel()
	api, image := engine(t)
	ctx := t.Context()
	c, log := countingComposer(t)
	name := uniqueProject(t, api)

	p := newProject(name)
	addBase(p, "web1", image, "", "")
	require.NoError(t, c.Up(ctx, p, "web1"))
	log.take()

	secretFile := filepath.Join(t.TempDir(), "db")
	require.NoError(t, os.WriteFile(secretFile, []byte("hunter2\n"), 0o644))
	p.Secrets = types.Secrets{
		"inline": {Name: "inline", Content: "hunter2"},
		"env":    {Name: "env", Environment: "SLTEST_SECRET"},
		"file":   {Name: "file", File: secretFile},
	}
	p.Environment = types.Mapping{"SLTEST_SECRET": "hunter2"}
	for _, tc := range []struct {
		field string
		edit  func(s *types.ServiceConfig)
	}{
		{"secrets", func(s *types.ServiceConfig) { s.Secrets = []types.ServiceSecretConfig{{Source: "inline"}} }},
		{"secrets", func(s *types.ServiceConfig) { s.Secrets = []types.ServiceSecretConfig{{Source: "env"}} }},
		{"post_start", func(s *types.ServiceConfig) {
			s.PostStart = []types.ServiceHook{{Command: types.ShellCommand{"touch", "/tmp/hooked"}}}
		}},
		{"pre_start", func(s *types.ServiceConfig) {
			hook := types.PreStartHook{}
			hook.Image = image
			hook.Command = types.ShellCommand{"true"}
			s.PreStart = []types.PreStartHook{hook}
		}},
		{"provider", func(s *types.ServiceConfig) {
			s.Provider = &types.ServiceProviderConfig{Type: "sltest"}
		}},
		{"use_api_socket", func(s *types.ServiceConfig) { s.UseAPISocket = true }},
	} {
		key := addService(p, "web1", "bad"+tc.field, image, testimage.ModeBanner, nil)
		s := p.Services[key]
		tc.edit(&s)
		p.Services[key] = s

		err := c.Up(ctx, p, key)
		require.Error(t, err, tc.field)
		t.Log(err)
		var ue *dockercompose.UnsupportedError
		require.True(t, errors.As(err, &ue), "%v", err)
		assert.Equal(t, dockercompose.UnsupportedError{Service: key, Field: tc.field, Reason: ue.Reason}, *ue)
		assert.ErrorIs(t, err, servicelive.ErrInvalidService)
		assert.Empty(t, log.take(), "%s: no Engine API request", tc.field)
		assert.Empty(t, serviceContainers(t, api, name, key), "%s: no container", tc.field)
		delete(p.Services, key)
	}
	assert.Len(t, projectContainers(t, api, name), 1, "the base only")

	// A provider service and models elsewhere in the project are no
	// concern of an Up of another service; a file secret is mounted.
	provider := types.ServiceConfig{Name: "llm"}
	provider.Provider = &types.ServiceProviderConfig{Type: "model", Options: types.MultiOptions{"model": {"ai/smollm2"}}}
	p.Services["llm"] = provider
	p.Models = types.Models{"smol": {Model: "ai/smollm2"}}
	key := addService(p, "web1", "ssh", image, testimage.ModeBanner, nil)
	s := p.Services[key]
	s.Secrets = []types.ServiceSecretConfig{{Source: "file"}}
	p.Services[key] = s
	require.NoError(t, c.Up(ctx, p, key))
	in := inspect(t, api, p.Services[key].ContainerName)
	var mounted bool
	for _, m := range in.Mounts {
		if m.Type == mount.TypeBind && m.Source == secretFile && m.Destination == "/run/secrets/file" {
			mounted = true
		}
	}
	assert.True(t, mounted, "the file secret is bind-mounted: %+v", in.Mounts)
	assert.Empty(t, trapped(), "no subprocess may be started")
}
