package dockercompose

import (
	"context"
	"fmt"
	"io"
	"iter"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/docker/compose/v5/pkg/api"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
	"golang.org/x/sync/errgroup"
)

// engineClient is the API client the Compose SDK gets: the Composer's client
// with these changes (and the error typing of ContainerCreate and
// ImagePull, see there).
//
// NetworkCreate is made safe for concurrent Ups. Engines before API 1.44
// (Docker 20.10 speaks 1.41) create a second network with the same name
// unless the request sets CheckDuplicate, which moby/moby/client v0.6.1 no
// longer sends. Two concurrent Ups of the first services of a project would
// then each create "<project>_default", and the next container create fails
// on the ambiguous name. Here creations are serialised within the Composer,
// and a network that already exists by that exact name is reported as a
// conflict, which the SDK treats as "already there".
//
// ContainerList and VolumeList are narrowed to what an Up needs, when the
// call's context carries an upScope (see withUpScope). The SDK lists every
// container of the project to build its observed state, although an Up of
// one service only looks at the containers of that service and of the
// services it references: the others are "orphans" it ignores. The list
// costs the engine per container of the project; per service it stays
// small. Likewise the SDK lists the project's volumes even when the project
// declares none, to no effect.
type engineClient struct {
	client.APIClient

	netMu sync.Mutex
}

// upScope is what an Up's calls to the SDK need to see.
type upScope struct {
	ctx      context.Context // the Up's
	project  string
	services []string // the service and the services it references
	// names are the container names of the services looked up by name
	// (see nameOf) instead of listed.
	names   map[string]string
	volumes bool // the project declares volumes
	rec     *upRecord

	// The SDK's first request of an Up inspects the image; its next ones
	// list the project's containers and networks, one after the other. The
	// listings are prefetched, concurrently, when the first request is made,
	// and each is served once to the SDK's identical request.
	once       sync.Once
	wg         sync.WaitGroup
	mu         sync.Mutex
	containers *prefetched[client.ContainerListResult]
	networks   *prefetched[client.NetworkListResult]
}

// upRecord is what the SDK saw and did during the Create of one Up, over
// all its attempts: what Up needs to tell a container it created (its own to
// discard) from one it found and kept (never its own to remove).
type upRecord struct {
	service string // the service the Up converges

	mu       sync.Mutex
	listed   bool                // observed holds a listing
	observed []container.Summary // the last listing of the SDK's observed state
	created  []string            // the service's containers the SDK created, in order
	removed  map[string]bool     // the containers the SDK removed
	conflict string              // the name of the last create that conflicted
}

// observe records a listing of the SDK's observed state.
func (r *upRecord) observe(items []container.Summary) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.listed, r.observed = true, items
}

// create records a container create of the SDK.
func (r *upRecord) create(options client.ContainerCreateOptions, res client.ContainerCreateResult, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err == nil && res.ID != "" && options.Config != nil && isServiceContainer(options.Config.Labels, r.service):
		r.created = append(r.created, res.ID)
	case errdefs.IsConflict(err):
		r.conflict = options.Name
	}
}

// remove records a container removal of the SDK.
func (r *upRecord) remove(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.removed == nil {
		r.removed = map[string]bool{}
	}
	r.removed[id] = true
}

// isServiceContainer reports whether labels are those of a (non-one-off)
// container of service; the project is the Up's, which the SDK's requests
// are filtered by.
func isServiceContainer(labels map[string]string, service string) bool {
	return labels[api.ServiceLabel] == service && labels[api.OneoffLabel] != "True" && labels[api.HookLabel] == ""
}

type prefetched[T any] struct {
	done chan struct{}
	res  T
	err  error
}

type upScopeKey struct{}

// withUpScope narrows the SDK's listings during ctx to scope.
func withUpScope(ctx context.Context, scope *upScope) context.Context {
	scope.ctx = ctx
	return context.WithValue(ctx, upScopeKey{}, scope)
}

// wait waits for the prefetches, if any, to end.
func (s *upScope) wait() { s.wg.Wait() }

// scopeOf returns the scope of ctx if filters list the scope's project.
func scopeOf(ctx context.Context, filters client.Filters) *upScope {
	scope, _ := ctx.Value(upScopeKey{}).(*upScope)
	if scope == nil || !filters["label"][api.ProjectLabel+"="+scope.project] {
		return nil
	}
	return scope
}

// The filters of the SDK's listings of an Up's observed state.
func (s *upScope) containerFilters() client.Filters {
	return make(client.Filters).Add("label", api.ProjectLabel+"="+s.project, api.ConfigHashLabel)
}

func (s *upScope) networkFilters() client.Filters {
	return make(client.Filters).Add("label", api.ProjectLabel+"="+s.project)
}

// prefetch starts the listings of the observed state, once per scope.
func (e *engineClient) prefetch(ctx context.Context) {
	scope, _ := ctx.Value(upScopeKey{}).(*upScope)
	if scope == nil {
		return
	}
	scope.once.Do(func() {
		cs := &prefetched[client.ContainerListResult]{done: make(chan struct{})}
		ns := &prefetched[client.NetworkListResult]{done: make(chan struct{})}
		scope.mu.Lock()
		scope.containers, scope.networks = cs, ns
		scope.mu.Unlock()
		scope.wg.Add(2)
		go func() {
			defer scope.wg.Done()
			defer close(cs.done)
			cs.res, cs.err = e.listScoped(scope.ctx, scope, client.ContainerListOptions{All: true, Filters: scope.containerFilters()})
			if cs.err == nil && scope.rec != nil {
				scope.rec.observe(cs.res.Items)
			}
		}()
		go func() {
			defer scope.wg.Done()
			defer close(ns.done)
			ns.res, ns.err = e.APIClient.NetworkList(scope.ctx, client.NetworkListOptions{Filters: scope.networkFilters()})
		}()
	})
}

// takeContainers returns the prefetched container listing if options is
// the request it answers and it was not served yet.
func (s *upScope) takeContainers(ctx context.Context, options client.ContainerListOptions) (*prefetched[client.ContainerListResult], bool) {
	return take(ctx, &s.mu, &s.containers, func() bool {
		return options.All && filtersEqual(options.Filters, s.containerFilters())
	})
}

// takeNetworks returns the prefetched network listing if options is the
// request it answers and it was not served yet.
func (s *upScope) takeNetworks(ctx context.Context, options client.NetworkListOptions) (*prefetched[client.NetworkListResult], bool) {
	return take(ctx, &s.mu, &s.networks, func() bool { return filtersEqual(options.Filters, s.networkFilters()) })
}

// take hands out the prefetched result in *slot, once, when match holds
// (called under mu), waiting until it is there or ctx is done.
func take[T any](ctx context.Context, mu *sync.Mutex, slot **prefetched[T], match func() bool) (*prefetched[T], bool) {
	mu.Lock()
	p := *slot
	ok := p != nil && match()
	if ok {
		*slot = nil
	}
	mu.Unlock()
	if !ok {
		return nil, false
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return &prefetched[T]{err: ctx.Err()}, true
	}
	return p, true
}

func filtersEqual(a, b client.Filters) bool {
	if len(a) != len(b) {
		return false
	}
	for term, values := range a {
		if len(values) != len(b[term]) {
			return false
		}
		for v, on := range values {
			if b[term][v] != on {
				return false
			}
		}
	}
	return true
}

// ImageInspect inspects the image; under an Up's scope, it first starts the
// prefetch of the listings the SDK makes next.
func (e *engineClient) ImageInspect(ctx context.Context, image string, opts ...client.ImageInspectOption) (client.ImageInspectResult, error) {
	e.prefetch(ctx)
	return e.APIClient.ImageInspect(ctx, image, opts...)
}

// NetworkList serves the prefetched listing of the Up's project networks.
func (e *engineClient) NetworkList(ctx context.Context, options client.NetworkListOptions) (client.NetworkListResult, error) {
	if scope := scopeOf(ctx, options.Filters); scope != nil {
		if p, ok := scope.takeNetworks(ctx, options); ok {
			return p.res, p.err
		}
	}
	return e.APIClient.NetworkList(ctx, options)
}

// ContainerList lists the containers of the scope's services only, one
// (concurrent) request per service, when ctx has a scope and the request
// lists the scope's project without naming a service; the prefetched
// listing answers the SDK's first such request.
func (e *engineClient) ContainerList(ctx context.Context, options client.ContainerListOptions) (client.ContainerListResult, error) {
	scope := scopeOf(ctx, options.Filters)
	if scope == nil {
		return e.APIClient.ContainerList(ctx, options)
	}
	if p, ok := scope.takeContainers(ctx, options); ok {
		return p.res, p.err
	}
	res, err := e.listScoped(ctx, scope, options)
	if err == nil && scope.rec != nil && options.All && filtersEqual(options.Filters, scope.containerFilters()) {
		scope.rec.observe(res.Items)
	}
	return res, err
}

// ContainerCreate creates a container; under an Up's scope, it records the
// creation (or the name that conflicted). A creation the engine refuses as
// not found is a *MissingImageError when the image is missing: the other
// "not found" of a create, a container the configuration refers to
// (network_mode "container:<id>" for a base that vanished), is worth a
// retry, a missing image is not. The engine tells the two apart only in
// its message, so the image is inspected.
func (e *engineClient) ContainerCreate(ctx context.Context, options client.ContainerCreateOptions) (client.ContainerCreateResult, error) {
	res, err := e.APIClient.ContainerCreate(ctx, options)
	if errdefs.IsNotFound(err) && options.Config != nil && options.Config.Image != "" {
		if _, ierr := e.APIClient.ImageInspect(ctx, options.Config.Image); errdefs.IsNotFound(ierr) {
			err = &MissingImageError{Image: options.Config.Image, Err: err}
		}
	}
	if scope, _ := ctx.Value(upScopeKey{}).(*upScope); scope != nil && scope.rec != nil {
		scope.rec.create(options, res, err)
	}
	return res, err
}

// ImagePull pulls the image to its end and returns the outcome as the
// error: a *PullError carrying the engine's typed error, whether the engine
// refused the request or reported the failure in the pull's progress
// stream (which the Compose SDK turns into an untyped error). A successful
// pull returns an empty stream: the SDK pulls quietly, it reads the stream
// only for progress and errors.
func (e *engineClient) ImagePull(ctx context.Context, ref string, options client.ImagePullOptions) (client.ImagePullResponse, error) {
	res, err := e.APIClient.ImagePull(ctx, ref, options)
	if err == nil {
		err = res.Wait(ctx) // closes the stream
	}
	if err != nil {
		return nil, &PullError{Image: ref, Err: err}
	}
	return pulled{}, nil
}

// pulled is the (empty) progress stream of a pull that succeeded.
type pulled struct{}

func (pulled) Read([]byte) (int, error) { return 0, io.EOF }
func (pulled) Close() error             { return nil }
func (pulled) Wait(context.Context) error {
	return nil
}
func (pulled) JSONMessages(context.Context) iter.Seq2[jsonstream.Message, error] {
	return func(func(jsonstream.Message, error) bool) {}
}

// ContainerRemove removes a container; under an Up's scope, it records the
// removal.
func (e *engineClient) ContainerRemove(ctx context.Context, id string, options client.ContainerRemoveOptions) (client.ContainerRemoveResult, error) {
	res, err := e.APIClient.ContainerRemove(ctx, id, options)
	if scope, _ := ctx.Value(upScopeKey{}).(*upScope); scope != nil && scope.rec != nil && (err == nil || errdefs.IsNotFound(err)) {
		scope.rec.remove(id)
	}
	return res, err
}

// listScoped lists the containers options asks for, restricted to the
// scope's services (unless options names a service already): one request
// per service, concurrent, an inspection by name for a service with a
// single named container (see nameOf), else a listing by label.
func (e *engineClient) listScoped(ctx context.Context, scope *upScope, options client.ContainerListOptions) (client.ContainerListResult, error) {
	if len(scope.services) == 0 {
		return e.APIClient.ContainerList(ctx, options)
	}
	for label := range options.Filters["label"] {
		if strings.HasPrefix(label, api.ServiceLabel+"=") {
			return e.APIClient.ContainerList(ctx, options)
		}
	}
	results := make([][]container.Summary, len(scope.services))
	g, gctx := errgroup.WithContext(ctx)
	for i, service := range scope.services {
		g.Go(func() error {
			o := options
			o.Filters = options.Filters.Clone().Add("label", api.ServiceLabel+"="+service)
			if name, ok := scope.names[service]; ok {
				items, ok, err := containerByName(gctx, e.APIClient, name, o)
				if ok {
					results[i] = items
					return err
				}
			}
			res, err := e.APIClient.ContainerList(gctx, o)
			results[i] = res.Items
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return client.ContainerListResult{}, err
	}
	var out client.ContainerListResult
	seen := map[string]bool{}
	for _, items := range results {
		for _, ctr := range items {
			if !seen[ctr.ID] {
				seen[ctr.ID] = true
				out.Items = append(out.Items, ctr)
			}
		}
	}
	return out, nil
}

// VolumeList answers "none" without asking the engine when ctx has a scope
// whose project declares no volume.
func (e *engineClient) VolumeList(ctx context.Context, options client.VolumeListOptions) (client.VolumeListResult, error) {
	if scope := scopeOf(ctx, options.Filters); scope != nil && !scope.volumes {
		return client.VolumeListResult{}, nil
	}
	return e.APIClient.VolumeList(ctx, options)
}

// NetworkCreate creates network name unless a network of that exact name
// exists already (then it returns a conflict error, as API ≥ 1.44 engines do).
func (e *engineClient) NetworkCreate(ctx context.Context, name string, options client.NetworkCreateOptions) (client.NetworkCreateResult, error) {
	e.netMu.Lock()
	defer e.netMu.Unlock()
	res, err := e.APIClient.NetworkList(ctx, client.NetworkListOptions{
		Filters: make(client.Filters).Add("name", name),
	})
	if err != nil {
		return client.NetworkCreateResult{}, err
	}
	for _, n := range res.Items {
		if n.Name == name {
			return client.NetworkCreateResult{ID: n.ID}, fmt.Errorf("network with name %s already exists: %w", name, errdefs.ErrConflict)
		}
	}
	return e.APIClient.NetworkCreate(ctx, name, options)
}
