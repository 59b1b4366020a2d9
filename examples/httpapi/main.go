// Command httpapi serves servicelive's admin API over HTTP: add a service to
// a deployed decky, or remove one, in the fleet or in a topology.
//
//	SERVICELIVE_TOKEN=secret go run ./examples/httpapi
//	curl -H 'Authorization: Bearer secret' -d '{"name":"ssh","config":{"port":2222}}' \
//	     http://127.0.0.1:8080/api/v1/deckies/web2/services
//	curl -H 'Authorization: Bearer secret' -X DELETE \
//	     http://127.0.0.1:8080/api/v1/deckies/web2/services/ssh
//
// By default the state is a MemoryStore seeded with demo deckies and the
// Composer is a stand-in that only logs what it would do (see composer.go);
// -state keeps the state in a JSON file instead. See newHandler for the
// routes, bodies and status codes.
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
}

// parseFlags reads the flags; the token comes from -token, else from the
// environment, and is required.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("httpapi", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8080", "listen address")
	fs.StringVar(&o.token, "token", "", "bearer token required by every request (default $"+tokenEnv+", preferred: a flag shows in ps)")
	fs.StringVar(&o.state, "state", "", "JSON state file (a FileStore; created with the demo deckies when missing); default: in memory, demo deckies")
	fs.StringVar(&o.projectDir, "project-dir", "", "directory where each scope's compose files are written; default: none written")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
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
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	o, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if len(o.token) < 16 {
		log.Warn("the API token is short; use at least 16 random characters")
	}

	store, err := openStore(ctx, o.state, log)
	if err != nil {
		return err
	}
	reg, err := demoRegistry()
	if err != nil {
		return err
	}
	composer := &logComposer{log: log}
	mopts := []servicelive.Option{servicelive.WithLogger(log)}
	if o.projectDir != "" {
		mopts = append(mopts, servicelive.WithProjectDir(o.projectDir))
	}
	m, err := servicelive.New(store, composer, reg, mopts...)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           newHandler(m, o.token, log),
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

// store is what the command needs of a Store: the Manager's interface plus
// Put, to seed it.
type store interface {
	servicelive.Store
	Put(ctx context.Context, topology string, d servicelive.Decky) error
}

// openStore returns a MemoryStore seeded with the demo deckies, or the
// FileStore at path (seeded with them when the file does not exist yet).
func openStore(ctx context.Context, path string, log *slog.Logger) (servicelive.Store, error) {
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
	for topology, ds := range demoDeckies() {
		for _, d := range ds {
			if err := s.Put(ctx, topology, d); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// demoDeckies are the deckies the demo starts with, by topology ("" = the
// fleet).
func demoDeckies() map[string][]servicelive.Decky {
	return map[string][]servicelive.Decky{
		"": {
			{Name: "web1", Hostname: "web1", IP: "10.0.0.11", Image: "busybox:latest", Services: []string{"http"}},
			{Name: "web2", Hostname: "web2", IP: "10.0.0.12", Image: "busybox:latest"},
		},
		"lab": {
			{Name: "edge1", Hostname: "edge1", IP: "10.1.0.11", Image: "busybox:latest"},
		},
	}
}

// demoRegistry returns the services the demo can add: ssh (configurable
// port and banner), http, and llmnr, a fleet singleton that AddService
// refuses. The images are placeholders for the stand-in Composer.
func demoRegistry() (*servicelive.Registry, error) {
	return servicelive.NewRegistry(
		servicelive.Service{
			Name:  "ssh",
			Image: "decnet/ssh:demo",
			Ports: []int{22},
			Schema: []servicelive.Field{
				{Key: "port", Type: servicelive.FieldInt},
				{Key: "banner", Type: servicelive.FieldString},
			},
			Compose: func(_ servicelive.Decky, cfg servicelive.Config, s *types.ServiceConfig) {
				set := func(k, v string) {
					if s.Environment == nil {
						s.Environment = types.MappingWithEquals{}
					}
					s.Environment[k] = &v
				}
				if port, ok := cfg["port"].(int); ok {
					set("SSH_PORT", strconv.Itoa(port))
				}
				if banner, ok := cfg["banner"].(string); ok {
					set("SSH_BANNER", banner)
				}
			},
		},
		servicelive.Service{Name: "http", Image: "decnet/http:demo", Ports: []int{80}},
		servicelive.Service{Name: "llmnr", Image: "decnet/llmnr:demo", Ports: []int{5355}, FleetSingleton: true},
	)
}
