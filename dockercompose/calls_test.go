package dockercompose_test

import (
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/decnet/servicelive/dockercompose"
	"github.com/decnet/servicelive/internal/testimage"
)

// callLog records the Engine API requests of a client.
type callLog struct {
	mu    sync.Mutex
	calls []string
}

var (
	versionRe = regexp.MustCompile(`^/v1\.\d+`)
	idRe      = regexp.MustCompile(`/[0-9a-f]{64}`)
)

func (l *callLog) hook(r *http.Request) error {
	p := versionRe.ReplaceAllString(r.URL.Path, "")
	p = idRe.ReplaceAllString(p, "/{id}")
	l.mu.Lock()
	l.calls = append(l.calls, r.Method+" "+p)
	l.mu.Unlock()
	return nil
}

// take returns the requests recorded since the last take.
func (l *callLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.calls
	l.calls = nil
	return c
}

// countingComposer returns a Composer whose Engine API requests are logged.
func countingComposer(t testing.TB, opts ...dockercompose.Option) (*dockercompose.Composer, *callLog) {
	t.Helper()
	log := &callLog{}
	api, err := client.New(client.FromEnv, client.WithHTTPRequestHook(log.hook))
	require.NoError(t, err)
	t.Cleanup(func() { _ = api.Close() })
	return newComposer(t, append([]dockercompose.Option{dockercompose.WithAPIClient(api)}, opts...)...), log
}

// TestEngineCalls pins the Engine API requests of each call: an Up of a
// service costs 8 requests (4 of them concurrent) where a raw create+start
// costs 2, an Up of a running, unchanged service 5, a Down 3 where a raw
// stop+remove costs 2.
func TestEngineCalls(t *testing.T) {
	t.Parallel()
	api, image := engine(t)
	ctx := t.Context()
	c, log := countingComposer(t)
	name := uniqueProject(t, api)
	p := newProject(name)
	addBase(p, "web1", image, "", "")
	key := addService(p, "web1", "ssh", image, testimage.ModeBanner, nil)

	require.NoError(t, c.Up(ctx, p, "web1"))
	first := log.take()
	t.Logf("first Up of a base (creates the network): %d requests: %s", len(first), strings.Join(first, ", "))
	require.NoError(t, c.Up(ctx, p, key))
	up := log.take()
	t.Logf("Up of a service: %d requests: %s", len(up), strings.Join(up, ", "))
	// The SDK's requests before the create run concurrently (prefetched):
	// compare them as a set.
	// The SDK's listings of containers are answered by inspections by
	// name (O(1) in the engine, where a label-filtered listing is a pass
	// over all the engine's containers).
	observed := []string{
		"GET /containers/" + name + ".web1.ssh/json", // the service's container (SDK's observed state)
		"GET /containers/" + name + ".web1/json",     // the base's container, for "service:web1"
		"GET /images/" + image + "/json",             // SDK: is the image here?
		"GET /networks",                              // SDK: the project's networks
	}
	require.Len(t, up, 8)
	slices.Sort(up[:4])
	assert.Equal(t, append(slices.Clone(observed),
		"POST /containers/create",     // SDK
		"GET /containers/{id}/json",   // SDK: the created container
		"POST /containers/{id}/start", // Composer (by ID), not behind the SDK's process-wide start lock
		"GET /containers/{id}/json",   // Composer: running?
	), up)

	require.NoError(t, c.Up(ctx, p, key))
	again := log.take()
	t.Logf("Up of a running, unchanged service: %d requests: %s", len(again), strings.Join(again, ", "))
	require.Len(t, again, 5)
	slices.Sort(again[:4])
	assert.Equal(t, append(slices.Clone(observed),
		"GET /containers/{id}/json", // Composer: still running? (no create, no start)
	), again)

	require.NoError(t, c.Down(ctx, p, key))
	down := log.take()
	t.Logf("Down of a service: %d requests: %s", len(down), strings.Join(down, ", "))
	assert.Equal(t, []string{"GET /containers/" + name + ".web1.ssh/json", "POST /containers/{id}/stop", "DELETE /containers/{id}"}, down)
}

// TestMeasure compares the Composer with the engine's floor on this
// machine: medians of paired rounds of Up against raw create+start of the
// same container configuration, Down against raw stop+remove, Up with and
// without the wait, and 50 concurrent Ups against 50 concurrent raw
// create+starts. It only runs with SLTEST_MEASURE=1 (it takes a while).
func TestMeasure(t *testing.T) {
	if os.Getenv("SLTEST_MEASURE") != "1" {
		t.Skip("set SLTEST_MEASURE=1 to measure")
	}
	api, image := engine(t)
	ctx := t.Context()
	// The engine's time for create and start within an Up, to tell the
	// Composer's own cost from the engine's (noisy) one.
	var mu sync.Mutex
	began := map[*http.Request]time.Time{}
	var engineTime time.Duration
	timedAPI, err := client.New(client.FromEnv,
		client.WithHTTPRequestHook(func(r *http.Request) error {
			if r.Method == http.MethodPost && (strings.HasSuffix(r.URL.Path, "/create") || strings.HasSuffix(r.URL.Path, "/start")) {
				mu.Lock()
				began[r] = time.Now()
				mu.Unlock()
			}
			return nil
		}),
		client.WithHTTPResponseHook(func(r *http.Response) {
			mu.Lock()
			defer mu.Unlock()
			for req, t0 := range began {
				if req.URL.Path == r.Request.URL.Path && req.Method == r.Request.Method {
					engineTime += time.Since(t0)
					delete(began, req)
				}
			}
		}))
	require.NoError(t, err)
	t.Cleanup(func() { _ = timedAPI.Close() })
	c := newComposer(t, dockercompose.WithAPIClient(timedAPI))
	noWait := newComposer(t, dockercompose.WithWait(false))
	name := uniqueProject(t, api)
	const rounds = 15
	const conc = 50

	p := newProject(name)
	for i := range conc {
		addBase(p, fmt.Sprintf("web%d", i), image, "", "")
		addService(p, fmt.Sprintf("web%d", i), "ssh", image, testimage.ModeBanner, nil)
	}
	var wg sync.WaitGroup
	for i := range conc {
		wg.Go(func() { require.NoError(t, c.Up(ctx, p, fmt.Sprintf("web%d", i))) })
	}
	wg.Wait()
	key := "web0-ssh"

	// The raw configuration: what the Composer created.
	require.NoError(t, c.Up(ctx, p, key))
	spec := inspect(t, api, name+".web0.ssh")
	require.NoError(t, c.Down(ctx, p, key))
	spec.Config.Hostname = "" // the engine's, from the namespace owner
	rawCreate := func(i int, suffix string) string {
		hc := *spec.HostConfig
		hc.NetworkMode = container.NetworkMode("container:" + name + fmt.Sprintf(".web%d", i))
		res, err := api.ContainerCreate(ctx, client.ContainerCreateOptions{
			Name: fmt.Sprintf("%s.raw%d%s", name, i, suffix), Config: spec.Config, HostConfig: &hc,
		})
		require.NoError(t, err)
		_, err = api.ContainerStart(ctx, res.ID, client.ContainerStartOptions{})
		require.NoError(t, err)
		return res.ID
	}
	rawRemove := func(id string) {
		_, err := api.ContainerStop(ctx, id, client.ContainerStopOptions{})
		require.NoError(t, err)
		_, err = api.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true})
		require.NoError(t, err)
	}
	timed := func(fn func()) time.Duration { t0 := time.Now(); fn(); return time.Since(t0) }

	var up, upNoWait, down, rawUp, rawDown, own []time.Duration
	for r := range rounds {
		mu.Lock()
		engineTime = 0
		mu.Unlock()
		d := timed(func() { require.NoError(t, c.Up(ctx, p, key)) })
		up = append(up, d)
		mu.Lock()
		own = append(own, d-engineTime)
		mu.Unlock()
		down = append(down, timed(func() { require.NoError(t, c.Down(ctx, p, key)) }))
		upNoWait = append(upNoWait, timed(func() { require.NoError(t, noWait.Up(ctx, p, key)) }))
		require.NoError(t, c.Down(ctx, p, key))
		var id string
		rawUp = append(rawUp, timed(func() { id = rawCreate(0, fmt.Sprint(r)) }))
		rawDown = append(rawDown, timed(func() { rawRemove(id) }))
	}

	var concUp, concRaw []time.Duration
	for r := range 3 {
		concUp = append(concUp, timed(func() {
			var wg sync.WaitGroup
			for i := range conc {
				wg.Go(func() { assert.NoError(t, c.Up(ctx, p, fmt.Sprintf("web%d-ssh", i))) })
			}
			wg.Wait()
		}))
		for i := range conc {
			wg.Go(func() { assert.NoError(t, c.Down(ctx, p, fmt.Sprintf("web%d-ssh", i))) })
		}
		wg.Wait()
		ids := make([]string, conc)
		concRaw = append(concRaw, timed(func() {
			var wg sync.WaitGroup
			for i := range conc {
				wg.Go(func() { ids[i] = rawCreate(i, fmt.Sprintf("c%d", r)) })
			}
			wg.Wait()
		}))
		for _, id := range ids {
			wg.Go(func() { rawRemove(id) })
		}
		wg.Wait()
	}

	ratio := func(a, b []time.Duration) float64 { return float64(median(a)) / float64(median(b)) }
	t.Logf("Up   %v (min %v max %v) raw create+start %v (min %v max %v): ratio %.3f",
		median(up), slices.Min(up), slices.Max(up), median(rawUp), slices.Min(rawUp), slices.Max(rawUp), ratio(up, rawUp))
	t.Logf("Down %v (min %v max %v) raw stop+remove %v (min %v max %v): ratio %.3f",
		median(down), slices.Min(down), slices.Max(down), median(rawDown), slices.Min(rawDown), slices.Max(rawDown), ratio(down, rawDown))
	t.Logf("Up without wait %v: the wait costs %v", median(upNoWait), median(up)-median(upNoWait))
	t.Logf("Up minus the engine's create and start: %v (min %v max %v)", median(own), slices.Min(own), slices.Max(own))
	t.Logf("%d concurrent Ups %v (min %v max %v), raw %v (min %v max %v): ratio %.3f", conc,
		median(concUp), slices.Min(concUp), slices.Max(concUp), median(concRaw), slices.Min(concRaw), slices.Max(concRaw), ratio(concUp, concRaw))
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
