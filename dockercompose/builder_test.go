package dockercompose

import (
	"testing"

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
