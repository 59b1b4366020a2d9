package dockercompose_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/dockercompose"
	"github.com/decnet/servicelive/internal/testimage"
)

var _ servicelive.ContainerLister = (*dockercompose.Composer)(nil)

// TestContainersStates drives containers of a project into each state the
// engine can be asked for (running, exited after a stop and after a kill,
// paused, created) and checks that Containers reports each one as the
// engine does, with its identity, without calling any of them diverged
// while the project is unchanged; containers of another project, or of no
// project, are never listed.
func TestContainersStates(t *testing.T) {
	t.Parallel()
	api, image := engine(t)
	ctx := t.Context()
	c := newComposer(t)
	name := uniqueProject(t, api)
	otherName := uniqueProject(t, api)

	p := newProject(name)
	addBase(p, "web1", image, "", "")
	keys := map[string]string{} // state wanted → compose key
	for _, svc := range []string{"running", "stopped", "killed", "paused"} {
		keys[svc] = addService(p, "web1", svc, image, testimage.ModeBanner, map[string]string{"PORT": "80" + fmt.Sprint(len(keys))})
	}
	for _, s := range []string{"web1", keys["running"], keys["stopped"], keys["killed"], keys["paused"]} {
		require.NoError(t, c.Up(ctx, p, s))
	}
	// The same decky and services in another project.
	other := newProject(otherName)
	addBase(other, "web1", image, "", "")
	otherKey := addService(other, "web1", "running", image, testimage.ModeBanner, nil)
	require.NoError(t, c.Up(ctx, other, "web1"))
	require.NoError(t, c.Up(ctx, other, otherKey))
	// A container with no compose label at all.
	loose, err := api.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: image, Cmd: testimage.Command(testimage.ModeBase),
			Labels: map[string]string{servicelive.LabelDecky: "web1"}},
		Name: name + "-loose",
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = api.ContainerRemove(context.Background(), loose.ID, client.ContainerRemoveOptions{Force: true})
	})
	// A container of the project created but never started, for a service
	// the project does not list (a stray: never diverged).
	created, err := api.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: image, Cmd: testimage.Command(testimage.ModeBase), Labels: map[string]string{
			composeProject: name, composeService: "web1-created", servicelive.LabelDecky: "web1",
		}},
		Name: name + ".web1.created",
	})
	require.NoError(t, err)

	id := func(key string) string { return serviceContainers(t, api, name, key)[0].ID }
	_, err = api.ContainerStop(ctx, id(keys["stopped"]), client.ContainerStopOptions{})
	require.NoError(t, err)
	_, err = api.ContainerKill(ctx, id(keys["killed"]), client.ContainerKillOptions{Signal: "SIGKILL"})
	require.NoError(t, err)
	_, err = api.ContainerPause(ctx, id(keys["paused"]), client.ContainerPauseOptions{})
	require.NoError(t, err)
	// A kill is asynchronous: wait for the engine to record the exit.
	require.Eventually(t, func() bool {
		return inspect(t, api, id(keys["killed"])).State.Status == container.StateExited
	}, 10*time.Second, 10*time.Millisecond)

	list := func(p *types.Project) map[string]servicelive.Container {
		t.Helper()
		got, err := c.Containers(ctx, p)
		require.NoError(t, err)
		m := map[string]servicelive.Container{}
		for _, ctr := range got {
			_, dup := m[ctr.Service]
			require.False(t, dup, "two containers of %s", ctr.Service)
			m[ctr.Service] = ctr
		}
		return m
	}
	got := list(p)
	require.Len(t, got, 6, "the project's five containers and the created stray, nothing of another project: %v", got)
	want := map[string]string{
		"web1":          "running",
		keys["running"]: "running",
		keys["stopped"]: "exited",
		keys["killed"]:  "exited",
		keys["paused"]:  "paused",
		"web1-created":  "created",
	}
	for key, state := range want {
		ctr, ok := got[key]
		require.True(t, ok, "%s not listed", key)
		in := inspect(t, api, ctr.ID)
		assert.Equal(t, servicelive.Container{
			ID: in.ID, Name: in.Name[1:], Service: key, Decky: "web1", State: state,
		}, ctr, "%s", key)
		assert.Equal(t, state, string(in.State.Status), "%s: the engine's own state", key)
	}
	assert.Equal(t, created.ID, got["web1-created"].ID)
	assert.Equal(t, name+".web1."+"stopped", got[keys["stopped"]].Name)

	// The other project sees its own two containers only.
	gotOther := list(other)
	require.Len(t, gotOther, 2)
	for _, ctr := range gotOther {
		assert.NotEqual(t, got[ctr.Service].ID, ctr.ID)
		assert.False(t, ctr.Diverged)
	}

	// A changed environment diverges that service only.
	s := p.Services[keys["stopped"]]
	v := "2"
	s.Environment["PORT"] = &v
	p.Services[keys["stopped"]] = s
	got = list(p)
	for key, ctr := range got {
		assert.Equal(t, key == keys["stopped"], ctr.Diverged, "%s diverged", key)
	}
	// Not for the project of the other scope.
	for _, ctr := range list(other) {
		assert.False(t, ctr.Diverged)
	}
	// A running base disconnected from its network out of band diverges
	// (compose would recreate it).
	otherBase := serviceContainers(t, api, otherName, "web1")[0].ID
	_, err = api.NetworkDisconnect(ctx, otherName+"_default", client.NetworkDisconnectOptions{Container: otherBase, Force: true})
	require.NoError(t, err)
	for key, ctr := range list(other) {
		assert.Equal(t, key == "web1", ctr.Diverged, "%s diverged after the base lost its network", key)
	}
	// A stray is never diverged, even when the project lists no service of
	// its decky.
	delete(p.Services, keys["running"])
	assert.False(t, list(p)[keys["running"]].Diverged, "a service the project no longer lists is a stray, not diverged")
}

// fakeEngine answers ContainerList and ImageInspect from memory and counts
// the calls; any other call panics (the nil embedded interface).
type fakeEngine struct {
	client.APIClient
	items         []container.Summary
	lists, images atomic.Int64
}

func (f *fakeEngine) ContainerList(ctx context.Context, opts client.ContainerListOptions) (client.ContainerListResult, error) {
	f.lists.Add(1)
	return client.ContainerListResult{Items: f.items}, nil
}

func (f *fakeEngine) ImageInspect(ctx context.Context, ref string, _ ...client.ImageInspectOption) (client.ImageInspectResult, error) {
	f.images.Add(1)
	var r client.ImageInspectResult
	r.ID = "sha256:" + fmt.Sprintf("%064x", len(ref))
	return r, nil
}

func (f *fakeEngine) DaemonHost() string    { return "unix:///fake.sock" }
func (f *fakeEngine) ClientVersion() string { return "1.41" }
func (f *fakeEngine) Close() error          { return nil }

// scope renders n deckies of two services each, the way the core Manager
// renders a whole scope, and a fake engine holding one container per
// service, with the config hash of the same project but another
// environment (so that every container is compared and diverged).
func scope(n int) (*types.Project, *fakeEngine) {
	p := newProject("slscale")
	f := &fakeEngine{}
	add := func(key, decky string) {
		f.items = append(f.items, container.Summary{
			ID: fmt.Sprintf("%064x", len(f.items)), Names: []string{"/slscale." + key}, ImageID: "sha256:x",
			State: container.StateRunning,
			Labels: map[string]string{
				composeProject: "slscale", composeService: key, servicelive.LabelDecky: decky,
				"com.docker.compose.config-hash": "stale", "com.docker.compose.oneoff": "False",
			},
		})
	}
	for i := range n {
		decky := fmt.Sprintf("d%04d", i)
		addBase(p, decky, "img", "", "")
		add(decky, decky)
		for _, svc := range []string{"ssh", "http"} {
			add(addService(p, decky, svc, "img", testimage.ModeBanner, map[string]string{"PORT": "22"}), decky)
		}
	}
	return p, f
}

// TestContainersScale checks that Containers costs one listing and time
// linear in the size of the scope: it must not copy the whole project per
// service (which would make 1,000 deckies cost 100 times 100).
func TestContainersScale(t *testing.T) {
	measure := func(n int) time.Duration {
		p, f := scope(n)
		c := newComposer(t, dockercompose.WithAPIClient(f))
		best := time.Duration(1<<63 - 1)
		for range 3 {
			t0 := time.Now()
			got, err := c.Containers(t.Context(), p)
			d := time.Since(t0)
			require.NoError(t, err)
			require.Len(t, got, 3*n)
			for _, ctr := range got {
				require.True(t, ctr.Diverged)
			}
			best = min(best, d)
		}
		assert.Equal(t, int64(3), f.lists.Load(), "one listing per call")
		assert.Zero(t, f.images.Load(), "no image inspection for diverged configurations")
		return best
	}
	small, large := measure(100), measure(1000)
	t.Logf("Containers: 300 containers %v (%v each), 3,000 containers %v (%v each)",
		small, small/300, large, large/3000)
	// Linear would be 10x; a copy of the project per service, 100x.
	assert.Less(t, large, 30*small, "Containers is not linear in the scope's size")
}

// TestContainersStranded: a container sharing the network namespace of a
// base that has started again since (as a restart policy does) is stranded
// in the base's previous namespace: Containers reports it diverged, and
// only it; once Up has recreated it, nothing is.
func TestContainersStranded(t *testing.T) {
	t.Parallel()
	api, image := engine(t)
	ctx := t.Context()
	c := newComposer(t)
	name := uniqueProject(t, api)
	p := newProject(name)
	addBase(p, "web1", image, "", "")
	key := addService(p, "web1", "ssh", image, testimage.ModeBanner, nil)
	require.NoError(t, c.Up(ctx, p, "web1"))
	require.NoError(t, c.Up(ctx, p, key))
	diverged := func() map[string]bool {
		t.Helper()
		got, err := c.Containers(ctx, p)
		require.NoError(t, err)
		m := map[string]bool{}
		for _, ctr := range got {
			m[ctr.Service] = ctr.Diverged
		}
		return m
	}
	require.Equal(t, map[string]bool{"web1": false, key: false}, diverged())

	base := serviceContainers(t, api, name, "web1")[0].ID
	_, err := api.ContainerRestart(ctx, base, client.ContainerRestartOptions{})
	require.NoError(t, err)
	assert.Equal(t, map[string]bool{"web1": false, key: true}, diverged(), "after the base restarted")

	require.NoError(t, c.Down(ctx, p, key))
	require.NoError(t, c.Up(ctx, p, key))
	assert.Equal(t, map[string]bool{"web1": false, key: false}, diverged(), "after the service was recreated")
}
