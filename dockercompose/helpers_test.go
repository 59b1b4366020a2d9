package dockercompose_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/stretchr/testify/require"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/dockercompose"
	"github.com/decnet/servicelive/internal/enginetest"
	"github.com/decnet/servicelive/internal/testimage"
)

const (
	composeProject = "com.docker.compose.project"
	composeService = "com.docker.compose.service"
)

// engine returns a fresh API client for the local engine (closed at the end
// of the test) and the test image's reference; see enginetest.Require.
func engine(t testing.TB) (*client.Client, string) {
	t.Helper()
	return enginetest.Require(t)
}

// newComposer returns a Composer closed at the end of the test.
func newComposer(t testing.TB, opts ...dockercompose.Option) *dockercompose.Composer {
	t.Helper()
	c, err := dockercompose.New(opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// uniqueProject returns a fresh project name and registers the removal of
// everything labelled with it (containers, networks) at the end of the test,
// even when it fails.
func uniqueProject(t testing.TB, c client.APIClient) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "sltest_" + hex.EncodeToString(b)
	t.Cleanup(func() { purgeProject(t, c, name) })
	return name
}

// purgeProject removes every container and network labelled with project.
func purgeProject(t testing.TB, c client.APIClient, project string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := make(client.Filters).Add("label", composeProject+"="+project)
	res, err := c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		t.Logf("cleanup %s: %v", project, err)
		return
	}
	var wg sync.WaitGroup
	for _, ctr := range res.Items {
		wg.Go(func() {
			if _, err := c.ContainerRemove(ctx, ctr.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
				t.Logf("cleanup %s: %v", project, err)
			}
		})
	}
	wg.Wait()
	nets, err := c.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		t.Logf("cleanup %s: %v", project, err)
		return
	}
	for _, n := range nets.Items {
		if _, err := c.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && !errdefs.IsNotFound(err) {
			t.Logf("cleanup %s: %v", project, err)
		}
	}
}

// newProject returns an empty project shaped like the core Manager's.
func newProject(name string) *types.Project {
	return &types.Project{Name: name, Services: types.Services{}, Networks: types.Networks{}}
}

// identify sets what the core Manager sets on every service.
func identify(p *types.Project, s *types.ServiceConfig, decky, service string) {
	s.ContainerName = p.Name + "." + decky
	if service != "" {
		s.ContainerName += "." + service
	}
	s.Labels = types.Labels{
		servicelive.LabelDecky:    decky,
		servicelive.LabelService:  service,
		servicelive.LabelTopology: "",
	}
	s.CustomLabels = types.Labels{
		composeProject:              p.Name,
		composeService:              s.Name,
		"com.docker.compose.oneoff": "False",
	}
	s.Logging = &types.LoggingConfig{Driver: "json-file", Options: map[string]string{"max-size": "10m", "max-file": "3"}}
}

// addBase adds decky's base to p: on the project's default network, or on
// the external network ext at ip when ext is not "".
func addBase(p *types.Project, decky, image, ext, ip string) {
	s := types.ServiceConfig{Name: decky}
	s.Hostname = decky
	s.Image = image
	s.Command = testimage.Command(testimage.ModeBase)
	if ext != "" {
		var cfg *types.ServiceNetworkConfig
		if ip != "" {
			cfg = &types.ServiceNetworkConfig{Ipv4Address: ip}
		}
		s.Networks = map[string]*types.ServiceNetworkConfig{ext: cfg}
		p.Networks[ext] = types.NetworkConfig{Name: ext, External: true}
	} else {
		s.Networks = map[string]*types.ServiceNetworkConfig{"default": nil}
		p.Networks["default"] = types.NetworkConfig{Name: p.Name + "_default"}
	}
	identify(p, &s, decky, "")
	p.Services[decky] = s
}

// addService adds service svc of decky to p, sharing the base's network
// namespace, running the test image in mode with env; it returns its key.
func addService(p *types.Project, decky, svc, image, mode string, env map[string]string) string {
	key := servicelive.ServiceKey(decky, svc)
	s := types.ServiceConfig{Name: key}
	s.Image = image
	s.Command = testimage.Command(mode)
	s.NetworkMode = "service:" + decky
	s.DependsOn = types.DependsOnConfig{decky: {Condition: types.ServiceConditionStarted, Required: true}}
	if len(env) > 0 {
		s.Environment = types.MappingWithEquals{}
		for k, v := range env {
			s.Environment[k] = &v
		}
	}
	identify(p, &s, decky, svc)
	p.Services[key] = s
	return key
}

// inspect returns the container's inspection; it fails the test if missing.
func inspect(t testing.TB, c client.APIClient, ref string) container.InspectResponse {
	t.Helper()
	res, err := c.ContainerInspect(context.Background(), ref, client.ContainerInspectOptions{})
	require.NoError(t, err, "inspect %s", ref)
	return res.Container
}

// serviceContainers lists the containers of a compose service, any state.
func serviceContainers(t testing.TB, c client.APIClient, project, service string) []container.Summary {
	t.Helper()
	f := make(client.Filters).Add("label", composeProject+"="+project).Add("label", composeService+"="+service)
	res, err := c.ContainerList(context.Background(), client.ContainerListOptions{All: true, Filters: f})
	require.NoError(t, err)
	return res.Items
}

// projectContainers lists every container of a project, any state.
func projectContainers(t testing.TB, c client.APIClient, project string) []container.Summary {
	t.Helper()
	f := make(client.Filters).Add("label", composeProject+"="+project)
	res, err := c.ContainerList(context.Background(), client.ContainerListOptions{All: true, Filters: f})
	require.NoError(t, err)
	return res.Items
}

// identity is what must not change for a container left alone.
type identity struct{ ID, StartedAt string }

func identityOf(t testing.TB, c client.APIClient, ref string) identity {
	t.Helper()
	in := inspect(t, c, ref)
	return identity{ID: in.ID, StartedAt: in.State.StartedAt}
}

// ipOf returns the container's IP address on its first network.
func ipOf(t testing.TB, c client.APIClient, ref string) string {
	t.Helper()
	in := inspect(t, c, ref)
	require.NotNil(t, in.NetworkSettings)
	for _, n := range in.NetworkSettings.Networks {
		if n.IPAddress.IsValid() {
			return n.IPAddress.String()
		}
	}
	t.Fatalf("%s has no IP address", ref)
	return ""
}
