package dockercompose

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/client"

	"github.com/decnet/servicelive"
)

// engineOpenTimeout bounds the opening of a host: building its client and
// asking its engine who it is (see Hosts).
const engineOpenTimeout = 30 * time.Second

// Hosts is a servicelive.Composer that runs each decky on its own Docker
// engine: it routes every call by the host of the service it is about
// (servicelive.ServiceHost, which the Manager renders from Decky.Host) to
// one Composer per engine, opened on first use. Up and Down contact exactly
// the service's engine; Containers and RemoveProject fan out, in parallel,
// to every engine that a host the project names, a host already opened or
// a host of WithKnownHosts reaches. A host that no decky names, that no
// call has opened since the Hosts was made (after a restart, say) and that
// WithKnownHosts does not list cannot be listed or cleared: a Hosts knows
// no other. List the fleet's hosts with WithKnownHosts, so that the old
// containers of a decky moved off a host are found there.
//
// Opening a host asks its engine for its identity (system info: the
// daemon's ID, name and data root). Host names that reach the same engine
// ("" and "unix:///var/run/docker.sock", a context name and its URL,
// "tcp://h:2376" and "tcp://h:2376/") are aliases: they share one Composer,
// each engine is listed and cleared once, and a container found on an
// engine is where a decky on any of its names should be (never
// "misplaced"). A host that fails to open (resolve fails, its engine does
// not answer) is tried again by the next call that needs it: only opened
// hosts are kept.
//
// Every error of a host is a *servicelive.HostError naming it; a call that
// spans hosts completes on the others and joins one HostError per failing
// host. A Hosts is safe for concurrent use; Close it when done.
type Hosts struct {
	resolve func(host string) ([]Option, error)
	cfg     config // the common options

	mu      sync.Mutex
	engines map[string]*hostEngine  // opened hosts, by name (aliases share one)
	byID    map[string]*hostEngine  // opened engines, by identity
	pending map[string]*openAttempt // hosts being opened, by name
	opening sync.WaitGroup          // the attempts in flight
	closed  bool
}

// hostEngine is one engine, opened.
type hostEngine struct {
	c  *Composer
	id string // its identity (see engineIdentity)
}

// openAttempt is one attempt to open a host, shared by the calls that need
// the host while it runs.
type openAttempt struct {
	done chan struct{} // closed when e or err is set
	e    *hostEngine
	err  error
}

var (
	_ servicelive.Composer        = (*Hosts)(nil)
	_ servicelive.ContainerLister = (*Hosts)(nil)
	_ servicelive.ProjectRemover  = (*Hosts)(nil)
	_ servicelive.HostRouter      = (*Hosts)(nil)
)

// NewHosts routes each decky to the engine its Decky.Host names ("" = the
// default engine, i.e. what New(opts...) would reach). resolve turns a host
// name into the options of that engine's Composer (WithHost, WithContext,
// TLS, ...); it is called lazily, never for "", and once per host opened
// (again after a failed open: see Hosts). Its endpoint option (WithHost,
// WithContext or WithAPIClient) replaces any of opts; opts (WithLogger,
// WithWaitTimeout, ...) apply to every host. A nil resolve is ResolveHost.
// NewHosts contacts no engine.
func NewHosts(resolve func(host string) ([]Option, error), opts ...Option) (*Hosts, error) {
	cfg := defaultConfig()
	if err := cfg.apply(opts); err != nil {
		return nil, err
	}
	if resolve == nil {
		resolve = ResolveHost
	}
	return &Hosts{resolve: resolve, cfg: cfg, engines: map[string]*hostEngine{}, byID: map[string]*hostEngine{}, pending: map[string]*openAttempt{}}, nil
}

// ResolveHost is the default resolve of NewHosts: a host with a scheme
// ("unix:///run/site-a.sock", "tcp://10.0.0.2:2376", "ssh://ops@10.0.0.3")
// is an engine URL (WithHost: TLS from the environment, as `docker -H`
// reads it), any other name a Docker context (WithContext).
func ResolveHost(host string) ([]Option, error) {
	if strings.Contains(host, "://") {
		return []Option{WithHost(host)}, nil
	}
	return []Option{WithContext(host)}, nil
}

// RoutesHosts reports true: a Hosts runs each decky on its own host.
func (h *Hosts) RoutesHosts() bool { return true }

// Engine returns the Composer of host, opening it on first use: resolving
// the host and asking its engine for its identity. Aliases of one engine
// (see Hosts) return the same Composer. It stays valid until Close. A
// failure is not kept: the next call tries again; calls made while an
// attempt runs share it.
func (h *Hosts) Engine(host string) (*Composer, error) {
	e, err := h.engine(context.Background(), host)
	if err != nil {
		return nil, err
	}
	return e.c, nil
}

// engine returns the opened engine of host, opening it if need be; ctx
// bounds the wait, not the attempt (which others may share).
func (h *Hosts) engine(ctx context.Context, host string) (*hostEngine, error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, &servicelive.HostError{Host: host, Err: errClosed}
	}
	if e := h.engines[host]; e != nil {
		h.mu.Unlock()
		return e, nil
	}
	a := h.pending[host]
	if a == nil {
		a = &openAttempt{done: make(chan struct{})}
		h.pending[host] = a
		h.opening.Add(1)
		go h.attempt(host, a)
	}
	h.mu.Unlock()
	select {
	case <-a.done:
	case <-ctx.Done():
		return nil, &servicelive.HostError{Host: host, Err: ctx.Err()}
	}
	if a.err != nil {
		return nil, &servicelive.HostError{Host: host, Err: a.err}
	}
	return a.e, nil
}

// attempt opens host once and records the outcome: the engine when it
// opened (the Composer of an alias already open, if any), nothing when it
// failed.
func (h *Hosts) attempt(host string, a *openAttempt) {
	defer h.opening.Done()
	c, id, err := h.open(host)
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.pending, host)
	switch {
	case err != nil:
		a.err = err
	case h.closed:
		_ = c.Close()
		a.err = errClosed
	default:
		e := h.byID[id]
		if e == nil {
			e = &hostEngine{c: c, id: id}
			h.byID[id] = e
		} else {
			c.log.Debug("dockercompose: host is an alias of an engine open already", "host", host)
			_ = c.Close()
		}
		h.engines[host] = e
		a.e = e
	}
	close(a.done)
}

// open builds the Composer of host and returns it with its engine's
// identity.
func (h *Hosts) open(host string) (*Composer, string, error) {
	cfg := h.cfg
	cfg.knownHosts = nil
	if host != "" {
		opts, err := h.resolve(host)
		if err != nil {
			return nil, "", fmt.Errorf("dockercompose: resolve host: %w", err)
		}
		ep := defaultConfig()
		if err := ep.apply(opts); err != nil {
			return nil, "", err
		}
		if ep.host != "" || ep.contextName != "" || ep.apiClient != nil {
			cfg.host, cfg.contextName, cfg.apiClient = "", "", nil
		}
		if err := cfg.apply(opts); err != nil {
			return nil, "", err
		}
	}
	c, err := newComposer(cfg)
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), engineOpenTimeout)
	defer cancel()
	res, err := c.apiClient.Info(ctx, client.InfoOptions{})
	if err != nil {
		_ = c.Close()
		return nil, "", fmt.Errorf("dockercompose: engine info: %w", err)
	}
	return c, engineIdentity(host, res), nil
}

// engineIdentity returns what tells engines apart: the daemon's ID, with its
// name (the machine's host name) and data root, since engines of cloned
// machines, and Docker 20.10 engines of one machine (whose ID derives from
// /etc/docker/key.json), can share an ID. An engine that reports no ID is
// an engine of its own under each host name.
func engineIdentity(host string, res client.SystemInfoResult) string {
	if res.Info.ID == "" {
		return "host\x00" + host
	}
	return "engine\x00" + res.Info.ID + "\x00" + res.Info.Name + "\x00" + res.Info.DockerRootDir
}

// Close closes the Composer of every engine opened. Calls after Close fail.
func (h *Hosts) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.mu.Unlock()
	h.opening.Wait() // an attempt finishing now closes what it opened
	h.mu.Lock()
	byID := h.byID
	hostOf := map[*hostEngine]string{}
	for host, e := range h.engines {
		if cur, ok := hostOf[e]; !ok || host < cur {
			hostOf[e] = host
		}
	}
	h.mu.Unlock()
	var errs []error
	for _, e := range byID {
		if err := e.c.Close(); err != nil {
			errs = append(errs, &servicelive.HostError{Host: hostOf[e], Err: err})
		}
	}
	return errors.Join(errs...)
}

// Up runs Composer.Up on the service's host (see servicelive.ServiceHost).
func (h *Hosts) Up(ctx context.Context, project *types.Project, service string) error {
	return h.route(ctx, project, service, func(c *Composer) error { return c.Up(ctx, project, service) })
}

// Down runs Composer.Down on the service's host.
func (h *Hosts) Down(ctx context.Context, project *types.Project, service string) error {
	return h.route(ctx, project, service, func(c *Composer) error { return c.Down(ctx, project, service) })
}

// route runs fn with the Composer of the service's host.
func (h *Hosts) route(ctx context.Context, project *types.Project, service string, fn func(*Composer) error) error {
	if err := checkProject(project); err != nil {
		return err
	}
	host := servicelive.ServiceHost(project.Services[service])
	e, err := h.engine(ctx, host)
	if err != nil {
		return err
	}
	if err := fn(e.c); err != nil {
		return &servicelive.HostError{Host: host, Err: err}
	}
	return nil
}

// Containers lists the project's containers on every engine it may have
// containers on (see Hosts), in parallel, each engine once, each container
// with its Host set: the host of its service in project when that host
// reaches the engine it was found on, else the first (in sort order) of the
// engine's host names. When hosts fail, it returns the containers of the
// others and the joined *servicelive.HostError of each failing host.
func (h *Hosts) Containers(ctx context.Context, project *types.Project) ([]servicelive.Container, error) {
	if err := checkProject(project); err != nil {
		return nil, err
	}
	var (
		mu  sync.Mutex
		out []servicelive.Container
	)
	err := h.fanOut(ctx, project, func(hosts []string, c *Composer) error {
		cs, err := c.Containers(ctx, project)
		for i := range cs {
			cs[i].Host = hosts[0]
			if s, ok := project.Services[cs[i].Service]; ok && slices.Contains(hosts, servicelive.ServiceHost(s)) {
				cs[i].Host = servicelive.ServiceHost(s)
			}
		}
		mu.Lock()
		out = append(out, cs...)
		mu.Unlock()
		return err
	})
	return out, err
}

// RemoveProject runs Composer.RemoveProject on every engine the project
// may have containers on (see Hosts), in parallel, each engine once; the
// joined *servicelive.HostError of each failing host.
func (h *Hosts) RemoveProject(ctx context.Context, project *types.Project) error {
	if err := checkProject(project); err != nil {
		return err
	}
	return h.fanOut(ctx, project, func(_ []string, c *Composer) error { return c.RemoveProject(ctx, project) })
}

// fanOut opens each host project may have containers on, then runs fn once
// per engine, in parallel, with the engine's host names (sorted) and its
// Composer, and joins the failures: one HostError per host name of a
// failing engine, so that each names a host that failed.
func (h *Hosts) fanOut(ctx context.Context, project *types.Project, fn func(hosts []string, c *Composer) error) error {
	hosts := h.hostsOf(project)
	opened := make([]*hostEngine, len(hosts))
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, host := range hosts {
		wg.Go(func() { opened[i], errs[i] = h.engine(ctx, host) })
	}
	wg.Wait()
	var order []*hostEngine
	names := map[*hostEngine][]string{}
	for i, e := range opened {
		if e != nil {
			if names[e] == nil {
				order = append(order, e)
			}
			names[e] = append(names[e], hosts[i]) // sorted, as hosts are
		}
	}
	results := make([]error, len(order))
	for i, e := range order {
		wg.Go(func() { results[i] = fn(names[e], e.c) })
	}
	wg.Wait()
	for i, err := range results {
		if err != nil {
			for _, host := range names[order[i]] {
				errs = append(errs, &servicelive.HostError{Host: host, Err: err})
			}
		}
	}
	return errors.Join(errs...)
}

// hostsOf returns, sorted, the hosts the project's services name, the hosts
// of WithKnownHosts and the hosts opened so far.
func (h *Hosts) hostsOf(project *types.Project) []string {
	var hosts []string
	add := func(host string) {
		if !slices.Contains(hosts, host) {
			hosts = append(hosts, host)
		}
	}
	for _, s := range project.Services {
		add(servicelive.ServiceHost(s))
	}
	for _, host := range h.cfg.knownHosts {
		add(host)
	}
	h.mu.Lock()
	for host := range h.engines {
		add(host)
	}
	h.mu.Unlock()
	slices.Sort(hosts)
	return hosts
}
