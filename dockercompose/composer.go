package dockercompose

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/containerd/errdefs"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/context/docker"
	"github.com/docker/compose/v5/pkg/api"
	"github.com/docker/compose/v5/pkg/compose"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/decnet/servicelive"
)

// Composer applies compose services to a Docker Engine through the Docker
// Compose SDK, in-process: no docker CLI, no subprocess, nothing written to
// the process's stdout or stderr. A Composer is safe for concurrent use;
// calls on different services run in parallel, calls on the same service of
// the same project queue. Close it when done.
type Composer struct {
	cfg       config
	log       *slog.Logger
	apiClient client.APIClient // the Composer's own Engine API calls
	ownClient bool             // built by New, closed by Close
	compose   api.Compose
	events    *events
	locks     keyedMutex
	portMu    sync.Mutex // serialises starts of containers publishing ephemeral ports
	builder   builderDecision
	// configFile is the docker CLI's config file (credential helpers
	// removed), for the proxy settings of builds.
	configFile *configfile.ConfigFile
	closed     atomic.Bool
}

var (
	_ servicelive.Composer       = (*Composer)(nil)
	_ servicelive.ProjectRemover = (*Composer)(nil)
)

// New returns a Composer for the Docker Engine chosen by the options
// (WithHost, WithContext, WithAPIClient; by default the one the docker CLI
// would use). It neither contacts the engine nor exits the process: an
// unknown context or a malformed host is an error.
func New(opts ...Option) (*Composer, error) {
	cfg := defaultConfig()
	if err := cfg.apply(opts); err != nil {
		return nil, err
	}
	return newComposer(cfg)
}

// apply applies opts to cfg.
func (cfg *config) apply(opts []Option) error {
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(cfg); err != nil {
			return err
		}
	}
	return nil
}

// newComposer is New once the options are applied.
func newComposer(cfg config) (*Composer, error) {
	if cfg.host != "" && cfg.contextName != "" {
		return nil, errors.New("dockercompose: WithHost and WithContext exclude each other")
	}
	if cfg.apiClient != nil && (cfg.host != "" || cfg.contextName != "") {
		return nil, errors.New("dockercompose: WithAPIClient excludes WithHost and WithContext")
	}
	if cfg.builder == builderAuto {
		b, err := buildKitFromEnv()
		if err != nil {
			return nil, err
		}
		cfg.builder = b
	}
	log := cfg.logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	cf := loadConfigFile()
	st := contextStore()
	c := &Composer{cfg: cfg, log: log, events: newEvents(cfg.progress)}
	var t target
	if cfg.apiClient != nil {
		c.apiClient = cfg.apiClient
		t = target{contextName: defaultContextName, endpoint: docker.Endpoint{EndpointMeta: docker.EndpointMeta{Host: cfg.apiClient.DaemonHost()}}}
	} else {
		var err error
		if t, err = resolveTarget(&cfg, cf, st); err != nil {
			return nil, err
		}
		apiClient, err := newAPIClient(t, cf)
		if err != nil {
			return nil, err
		}
		c.apiClient, c.ownClient = apiClient, true
	}

	c.configFile = sanitizeConfig(cf)
	dockerCli := newCLI(&engineClient{APIClient: c.apiClient}, c.configFile, t.contextName, t.endpoint, st)
	svc, err := compose.NewComposeService(dockerCli,
		compose.WithEventProcessor(c.events),
		compose.WithContextInfo(dockerCli.contextInfo()),
		// The SDK prompts only before recreating a volume whose
		// configuration changed, which loses its data: decline.
		compose.WithPrompt(func(msg string, _ bool) (bool, error) {
			log.Warn("dockercompose: declined", "prompt", msg)
			return false, nil
		}),
	)
	if err != nil {
		if c.ownClient {
			_ = c.apiClient.Close()
		}
		return nil, fmt.Errorf("dockercompose: %w", err)
	}
	c.compose = svc
	sdkLog.install()
	log.Debug("dockercompose: new composer", "host", c.apiClient.DaemonHost(), "context", t.contextName)
	return c, nil
}

// Client returns the Engine API client the Composer uses. It stays valid
// until Close (when New built it) or until its owner closes it (WithAPIClient).
func (c *Composer) Client() client.APIClient { return c.apiClient }

// Close releases the Composer's resources: the API client New built (an
// injected one is left to its owner). Calls after Close fail.
func (c *Composer) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	if c.ownClient {
		if err := c.apiClient.Close(); err != nil {
			return fmt.Errorf("dockercompose: close: %w", err)
		}
	}
	return nil
}

// Up creates and starts exactly the compose service named service of
// project, leaving every other service (its dependencies included) alone:
// `docker compose up -d --no-deps --build <service>`. An up-to-date running
// container is left as it is (inspected once, neither started nor watched
// again); a container whose configuration or image changed is recreated; a
// service with a build section is (re)built first, with BuildKit in-process
// through the Engine API, or the classic builder where BuildKit is not
// used (see WithBuildKit); a failed BuildKit build is a *BuildError.
//
// By default Up returns once the container is running. An image that cannot
// be had, a container that cannot start or is not running right after its
// start is an error carrying the engine's error: a *PullError or a
// *MissingImageError for the first (no container is created), a
// *ContainerError, with the container's last log lines, for the others (a
// port already allocated is one). A field Up cannot honour is an
// *UnsupportedError, before any request. project is not modified.
//
// Up removes only a container it created. When an Up that created (or
// recreated) the service's container fails afterwards, for whatever reason
// (the engine refused the start, the container does not run, the wait
// timeout, ctx cancelled, a transport error), it removes that container,
// through a context of its own bounded to 30 seconds, and leaves no
// container of the service behind. A container the Up found and kept, up to
// date, is never removed: a running one is not touched at all, a stopped one
// that fails to start is reported (ContainerError.Removed is false) and
// left for the caller to reconcile. So a cancelled Up, say one of a
// deployment whose other Up failed, never takes down a running service.
//
// A container that holds the service's container name but is not the
// service's (it has no compose labels, as an operator's own container, or
// those of another project or service) is not removed either: Up returns a
// *NameConflictError, which matches servicelive.ErrConflict, as `docker
// compose up` stops on the name conflict. Only a leftover labelled with the
// service's project and service that the Compose SDK does not find (one
// without a configuration hash, as a process killed mid-create leaves) is
// removed and replaced.
func (c *Composer) Up(ctx context.Context, project *types.Project, service string) error {
	if c.closed.Load() {
		return errClosed
	}
	p, svc, visible, err := prepare(project, service)
	if err != nil {
		return err
	}
	wrap := func(err error) error {
		return fmt.Errorf("dockercompose: up %s in project %s: %w", service, p.Name, err)
	}
	if err := ctx.Err(); err != nil {
		return wrap(err)
	}
	name := containerName(p, svc)
	a := attribution{op: "up", project: p.Name, service: service}
	defer c.events.track(a, "Container "+name, "Image "+api.GetImageNameOrDefault(svc, p.Name))()

	unlock, err := c.locks.lock(ctx, p.Name+"\x00"+service)
	if err != nil {
		return wrap(err)
	}
	defer unlock()
	defer sdkLog.enter(c.log)()

	t0 := time.Now()
	sdkBuild := false
	if svc.Build != nil {
		bk, err := c.useBuildKit(ctx)
		if err != nil {
			return wrap(err)
		}
		if bk {
			if err := c.buildKitBuild(ctx, a, p, svc); err != nil {
				return wrap(err)
			}
		} else {
			sdkBuild = true // the Compose SDK's classic builder
		}
	}
	target, err := c.create(ctx, p, svc, name, visible, sdkBuild)
	if err != nil {
		return wrap(err)
	}
	t1 := time.Now()
	if err := c.start(ctx, a, svc, name, target); err != nil {
		return wrap(err)
	}
	c.log.LogAttrs(ctx, slog.LevelDebug, "dockercompose: up",
		slog.String("project", p.Name), slog.String("service", service),
		slog.Bool("created", target.created),
		slog.Duration("create", t1.Sub(t0)), slog.Duration("start", time.Since(t1)))
	return nil
}

// upTarget is the service's container once the SDK's Create converged it.
type upTarget struct {
	id      string
	created bool // this Up created (or recreated) it: its own to remove
}

// create converges the service's container with the SDK's Create: the
// container is created (or recreated when it diverged) but not started,
// since the SDK serialises every start of the process behind one mutex.
// The SDK sees only the containers of visible services (see upScope). It
// returns the service's container; when it fails, it removes the containers
// it created.
func (c *Composer) create(ctx context.Context, p *types.Project, svc types.ServiceConfig, name string, visible []string, sdkBuild bool) (upTarget, error) {
	opts := api.CreateOptions{
		Services:             []string{svc.Name},
		Recreate:             api.RecreateDiverged,
		RecreateDependencies: api.RecreateNever,
		RemoveOrphans:        false,
		IgnoreOrphans:        true,
		Inherit:              true,
		Timeout:              c.cfg.stopTimeout,
		QuietPull:            true,
	}
	if sdkBuild {
		opts.Build = &api.BuildOptions{Services: []string{svc.Name}, Quiet: true}
	}
	rec := &upRecord{service: svc.Name}
	names := map[string]string{}
	for _, s := range visible {
		sc, ok := p.Services[s]
		if !ok {
			sc, ok = p.DisabledServices[s]
		}
		if n, single := nameOf(sc); ok && single {
			names[s] = n
		}
	}
	run := func() error {
		rec.mu.Lock()
		rec.conflict = ""
		rec.mu.Unlock()
		scope := &upScope{project: p.Name, services: visible, names: names, volumes: len(p.Volumes) > 0, rec: rec}
		err := c.compose.Create(withUpScope(ctx, scope), p, opts)
		scope.wait()
		return err
	}
	fail := func(err error) (upTarget, error) {
		return upTarget{}, c.abandon(ctx, rec, c.createErr(p, svc, name, err))
	}
	// A conflict or a vanished container is retried, with a bounded backoff:
	// a stale leftover is removed first, and a container another client
	// (say, a process killed mid-Up) is still creating settles meanwhile.
	deadline := time.Now().Add(createRetryWindow)
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		err := run()
		if err == nil {
			target, err := c.converged(ctx, p.Name, svc.Name, name, names[svc.Name], rec)
			if err != nil {
				return fail(err)
			}
			return target, nil
		}
		if ctx.Err() != nil {
			return fail(err)
		}
		switch {
		case errdefs.IsConflict(err):
			// A container holds a name the SDK creates a container under, but
			// the SDK, which finds containers by label, does not own it: a
			// stale leftover, one still being created, or not the service's.
			if rmErr := c.removeStale(ctx, p.Name, svc.Name, rec, err); rmErr != nil {
				var nc *NameConflictError
				if errors.As(rmErr, &nc) {
					return fail(rmErr)
				}
				return fail(errors.Join(err, rmErr))
			}
		case errdefs.IsNotFound(err) && !isImageError(err):
			// A container the SDK listed vanished before it used it.
		default:
			return fail(err)
		}
		if time.Now().After(deadline) {
			return fail(err)
		}
		c.log.LogAttrs(ctx, slog.LevelDebug, "dockercompose: retrying create",
			slog.String("project", p.Name), slog.String("service", svc.Name), slog.Any("error", err))
		if err := sleep(ctx, delay); err != nil {
			return fail(err)
		}
	}
}

// converged returns the service's container after the SDK's Create: the
// last one the SDK created (and did not remove), else the one the SDK found
// and kept (see pickContainer).
func (c *Composer) converged(ctx context.Context, project, service, name, named string, rec *upRecord) (upTarget, error) {
	rec.mu.Lock()
	for _, id := range slices.Backward(rec.created) {
		if !rec.removed[id] {
			rec.mu.Unlock()
			return upTarget{id: id, created: true}, nil
		}
	}
	listed, observed, removed := rec.listed, rec.observed, maps.Clone(rec.removed)
	rec.mu.Unlock()
	if !listed {
		var err error
		if observed, err = c.serviceContainers(ctx, project, service, named); err != nil {
			return upTarget{}, err
		}
	}
	ctr, ok := pickContainer(observed, project, service, name, removed)
	if !ok {
		return upTarget{}, fmt.Errorf("no container of service %s after create", service)
	}
	return upTarget{id: ctr.ID}, nil
}

// pickContainer returns, of ctrs, the service's container Up starts: a
// container labelled with project and service, not a one-off, not in
// removed; the one called name first, then the lowest container number,
// then by name and ID.
func pickContainer(ctrs []container.Summary, project, service, name string, removed map[string]bool) (container.Summary, bool) {
	var candidates []container.Summary
	for _, ctr := range ctrs {
		if ctr.Labels[api.ProjectLabel] == project && isServiceContainer(ctr.Labels, service) && !removed[ctr.ID] {
			candidates = append(candidates, ctr)
		}
	}
	if len(candidates) == 0 {
		return container.Summary{}, false
	}
	named := func(ctr container.Summary) int {
		if canonicalName(ctr) == name {
			return 0
		}
		return 1
	}
	number := func(ctr container.Summary) int {
		if n, err := strconv.Atoi(ctr.Labels[api.ContainerNumberLabel]); err == nil {
			return n
		}
		return math.MaxInt
	}
	return slices.MinFunc(candidates, func(a, b container.Summary) int {
		return cmp.Or(
			cmp.Compare(named(a), named(b)),
			cmp.Compare(number(a), number(b)),
			strings.Compare(canonicalName(a), canonicalName(b)),
			strings.Compare(a.ID, b.ID),
		)
	}), true
}

// abandon removes, after a failed create, the containers of the service
// the SDK created meanwhile (and did not remove), through a context of its
// own, and returns err, completed when a removal failed.
func (c *Composer) abandon(ctx context.Context, rec *upRecord, err error) error {
	rec.mu.Lock()
	var ids []string
	for _, id := range rec.created {
		if !rec.removed[id] {
			ids = append(ids, id)
		}
	}
	rec.mu.Unlock()
	if len(ids) == 0 {
		return err
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	for _, id := range ids {
		c.log.LogAttrs(ctx, slog.LevelDebug, "dockercompose: removing container of a failed create",
			slog.String("service", rec.service), slog.String("container", id))
		if _, rmErr := c.apiClient.ContainerRemove(cctx, id, client.ContainerRemoveOptions{Force: true}); rmErr != nil && !gone(rmErr) {
			err = fmt.Errorf("%w; removing container %s it created failed too: %v", err, shortID(id), rmErr)
		}
	}
	return err
}

// createErr names the container and its image in a create error.
func (c *Composer) createErr(p *types.Project, svc types.ServiceConfig, name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("create %s from image %s: %w", name, api.GetImageNameOrDefault(svc, p.Name), err)
}

// gone reports an error removing a container (with Force) that is gone or
// going: not found, or its removal already in progress.
func gone(err error) bool {
	return errdefs.IsNotFound(err) || removalInProgress(err)
}

// removalInProgress reports the engine's answer to a removal of a container
// that another removal is already removing. Docker Engine 20.10 (and later)
// answers 409 Conflict, "removal of container <id> is already in progress",
// and nothing else tells this conflict from another: no error code, and no
// inspectable state while the container still runs (its state reads
// "removing" only once it stopped). This is the one place where an engine
// error is classified by its text.
func removalInProgress(err error) bool {
	return errdefs.IsConflict(err) && strings.Contains(err.Error(), "is already in progress")
}

// isImageError reports an error about an image that cannot be had (a
// failed pull, or a create without the image), which a retry cannot fix.
func isImageError(err error) bool {
	var pe *PullError
	var me *MissingImageError
	return errors.As(err, &pe) || errors.As(err, &me)
}

// removeStale makes way after a create of the SDK conflicted (cause) on a
// container name: it removes the container holding the name when that is a
// leftover of the service the SDK did not find, and returns a
// *NameConflictError, removing nothing, when the holder is not the
// service's (no compose labels, another project or service, a one-off). A
// holder the SDK found is left to the next attempt, as is a conflict on no
// container name.
func (c *Composer) removeStale(ctx context.Context, project, service string, rec *upRecord, cause error) error {
	rec.mu.Lock()
	name, observed := rec.conflict, rec.observed
	rec.mu.Unlock()
	if name == "" {
		return nil
	}
	res, err := c.apiClient.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect container %s holding the name: %w", name, err)
	}
	var labels map[string]string
	if res.Container.Config != nil {
		labels = res.Container.Config.Labels
	}
	if labels[api.ProjectLabel] != project || !isServiceContainer(labels, service) {
		return &NameConflictError{
			Name: name, Project: project, Service: service,
			HolderID: res.Container.ID, HolderProject: labels[api.ProjectLabel], HolderService: labels[api.ServiceLabel],
			Err: cause,
		}
	}
	if slices.ContainsFunc(observed, func(ctr container.Summary) bool { return ctr.ID == res.Container.ID }) {
		return nil
	}
	c.log.LogAttrs(ctx, slog.LevelDebug, "dockercompose: removing stale container",
		slog.String("project", project), slog.String("service", service), slog.String("container", name))
	if _, err := c.apiClient.ContainerRemove(ctx, res.Container.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !gone(err) {
		return fmt.Errorf("remove stale container %s: %w", name, err)
	}
	return nil
}

// start makes sure the service's container runs. A container the SDK found
// and kept that runs is left as it is; any other is started through the
// Engine API and, unless waiting is off, checked to run. When it does not,
// it is removed if this Up created it (see fail).
func (c *Composer) start(ctx context.Context, a attribution, svc types.ServiceConfig, name string, t upTarget) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.waitTimeout)
	defer cancel()
	resource := "Container " + name
	if !t.created {
		res, err := c.apiClient.ContainerInspect(ctx, t.id, client.ContainerInspectOptions{})
		if err != nil {
			return fmt.Errorf("inspect %s: %w", name, err)
		}
		if st := res.Container.State; st != nil && st.Running && !st.Restarting && !st.Paused {
			return nil // kept running (the SDK reported it "Running")
		}
	}
	var exited <-chan struct{}
	if c.cfg.wait && c.cfg.startGrace > 0 {
		var stop func()
		exited, stop = c.watchExit(ctx, t.id)
		defer stop()
	}
	c.events.emit(a, resource, StatusWorking, api.StatusStarting, "")
	startContainer := func() error {
		if publishesEphemeralPorts(svc) {
			// The engine picks ephemeral host ports non-atomically: two
			// concurrent starts can get the same one (why the SDK
			// serialises every start). Only these starts queue, and only
			// per Composer.
			c.portMu.Lock()
			defer c.portMu.Unlock()
		}
		_, err := c.apiClient.ContainerStart(ctx, t.id, client.ContainerStartOptions{})
		return err
	}
	if err := startContainer(); err != nil {
		c.events.emit(a, resource, StatusError, api.StatusError, err.Error())
		return c.fail(ctx, t, name, nil, err)
	}
	c.events.emit(a, resource, StatusDone, api.StatusStarted, "")
	if !c.cfg.wait {
		return nil
	}
	return c.waitRunning(ctx, a, t, name, exited)
}

// publishesEphemeralPorts reports whether svc publishes a port on a host
// port the engine chooses.
func publishesEphemeralPorts(svc types.ServiceConfig) bool {
	for _, p := range svc.Ports {
		if p.Published == "" || strings.Contains(p.Published, "-") {
			return true
		}
	}
	return false
}

// watchExit asks the engine, before the start, to report the container's
// next exit; the returned channel is closed when it does. stop ends the
// watch (and its goroutine).
func (c *Composer) watchExit(ctx context.Context, ref string) (<-chan struct{}, func()) {
	ctx, cancel := context.WithCancel(ctx)
	w := c.apiClient.ContainerWait(ctx, ref, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	exited := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-w.Result:
			close(exited)
		case <-w.Error:
			// Cancelled, or the watch failed: the last inspect decides.
		}
	}()
	return exited, func() { cancel(); <-done }
}

// waitRunning inspects the container at once: running is success, still
// "created" is polled (1 ms, doubling to 50 ms), anything else is a failure.
// With a start grace, a running container must also not exit (exited
// closed) during the grace, and is inspected again after it.
func (c *Composer) waitRunning(ctx context.Context, a attribution, t upTarget, name string, exited <-chan struct{}) error {
	resource := "Container " + name
	delay := time.Millisecond
	var startedAt string
	for {
		res, err := c.apiClient.ContainerInspect(ctx, t.id, client.ContainerInspectOptions{})
		if err != nil {
			return c.fail(ctx, t, name, nil, fmt.Errorf("inspect %s: %w", name, err))
		}
		st := res.Container.State
		switch {
		case st == nil:
			return fmt.Errorf("inspect %s: no state", name)
		case st.Running && !st.Restarting && !st.Paused && (startedAt == "" || st.StartedAt == startedAt):
			if exited != nil && startedAt == "" {
				startedAt = st.StartedAt
				timer := time.NewTimer(c.cfg.startGrace)
				select {
				case <-timer.C:
				case <-exited:
					timer.Stop()
				case <-ctx.Done():
					timer.Stop()
					return c.fail(ctx, t, name, st, ctx.Err())
				}
				continue
			}
			c.events.emit(a, resource, StatusDone, api.StatusRunning, "")
			return nil
		case st.Status == container.StateCreated && st.Error == "" && startedAt == "":
			if err := sleep(ctx, delay); err != nil {
				return c.fail(ctx, t, name, st, err)
			}
			delay = min(2*delay, 50*time.Millisecond)
		default:
			c.events.emit(a, resource, StatusError, api.StatusError, string(st.Status))
			return c.fail(ctx, t, name, st, nil)
		}
	}
}

// fail returns the error describing a container that failed to start or
// run, with its last log lines, and removes the container when this Up
// created it; one the SDK found and kept is left in place (see Up). It runs
// even when ctx is done (the cleanup of a cancelled Up), bounded by its own
// timeout.
func (c *Composer) fail(ctx context.Context, t upTarget, name string, st *container.State, cause error) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	e := &ContainerError{Container: name, Err: cause}
	if st == nil {
		if res, err := c.apiClient.ContainerInspect(cctx, t.id, client.ContainerInspectOptions{}); err == nil {
			st = res.Container.State
		}
	}
	if st != nil {
		e.State, e.ExitCode, e.EngineError = string(st.Status), st.ExitCode, st.Error
		if st.Running {
			e.State = "running"
		}
	}
	e.Logs = c.tailLogs(cctx, t.id, logTail)
	if t.created {
		if _, err := c.apiClient.ContainerRemove(cctx, t.id, client.ContainerRemoveOptions{Force: true}); err != nil && !gone(err) {
			e.RemoveErr = err
		} else {
			e.Removed = true
		}
	}
	if ctx.Err() != nil && cause == nil {
		e.Err = ctx.Err()
	}
	return e
}

// Down stops (within the stop timeout) and removes the containers of the
// compose service named service of project: `stop <service>` + `rm -f
// <service>`. Nothing to remove is not an error. A service with one
// container under a container_name (as servicelive renders them) is looked
// up by that name, at a cost that does not grow with the containers the
// engine holds: a container of the service under another name (renamed out
// of band, or left by a recreate interrupted by a killed process) is then
// left to RemoveProject, unless none holds the name, when Down lists the
// service's containers by label and removes them all. As with compose's stop and
// rm, the service's one-off containers (com.docker.compose.oneoff=True, as
// `compose run` makes) and lifecycle-hook containers
// (com.docker.compose.hook) are not the service's: Down leaves them alone.
func (c *Composer) Down(ctx context.Context, project *types.Project, service string) error {
	if c.closed.Load() {
		return errClosed
	}
	if err := checkProject(project); err != nil {
		return err
	}
	if service == "" {
		return errors.New("dockercompose: down: empty service name")
	}
	wrap := func(err error) error {
		return fmt.Errorf("dockercompose: down %s in project %s: %w", service, project.Name, err)
	}
	if err := ctx.Err(); err != nil {
		return wrap(err)
	}
	unlock, err := c.locks.lock(ctx, project.Name+"\x00"+service)
	if err != nil {
		return wrap(err)
	}
	defer unlock()

	t0 := time.Now()
	named, _ := nameOf(project.Services[service])
	listed, err := c.serviceContainers(ctx, project.Name, service, named)
	if err != nil {
		return wrap(err)
	}
	if len(listed) == 0 && named != "" {
		// None under its name: list, for one under another name.
		if listed, err = c.serviceContainers(ctx, project.Name, service, ""); err != nil {
			return wrap(err)
		}
	}
	ctrs := slices.DeleteFunc(listed, func(ctr container.Summary) bool {
		return ctr.Labels[api.ProjectLabel] != project.Name || !isServiceContainer(ctr.Labels, service)
	})
	if len(ctrs) == 0 {
		return nil
	}
	a := attribution{op: "down", project: project.Name, service: service}
	timeout := c.stopTimeoutSeconds(project.Services[service])
	names := make(map[string]string, len(ctrs))
	ids := make([]string, 0, len(ctrs))
	for _, ctr := range ctrs {
		names[ctr.ID] = canonicalName(ctr)
		ids = append(ids, ctr.ID)
	}
	err = forEach(ctx, ids, func(ctx context.Context, id string) error {
		resource := "Container " + names[id]
		c.events.emit(a, resource, StatusWorking, api.StatusStopping, "")
		if _, err := c.apiClient.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: timeout}); err != nil {
			if errdefs.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("stop %s: %w", names[id], err)
		}
		c.events.emit(a, resource, StatusDone, api.StatusStopped, "")
		c.events.emit(a, resource, StatusWorking, api.StatusRemoving, "")
		if _, err := c.apiClient.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true}); err != nil && !gone(err) {
			return fmt.Errorf("remove %s: %w", names[id], err)
		}
		c.events.emit(a, resource, StatusDone, api.StatusRemoved, "")
		return nil
	})
	if err != nil {
		return wrap(err)
	}
	c.log.LogAttrs(ctx, slog.LevelDebug, "dockercompose: down",
		slog.String("project", project.Name), slog.String("service", service),
		slog.Int("containers", len(ids)), slog.Duration("took", time.Since(t0)))
	return nil
}

// RemoveProject removes every container labelled with project's name
// (com.docker.compose.project), killing running ones, and then the
// networks the project created; never an external network, never anything
// of another project. As `docker compose down` does, containers that join
// another's network namespace (a decky's services) go before the
// containers that own one (the bases). When both went at once, Docker 20.10
// under load sometimes kept endpoints and then refused to remove the
// network (about 6 of 30 teardowns of 40 containers); the order is
// compose's own, and a network the engine still refuses (active endpoints
// being released) is tried again for up to networkRemoveWait.
func (c *Composer) RemoveProject(ctx context.Context, project *types.Project) error {
	if c.closed.Load() {
		return errClosed
	}
	if err := checkProject(project); err != nil {
		return err
	}
	wrap := func(err error) error {
		return fmt.Errorf("dockercompose: remove project %s: %w", project.Name, err)
	}
	if err := ctx.Err(); err != nil {
		return wrap(err)
	}
	a := attribution{op: "remove-project", project: project.Name}
	t0 := time.Now()
	res, err := c.apiClient.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", api.ProjectLabel+"="+project.Name),
	})
	if err != nil {
		return wrap(err)
	}
	var joined, owners []string // network namespace joiners first, then the rest
	names := make(map[string]string, len(res.Items))
	for _, ctr := range res.Items {
		if ctr.Labels[api.ProjectLabel] != project.Name {
			continue
		}
		names[ctr.ID] = canonicalName(ctr)
		if strings.HasPrefix(ctr.HostConfig.NetworkMode, "container:") {
			joined = append(joined, ctr.ID)
		} else {
			owners = append(owners, ctr.ID)
		}
	}
	remove := func(ctx context.Context, id string) error {
		resource := "Container " + names[id]
		c.events.emit(a, resource, StatusWorking, api.StatusRemoving, "")
		if _, err := c.apiClient.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true}); err != nil && !gone(err) {
			return fmt.Errorf("remove container %s: %w", names[id], err)
		}
		c.events.emit(a, resource, StatusDone, api.StatusRemoved, "")
		return nil
	}
	for _, ids := range [][]string{joined, owners} {
		if err := forEach(ctx, ids, remove); err != nil {
			return wrap(err)
		}
	}

	external := map[string]bool{}
	for key, n := range project.Networks {
		if n.External {
			external[key] = true
			if n.Name != "" {
				external[n.Name] = true
			}
		}
	}
	nets, err := c.apiClient.NetworkList(ctx, client.NetworkListOptions{
		Filters: make(client.Filters).Add("label", api.ProjectLabel+"="+project.Name),
	})
	if err != nil {
		return wrap(err)
	}
	var errs []error
	for _, n := range nets.Items {
		if n.Labels[api.ProjectLabel] != project.Name || external[n.Name] {
			continue
		}
		c.events.emit(a, "Network "+n.Name, StatusWorking, api.StatusRemoving, "")
		if err := c.removeNetwork(ctx, n.ID); err != nil {
			errs = append(errs, fmt.Errorf("remove network %s: %w", n.Name, err))
			continue
		}
		c.events.emit(a, "Network "+n.Name, StatusDone, api.StatusRemoved, "")
	}
	if err := errors.Join(errs...); err != nil {
		return wrap(err)
	}
	c.log.LogAttrs(ctx, slog.LevelDebug, "dockercompose: remove project",
		slog.String("project", project.Name), slog.Int("containers", len(names)),
		slog.Duration("took", time.Since(t0)))
	return nil
}

// networkRemoveWait bounds how long RemoveProject tries again to remove a
// network the engine refuses while it releases the endpoints of the
// containers just removed.
const networkRemoveWait = 10 * time.Second

// removeNetwork removes network id; a network already gone is not an error.
// A refusal (the engine answers 403 or 409 while endpoints remain) is tried
// again with backoff for up to networkRemoveWait.
func (c *Composer) removeNetwork(ctx context.Context, id string) error {
	deadline := time.Now().Add(networkRemoveWait)
	for pause := 50 * time.Millisecond; ; pause = min(2*pause, time.Second) {
		_, err := c.apiClient.NetworkRemove(ctx, id, client.NetworkRemoveOptions{})
		switch {
		case err == nil || errdefs.IsNotFound(err):
			return nil
		case !errdefs.IsConflict(err) && !errdefs.IsPermissionDenied(err), time.Now().Add(pause).After(deadline):
			return err
		}
		if err := sleep(ctx, pause); err != nil {
			return err
		}
	}
}

// serviceContainers lists every container (any state) of a compose
// service, by its compose labels; with a name, only the container of that
// name, if it has those labels, is looked up (see nameOf).
func (c *Composer) serviceContainers(ctx context.Context, project, service, name string) ([]container.Summary, error) {
	options := client.ContainerListOptions{
		All: true,
		Filters: make(client.Filters).
			Add("label", api.ProjectLabel+"="+project).
			Add("label", api.ServiceLabel+"="+service),
	}
	if name != "" {
		items, _, err := containerByName(ctx, c.apiClient, name, options)
		if err != nil {
			return nil, fmt.Errorf("inspect container %s: %w", name, err)
		}
		return items, nil
	}
	res, err := c.apiClient.ContainerList(ctx, options)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	return res.Items, nil
}

// stopTimeoutSeconds is the stop timeout for svc: WithStopTimeout, else its
// stop_grace_period, else nil (the engine's default for the container).
func (c *Composer) stopTimeoutSeconds(svc types.ServiceConfig) *int {
	var d time.Duration
	switch {
	case c.cfg.stopTimeout != nil:
		d = *c.cfg.stopTimeout
	case svc.StopGracePeriod != nil:
		d = time.Duration(*svc.StopGracePeriod)
	default:
		return nil
	}
	s := int((d + time.Second - 1) / time.Second)
	return &s
}
