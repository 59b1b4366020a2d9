// Command httpapi serves servicelive's admin API over HTTP: list the deckies
// of the fleet or of a topology and read one (its services and the keys of
// their configurations, never the values), add a service to a deployed
// decky, remove one, or replace a service's configuration.
//
//	SERVICELIVE_TOKEN=secret go run ./examples/httpapi
//	curl -H 'Authorization: Bearer secret' http://127.0.0.1:8080/api/v1/deckies
//	curl -H 'Authorization: Bearer secret' -d '{"name":"ssh","config":{"port":2222}}' \
//	     http://127.0.0.1:8080/api/v1/deckies/web2/services
//	curl -H 'Authorization: Bearer secret' -X PUT -d '{"port":2222,"banner":"SSH-2.0-OpenSSH_9.9"}' \
//	     'http://127.0.0.1:8080/api/v1/deckies/web2/services/ssh/config?apply=true'
//	curl -H 'Authorization: Bearer secret' http://127.0.0.1:8080/api/v1/deckies/web2
//	curl -H 'Authorization: Bearer secret' -X DELETE \
//	     http://127.0.0.1:8080/api/v1/deckies/web2/services/ssh
//
// A PUT of a configuration stores it (and rewrites the compose file); with
// ?apply=true the service's container, and only it, is recreated with it at
// once, else it keeps running with the old one until it is recreated.
//
// By default the state is a MemoryStore seeded with demo deckies and the
// Composer is a stand-in that only logs what it would do (see composer.go);
// -state keeps the state in a JSON file instead. With -nats URL the events
// are published on NATS (package natsbus; -nats-stream for JetStream). With
// -engine (and optionally -docker-host) a real Docker Engine runs the deckies through
// package dockercompose (see engine.go). See newHandler for the routes,
// bodies and status codes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/decnet/servicelive"
)

// tokenEnv is the environment variable holding the API token, preferred to
// -token (a flag shows in the process list).
const tokenEnv = "SERVICELIVE_TOKEN"

// shutdownTimeout bounds the wait for in-flight requests on SIGINT/SIGTERM.
const shutdownTimeout = 30 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "httpapi:", err)
		}
		stop()
		os.Exit(2)
	}
}

// options are the command's settings.
type options struct {
	addr       string
	token      string
	state      string
	projectDir string
	fleet      string // the fleet's compose project name
	engineOptions
	natsOptions
}

// usage heads the -help text: the routes (newHandler has the details).
const usage = `usage: httpapi [flags]

Serves servicelive's admin API; every request needs "Authorization: Bearer <token>".

  GET    /api/v1/deckies                              the fleet's deckies
  GET    /api/v1/deckies/{decky}                      one decky: services, config keys (never values)
  POST   /api/v1/deckies/{decky}/services             add: {"name": "ssh", "config": {...}}
  DELETE /api/v1/deckies/{decky}/services/{service}   remove
  PUT    /api/v1/deckies/{decky}/services/{service}/config[?apply=true]
                                                      replace the config with the body (a JSON object);
                                                      apply=true recreates the service's container now
  The same under /api/v1/topologies/{id}/... for topology id.

Flags:
`

// parseFlags reads the flags; the token comes from -token, else from the
// environment, and is required.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("httpapi", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8080", "listen address")
	fs.StringVar(&o.token, "token", "", "bearer token required by every request (default $"+tokenEnv+", preferred: a flag shows in ps)")
	fs.StringVar(&o.state, "state", "", "JSON state file (a FileStore; created with the demo deckies when missing); default: in memory, demo deckies")
	fs.StringVar(&o.projectDir, "project-dir", "", "directory where each scope's compose files are written; default: none written")
	fs.StringVar(&o.fleet, "fleet-project", servicelive.DefaultFleetProject, "compose project name of the fleet (topologies' are derived from it)")
	o.engineOptions.register(fs)
	o.natsOptions.register(fs)
	if err := fs.Parse(engineArgs(args)); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := o.engineOptions.check(); err != nil {
		return o, err
	}
	if o.token == "" {
		o.token = getenv(tokenEnv)
	}
	if o.token == "" {
		return o, errors.New("no API token: set " + tokenEnv + " (or -token); refusing to serve without one")
	}
	return o, nil
}

// run serves until ctx ends, then shuts down gracefully.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) (err error) {
	o, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if len(o.token) < 16 {
		log.Warn("the API token is short; use at least 16 random characters")
	}

	b, err := newBackend(ctx, o, log)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, b.close()) }()
	store, err := openStore(ctx, o.state, b.image, log)
	if err != nil {
		return err
	}
	reg, err := demoRegistry(b.image)
	if err != nil {
		return err
	}
	mopts := []servicelive.Option{servicelive.WithLogger(log), servicelive.WithFleetProject(o.fleet)}
	if o.projectDir != "" {
		mopts = append(mopts, servicelive.WithProjectDir(o.projectDir))
	}
	busOpts, closeBus, err := o.natsOptions.openBus(log)
	if err != nil {
		return err
	}
	var m *servicelive.Manager
	defer func() { err = errors.Join(err, closeBus(m)) }()
	m, err = servicelive.New(store, b.composer, reg, append(mopts, busOpts...)...)
	if err != nil {
		return err
	}
	if b.deploy {
		if err := deployAll(ctx, m, store, log); err != nil {
			return err
		}
		if o.state == "" {
			// The state dies with the process: so do its containers.
			defer func() { err = errors.Join(err, teardownAll(m, store, log)) }()
		}
	}

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           newHandler(m, store, reg, o.token, log),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		// A real engine may build an image during an add: leave it time.
		WriteTimeout:   5 * time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("serving", "addr", "http://"+ln.Addr().String(), "services", reg.Names())

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}

// backend is what the Manager drives.
type backend struct {
	composer servicelive.Composer
	image    demoImage
	deploy   bool         // deploy every scope at start (and tear down in-memory ones at exit)
	close    func() error // releases the composer
}

// demoImage is the image every demo container runs.
type demoImage struct {
	ref    string   // the image reference
	banner []string // the command that makes it serve $BANNER on TCP $PORT; nil: the image's own
}

// standInImage names the image of the demo's deckies and services under the
// stand-in Composer, which runs nothing.
const standInImage = "servicelive-demo:stand-in"

// newBackend returns the backend the flags ask for.
func newBackend(ctx context.Context, o options, log *slog.Logger) (backend, error) {
	if o.engine {
		return newEngine(ctx, o.engineOptions, log)
	}
	return newStandIn(log), nil
}

// newStandIn returns the default backend: the logging stand-in Composer.
func newStandIn(log *slog.Logger) backend {
	return backend{
		composer: &logComposer{log: log},
		image:    demoImage{ref: standInImage},
		close:    func() error { return nil },
	}
}

// deployAll deploys the fleet and every demo topology present in the store.
func deployAll(ctx context.Context, m *servicelive.Manager, s servicelive.Store, log *slog.Logger) error {
	for _, topology := range scopes(ctx, s) {
		start := time.Now()
		if err := m.Deploy(ctx, topology); err != nil {
			return fmt.Errorf("deploy %s: %w", scopeName(topology), err)
		}
		log.Info("deployed", "scope", scopeName(topology), "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// teardownAll removes the containers of every scope deployAll deployed.
func teardownAll(m *servicelive.Manager, s servicelive.Store, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	var errs []error
	for _, topology := range scopes(ctx, s) {
		if err := m.Teardown(ctx, topology); err != nil {
			errs = append(errs, fmt.Errorf("teardown %s: %w", scopeName(topology), err))
			continue
		}
		log.Info("torn down", "scope", scopeName(topology))
	}
	return errors.Join(errs...)
}

// scopes returns the fleet and the demo topologies the store holds.
func scopes(ctx context.Context, s servicelive.Store) []string {
	out := []string{""}
	for topology := range demoDeckies(demoImage{}) {
		if _, err := s.List(ctx, topology); topology != "" && err == nil {
			out = append(out, topology)
		}
	}
	slices.Sort(out)
	return out
}

func scopeName(topology string) string {
	if topology == "" {
		return "fleet"
	}
	return "topology " + topology
}

// store is what the command needs of a Store: the Manager's interface plus
// Put, to seed it.
type store interface {
	servicelive.Store
	Put(ctx context.Context, topology string, d servicelive.Decky) error
}

// openStore returns a MemoryStore seeded with the demo deckies, or the
// FileStore at path (seeded with them when the file does not exist yet).
func openStore(ctx context.Context, path string, img demoImage, log *slog.Logger) (servicelive.Store, error) {
	var s store = servicelive.NewMemoryStore(nil)
	if path != "" {
		_, statErr := os.Stat(path)
		fs, err := servicelive.OpenFileStore(path)
		if err != nil {
			return nil, err
		}
		if !errors.Is(statErr, os.ErrNotExist) {
			log.Info("state file", "path", path)
			return fs, nil
		}
		log.Info("new state file, seeded with the demo deckies", "path", path)
		s = fs
	}
	for topology, ds := range demoDeckies(img) {
		for _, d := range ds {
			if err := s.Put(ctx, topology, d); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// demoDeckies are the deckies the demo starts with, by topology ("" = the
// fleet): web1 (running http) and web2 in the fleet, edge1 in topology
// "lab". Their base containers run img with its own command.
func demoDeckies(img demoImage) map[string][]servicelive.Decky {
	return map[string][]servicelive.Decky{
		"": {
			{Name: "web1", Hostname: "web1", Image: img.ref, Services: []string{"http"}},
			{Name: "web2", Hostname: "web2", Image: img.ref},
		},
		"lab": {
			{Name: "edge1", Hostname: "edge1", Image: img.ref},
		},
	}
}

// demoRegistry returns the services the demo can add: ssh (configurable
// port and banner), http, and llmnr, a fleet singleton that AddService
// refuses. Each runs img; with a banner command, as a banner server on its
// port.
func demoRegistry(img demoImage) (*servicelive.Registry, error) {
	banner := func(defaultPort int, defaultText string) func(servicelive.Decky, servicelive.Config, *types.ServiceConfig) {
		return func(_ servicelive.Decky, cfg servicelive.Config, s *types.ServiceConfig) {
			// Locals: a render must not leak into the next (the hook is
			// shared by every decky, and may run concurrently).
			port, text := defaultPort, defaultText
			if p, ok := cfg["port"].(int); ok {
				port = p
			}
			if b, ok := cfg["banner"].(string); ok {
				text = b + "\r\n"
			}
			if img.banner != nil {
				s.Command = slices.Clone(img.banner)
			}
			ps := strconv.Itoa(port)
			if s.Environment == nil {
				s.Environment = types.MappingWithEquals{}
			}
			s.Environment["PORT"] = &ps
			s.Environment["BANNER"] = &text
		}
	}
	return servicelive.NewRegistry(
		servicelive.Service{
			Name:  "ssh",
			Image: img.ref,
			Ports: []int{22},
			Schema: []servicelive.Field{
				{Key: "port", Type: servicelive.FieldInt},
				{Key: "banner", Type: servicelive.FieldString},
			},
			Compose: banner(22, "SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n"),
		},
		servicelive.Service{
			Name:    "http",
			Image:   img.ref,
			Ports:   []int{80},
			Compose: banner(80, "HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\nContent-Length: 0\r\n\r\n"),
		},
		servicelive.Service{Name: "llmnr", Image: img.ref, Ports: []int{5355}, FleetSingleton: true},
	)
}
