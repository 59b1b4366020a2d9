package dockercompose_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/dockercompose"
	"github.com/decnet/servicelive/internal/testimage"
)

// A trip interferes once with an Up whose context carries it (withTrip):
// at the first request of the Composer's own start phase that it matches,
// it cancels the Up's context, fails the request as a broken transport
// would, or holds the request until the Up's context is done.
type trip struct {
	match  *regexp.Regexp // the request, "METHOD /path" without the API version
	action string         // tripCancel, tripTransport or tripHold
	cancel context.CancelFunc

	fired    atomic.Bool
	released atomic.Bool // a held request was released by the cancellation
}

const (
	tripCancel    = "cancel"
	tripTransport = "transport"
	tripHold      = "hold"
)

var (
	// The Composer's inspect or start of a container (the SDK inspects
	// only a container it created, which a trip on a kept one never sees).
	anyStep = regexp.MustCompile(`^(GET /containers/[^/]+/json|POST /containers/[^/]+/start)$`)
	// The Composer's start of a container.
	startStep = regexp.MustCompile(`^POST /containers/[^/]+/start$`)

	errInjected = errors.New("sltest: injected transport failure")
)

type tripKey struct{}

// withTrip returns a context carrying tr, cancelled by tr.cancel.
func withTrip(ctx context.Context, tr *trip) context.Context {
	ctx, tr.cancel = context.WithCancel(context.WithValue(ctx, tripKey{}, tr))
	return ctx
}

func (tr *trip) hook(r *http.Request) error {
	if !tr.match.MatchString(r.Method+" "+versionRe.ReplaceAllString(r.URL.Path, "")) || tr.fired.Swap(true) {
		return nil
	}
	switch tr.action {
	case tripCancel:
		tr.cancel()
	case tripTransport:
		return errInjected
	case tripHold:
		select {
		case <-r.Context().Done():
			tr.released.Store(true)
		case <-time.After(time.Minute):
		}
	}
	return nil
}

// ownPort returns the environment of a banner service listening on a port
// of its own in the base's network namespace, which p's services share.
func ownPort(p *types.Project) map[string]string {
	return map[string]string{"PORT": strconv.Itoa(3000 + len(p.Services))}
}

func ptr[T any](v T) *T { return &v }

// sleepCtx waits d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// trippingComposer returns a Composer whose Engine API requests go through
// the trip of the calling context, if any.
func trippingComposer(t testing.TB, opts ...dockercompose.Option) *dockercompose.Composer {
	t.Helper()
	api, err := client.New(client.FromEnv, client.WithHTTPRequestHook(func(r *http.Request) error {
		if tr, _ := r.Context().Value(tripKey{}).(*trip); tr != nil {
			return tr.hook(r)
		}
		return nil
	}))
	require.NoError(t, err)
	t.Cleanup(func() { _ = api.Close() })
	return newComposer(t, append([]dockercompose.Option{dockercompose.WithAPIClient(api)}, opts...)...)
}

// TestUpKeepsWhatItFound fails an Up of a service whose container exists
// and is up to date, running or stopped, at the Composer's first request
// after the SDK's Create: cancelled, or a transport failure. The container
// is never removed: a running one keeps its ID and start time.
func TestUpKeepsWhatItFound(t *testing.T) {
	t.Parallel()
	api, image := engine(t)
	ctx := t.Context()
	c := trippingComposer(t)
	name := uniqueProject(t, api)

	p := newProject(name)
	addBase(p, "web1", image, "", "")
	require.NoError(t, c.Up(ctx, p, "web1"))
	for _, tc := range []struct {
		name    string
		stopped bool // stopped behind the Composer's back before the Up
		action  string
		match   *regexp.Regexp
	}{
		{"running, cancelled", false, tripCancel, anyStep},
		{"running, transport failure", false, tripTransport, anyStep},
		{"stopped, cancelled at start", true, tripCancel, startStep},
		{"stopped, start fails", true, tripTransport, startStep},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := addService(p, "web1", fmt.Sprintf("svc%d", len(p.Services)), image, testimage.ModeBanner, ownPort(p))
			ref := p.Services[key].ContainerName
			require.NoError(t, c.Up(ctx, p, key))
			if tc.stopped {
				_, err := api.ContainerStop(ctx, ref, client.ContainerStopOptions{})
				require.NoError(t, err)
			}
			before := identityOf(t, api, ref)

			tr := &trip{match: tc.match, action: tc.action}
			err := c.Up(withTrip(ctx, tr), p, key)
			require.Error(t, err)
			t.Log(err)
			assert.True(t, tr.fired.Load(), "the trip fired")
			if tc.action == tripCancel {
				assert.ErrorIs(t, err, context.Canceled)
			} else {
				assert.ErrorIs(t, err, errInjected)
			}
			if ce := (*dockercompose.ContainerError)(nil); errors.As(err, &ce) {
				assert.False(t, ce.Removed)
				assert.Contains(t, err.Error(), "left in place")
			}
			after := inspect(t, api, ref)
			assert.Equal(t, before, identity{ID: after.ID, StartedAt: after.State.StartedAt}, "the container is untouched")
			assert.Equal(t, !tc.stopped, after.State.Running)
			assert.Len(t, serviceContainers(t, api, name, key), 1)

			// Nothing in the way of the next Up.
			require.NoError(t, c.Up(ctx, p, key))
			after = inspect(t, api, ref)
			assert.Equal(t, before.ID, after.ID)
			assert.True(t, after.State.Running)
		})
	}
}

// TestUpRemovesWhatItCreated fails an Up after it created, or recreated,
// the service's container: at the SDK's inspection of the new container
// (within the SDK's Create) or at its start. The new container is removed,
// even when the Up's context is cancelled; an old container the SDK had not
// replaced yet stays as it was.
func TestUpRemovesWhatItCreated(t *testing.T) {
	t.Parallel()
	api, image := engine(t)
	ctx := t.Context()
	c := trippingComposer(t, dockercompose.WithStopTimeout(2*time.Second))
	name := uniqueProject(t, api)

	p := newProject(name)
	addBase(p, "web1", image, "", "")
	require.NoError(t, c.Up(ctx, p, "web1"))
	for _, tc := range []struct {
		name     string
		recreate bool // the service runs, with another configuration
		inCreate bool // the trip is on the SDK's inspect of the new container, else on its start
		action   string
	}{
		{"created, cancelled in the SDK's create", false, true, tripCancel},
		{"created, cancelled at start", false, false, tripCancel},
		{"created, start fails", false, false, tripTransport},
		{"recreated, cancelled in the SDK's create", true, true, tripCancel},
		{"recreated, cancelled at start", true, false, tripCancel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := addService(p, "web1", fmt.Sprintf("svc%d", len(p.Services)), image, testimage.ModeBanner, ownPort(p))
			ref := p.Services[key].ContainerName
			var old identity
			if tc.recreate {
				require.NoError(t, c.Up(ctx, p, key))
				old = identityOf(t, api, ref)
				s := p.Services[key]
				s.Environment["BANNER"] = ptr("changed\r\n")
				p.Services[key] = s
			}

			tr := &trip{match: startStep, action: tc.action}
			if tc.inCreate {
				tr.match = anyStep
			}
			err := c.Up(withTrip(ctx, tr), p, key)
			require.Error(t, err)
			t.Log(err)
			assert.True(t, tr.fired.Load(), "the trip fired")
			if tc.action == tripCancel {
				assert.ErrorIs(t, err, context.Canceled)
			}
			var ce *dockercompose.ContainerError
			if !tc.inCreate {
				require.True(t, errors.As(err, &ce), "%v", err)
				assert.True(t, ce.Removed)
				assert.NoError(t, ce.RemoveErr)
			}
			ctrs := serviceContainers(t, api, name, key)
			switch {
			case tc.recreate && tc.inCreate:
				require.Len(t, ctrs, 1, "the old container only")
				in := inspect(t, api, ctrs[0].ID)
				assert.Equal(t, old, identity{ID: in.ID, StartedAt: in.State.StartedAt}, "the old container is untouched")
				assert.True(t, in.State.Running)
			case tc.recreate:
				assert.Empty(t, ctrs, "the SDK had replaced the old container; the new one is removed")
			default:
				assert.Empty(t, ctrs, "the container the Up created is removed")
			}
			require.NoError(t, c.Up(ctx, p, key))
			assert.True(t, inspect(t, api, ref).State.Running)
		})
	}
}

// TestUpDeployCancelled simulates a Deploy: every container of a project
// is up; Ups of all of them run at once with one of a failing service, in an
// errgroup whose context the failure cancels. The Ups of the running
// containers are held at the Composer's first request after the SDK's
// Create until that cancellation, the window in which a failing Up used to
// remove the container it was given: every one keeps its ID and start time.
func TestUpDeployCancelled(t *testing.T) {
	t.Parallel()
	api, image := engine(t)
	ctx := t.Context()
	setup := newComposer(t)
	// A start grace makes a container that exits at once a failure; a
	// running container the Up keeps is not watched.
	c := trippingComposer(t, dockercompose.WithStartGrace(5*time.Second))

	for _, failure := range []string{"unstartable", "exits at once"} {
		t.Run(failure, func(t *testing.T) {
			name := uniqueProject(t, api)
			const n = 4
			p := newProject(name)
			var keys []string
			for i := range n {
				decky := fmt.Sprintf("web%d", i)
				addBase(p, decky, image, "", "")
				keys = append(keys, decky, addService(p, decky, "ssh", image, testimage.ModeBanner, nil))
			}
			for _, key := range keys {
				require.NoError(t, setup.Up(ctx, p, key))
			}
			before := map[string]identity{}
			for _, key := range keys {
				before[key] = identityOf(t, api, p.Services[key].ContainerName)
			}
			bad := addService(p, "web0", "bad", image, testimage.ModeFail, nil)
			if failure == "unstartable" {
				s := p.Services[bad]
				s.Entrypoint = []string{"/no/such/binary"}
				p.Services[bad] = s
			}

			g, gctx := errgroup.WithContext(ctx)
			trips := make([]*trip, len(keys))
			errs := make([]error, len(keys))
			for i, key := range keys {
				trips[i] = &trip{match: anyStep, action: tripHold}
				g.Go(func() error {
					errs[i] = c.Up(withTrip(gctx, trips[i]), p, key)
					return errs[i]
				})
			}
			g.Go(func() error {
				// The failure comes once every other Up is held.
				for i := range trips {
					for !trips[i].fired.Load() {
						if err := sleepCtx(gctx, 5*time.Millisecond); err != nil {
							return err
						}
					}
				}
				return c.Up(gctx, p, bad)
			})
			err := g.Wait()
			require.Error(t, err)
			t.Log(err)
			var ce *dockercompose.ContainerError
			require.True(t, errors.As(err, &ce), "the failing service's error comes first: %v", err)
			assert.True(t, ce.Removed)
			assert.Empty(t, serviceContainers(t, api, name, bad))

			for i, key := range keys {
				assert.True(t, trips[i].released.Load(), "%s was held until the cancellation", key)
				// errgroup cancels with the failure as the cause, which
				// net/http reports rather than context.Canceled.
				assert.True(t, errors.Is(errs[i], context.Canceled) || errors.Is(errs[i], context.Cause(gctx)), "%s: %v", key, errs[i])
				in := inspect(t, api, p.Services[key].ContainerName)
				assert.Equal(t, before[key], identity{ID: in.ID, StartedAt: in.State.StartedAt}, "%s is untouched", key)
				assert.True(t, in.State.Running, key)
			}
			assert.Len(t, projectContainers(t, api, name), len(keys))
		})
	}
}

// TestUpNameConflict puts a container that is not the service's on the
// service's container name: an operator's (no labels), another project's,
// another service's of the same project, a one-off of the service. Up
// fails with a *NameConflictError matching servicelive.ErrConflict and
// leaves the container as it was.
func TestUpNameConflict(t *testing.T) {
	t.Parallel()
	api, image := engine(t)
	ctx := t.Context()
	c := newComposer(t)
	name := uniqueProject(t, api)

	p := newProject(name)
	addBase(p, "web1", image, "", "")
	require.NoError(t, c.Up(ctx, p, "web1"))
	other := "sltest_other_" + name[len("sltest_"):]
	const sameService = "<the service>"
	for _, tc := range []struct {
		name    string
		running bool
		project string // the holder's compose labels ("" for none)
		service string
		oneOff  bool
	}{
		{name: "operator's, running", running: true},
		{name: "operator's, stopped"},
		{name: "another project's", running: true, project: other, service: "x"},
		{name: "another project's, same service", project: other, service: sameService},
		{name: "another service's", running: true, project: name, service: "web1"},
		{name: "a one-off of the service", running: true, project: name, service: sameService, oneOff: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := addService(p, "web1", fmt.Sprintf("svc%d", len(p.Services)), image, testimage.ModeBanner, nil)
			ref := p.Services[key].ContainerName
			service := tc.service
			if service == sameService {
				service = key
			}
			var labels map[string]string
			if tc.project != "" {
				labels = map[string]string{composeProject: tc.project, composeService: service}
			}
			if tc.oneOff {
				labels["com.docker.compose.oneoff"] = "True"
			}
			holder, err := api.ContainerCreate(ctx, client.ContainerCreateOptions{
				Name:   ref,
				Config: &container.Config{Image: image, Cmd: testimage.Command(testimage.ModeBase), Labels: labels},
				// No network: the engine's default bridge may be missing.
				HostConfig: &container.HostConfig{NetworkMode: "none"},
			})
			require.NoError(t, err)
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				_, _ = api.ContainerRemove(ctx, holder.ID, client.ContainerRemoveOptions{Force: true})
			})
			if tc.running {
				_, err := api.ContainerStart(ctx, holder.ID, client.ContainerStartOptions{})
				require.NoError(t, err)
			}
			before := identityOf(t, api, holder.ID)

			start := time.Now()
			err = c.Up(ctx, p, key)
			require.Error(t, err)
			t.Logf("%v (after %v)", err, time.Since(start))
			assert.ErrorIs(t, err, servicelive.ErrConflict)
			var nc *dockercompose.NameConflictError
			require.True(t, errors.As(err, &nc), "%v", err)
			assert.Equal(t, dockercompose.NameConflictError{
				Name: ref, Project: name, Service: key,
				HolderID: holder.ID, HolderProject: tc.project, HolderService: service,
				Err: nc.Err,
			}, *nc)
			assert.True(t, errdefs.IsConflict(nc.Err), "the engine's error: %v", nc.Err)
			assert.Contains(t, err.Error(), "container name "+ref+" for service "+key+" of project "+name+" is held by container "+holder.ID[:12])

			in := inspect(t, api, holder.ID)
			assert.Equal(t, before, identity{ID: in.ID, StartedAt: in.State.StartedAt}, "the holder is untouched")
			assert.Equal(t, tc.running, in.State.Running)
			assert.Equal(t, "/"+ref, in.Name)
			for _, ctr := range serviceContainers(t, api, name, key) {
				assert.Equal(t, holder.ID, ctr.ID, "no container of the service was created")
			}
		})
	}
}

// TestDownKeepsOneOffs puts a one-off container (`compose run`) and a
// pre_start hook container of a service beside its container: Down removes
// the service's container and leaves the other two as they were.
func TestDownKeepsOneOffs(t *testing.T) {
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
	own := inspect(t, api, p.Services[key].ContainerName).ID

	others := map[string]identity{}
	for what, labels := range map[string]map[string]string{
		"one-off": {composeProject: name, composeService: key, "com.docker.compose.oneoff": "True"},
		"hook":    {composeProject: name, composeService: key, "com.docker.compose.hook": "pre_start", "com.docker.compose.hook-index": "0"},
	} {
		res, err := api.ContainerCreate(ctx, client.ContainerCreateOptions{
			Name:       name + "." + what,
			Config:     &container.Config{Image: image, Cmd: testimage.Command(testimage.ModeBase), Labels: labels},
			HostConfig: &container.HostConfig{NetworkMode: "none"}, // the default bridge may be missing
		})
		require.NoError(t, err, what)
		_, err = api.ContainerStart(ctx, res.ID, client.ContainerStartOptions{})
		require.NoError(t, err, what)
		others[what] = identityOf(t, api, res.ID)
	}
	require.Len(t, serviceContainers(t, api, name, key), 3)

	require.NoError(t, c.Down(ctx, p, key))
	left := serviceContainers(t, api, name, key)
	assert.Len(t, left, 2, "the one-off and the hook container stay")
	for _, ctr := range left {
		assert.NotEqual(t, own, ctr.ID, "the service's container is removed")
	}
	for what, before := range others {
		in := inspect(t, api, before.ID)
		assert.Equal(t, before, identity{ID: in.ID, StartedAt: in.State.StartedAt}, "%s is untouched", what)
		assert.True(t, in.State.Running, what)
	}
	require.NoError(t, c.Down(ctx, p, key), "nothing of the service left: a no-op")
	assert.Len(t, serviceContainers(t, api, name, key), 2)
}
