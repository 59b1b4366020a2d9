package dockercompose

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/decnet/servicelive"
)

// Hosts is a servicelive.Composer that runs each decky on its own Docker
// engine: it routes every call by the host of the service it is about
// (servicelive.ServiceHost, which the Manager renders from Decky.Host) to
// one Composer per host, opened on first use. Up and Down contact exactly
// the service's host; Containers and RemoveProject fan out, in parallel, to
// every host the project names, every host already opened and the hosts of
// WithKnownHosts. A host that no decky names, that no call has opened and
// that WithKnownHosts does not list cannot be listed or cleared: a Hosts
// knows no other.
//
// Every error of a host is a *servicelive.HostError naming it; a call that
// spans hosts completes on the others and joins one HostError per failing
// host. A Hosts is safe for concurrent use; Close it when done.
type Hosts struct {
	resolve func(host string) ([]Option, error)
	cfg     config // the common options

	mu      sync.Mutex
	engines map[string]*hostEngine
	closed  bool
}

// hostEngine is the Composer of one host, opened once.
type hostEngine struct {
	once sync.Once
	c    *Composer
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
// TLS, ...); it is called once per host, lazily, never for "". Its endpoint
// option (WithHost, WithContext or WithAPIClient) replaces any of opts;
// opts (WithLogger, WithWaitTimeout, ...) apply to every host. A nil
// resolve is ResolveHost. NewHosts contacts no engine.
func NewHosts(resolve func(host string) ([]Option, error), opts ...Option) (*Hosts, error) {
	cfg := defaultConfig()
	if err := cfg.apply(opts); err != nil {
		return nil, err
	}
	if resolve == nil {
		resolve = ResolveHost
	}
	return &Hosts{resolve: resolve, cfg: cfg, engines: map[string]*hostEngine{}}, nil
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

// Engine returns the Composer of host, opening it on first use. It stays
// valid until Close.
func (h *Hosts) Engine(host string) (*Composer, error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, &servicelive.HostError{Host: host, Err: errClosed}
	}
	e := h.engines[host]
	if e == nil {
		e = &hostEngine{}
		h.engines[host] = e
	}
	h.mu.Unlock()
	e.once.Do(func() { e.c, e.err = h.open(host) })
	if e.err != nil {
		return nil, &servicelive.HostError{Host: host, Err: e.err}
	}
	return e.c, nil
}

// open builds the Composer of host.
func (h *Hosts) open(host string) (*Composer, error) {
	cfg := h.cfg
	cfg.knownHosts = nil
	if host != "" {
		opts, err := h.resolve(host)
		if err != nil {
			return nil, fmt.Errorf("dockercompose: resolve host: %w", err)
		}
		ep := defaultConfig()
		if err := ep.apply(opts); err != nil {
			return nil, err
		}
		if ep.host != "" || ep.contextName != "" || ep.apiClient != nil {
			cfg.host, cfg.contextName, cfg.apiClient = "", "", nil
		}
		if err := cfg.apply(opts); err != nil {
			return nil, err
		}
	}
	return newComposer(cfg)
}

// Close closes the Composer of every host opened. Calls after Close fail.
func (h *Hosts) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	engines := h.engines
	h.mu.Unlock()
	var errs []error
	for host, e := range engines {
		e.once.Do(func() { e.err = errClosed }) // waits for an open in progress
		if e.c != nil {
			if err := e.c.Close(); err != nil {
				errs = append(errs, &servicelive.HostError{Host: host, Err: err})
			}
		}
	}
	return errors.Join(errs...)
}

// Up runs Composer.Up on the service's host (see servicelive.ServiceHost).
func (h *Hosts) Up(ctx context.Context, project *types.Project, service string) error {
	return h.route(project, service, func(c *Composer) error { return c.Up(ctx, project, service) })
}

// Down runs Composer.Down on the service's host.
func (h *Hosts) Down(ctx context.Context, project *types.Project, service string) error {
	return h.route(project, service, func(c *Composer) error { return c.Down(ctx, project, service) })
}

// route runs fn with the Composer of the service's host.
func (h *Hosts) route(project *types.Project, service string, fn func(*Composer) error) error {
	if err := checkProject(project); err != nil {
		return err
	}
	host := servicelive.ServiceHost(project.Services[service])
	c, err := h.Engine(host)
	if err != nil {
		return err
	}
	if err := fn(c); err != nil {
		return &servicelive.HostError{Host: host, Err: err}
	}
	return nil
}

// Containers lists the project's containers on every host it may have
// containers on (see Hosts), in parallel, each with its Host set. When
// hosts fail, it returns the containers of the others and the joined
// *servicelive.HostError of each failing host.
func (h *Hosts) Containers(ctx context.Context, project *types.Project) ([]servicelive.Container, error) {
	if err := checkProject(project); err != nil {
		return nil, err
	}
	var (
		mu  sync.Mutex
		out []servicelive.Container
	)
	err := h.fanOut(project, func(host string, c *Composer) error {
		cs, err := c.Containers(ctx, project)
		for i := range cs {
			cs[i].Host = host
		}
		mu.Lock()
		out = append(out, cs...)
		mu.Unlock()
		return err
	})
	return out, err
}

// RemoveProject runs Composer.RemoveProject on every host the project may
// have containers on (see Hosts), in parallel; the joined
// *servicelive.HostError of each failing host.
func (h *Hosts) RemoveProject(ctx context.Context, project *types.Project) error {
	if err := checkProject(project); err != nil {
		return err
	}
	return h.fanOut(project, func(_ string, c *Composer) error { return c.RemoveProject(ctx, project) })
}

// fanOut runs fn on each host project may have containers on, in
// parallel, and joins the failures as HostErrors.
func (h *Hosts) fanOut(project *types.Project, fn func(host string, c *Composer) error) error {
	hosts := h.hostsOf(project)
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, host := range hosts {
		wg.Go(func() {
			c, err := h.Engine(host)
			if err == nil {
				if err = fn(host, c); err != nil {
					err = &servicelive.HostError{Host: host, Err: err}
				}
			}
			errs[i] = err
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// hostsOf returns, sorted, the hosts the project's services name, the hosts
// of WithKnownHosts and the hosts opened so far (without error).
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
	opened := make([]string, 0, len(h.engines))
	for host := range h.engines {
		opened = append(opened, host)
	}
	h.mu.Unlock()
	for _, host := range opened {
		if c, err := h.Engine(host); err == nil && c != nil {
			add(host)
		}
	}
	slices.Sort(hosts)
	return hosts
}
