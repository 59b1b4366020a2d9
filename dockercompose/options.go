package dockercompose

import (
	"errors"
	"log/slog"
	"time"

	"github.com/moby/moby/client"
)

// Default values of the options.
const (
	// DefaultWaitTimeout bounds how long Up waits for a started container to
	// be running (see WithWaitTimeout).
	DefaultWaitTimeout = 60 * time.Second
)

// Option configures a Composer; pass options to New.
type Option func(*config) error

type config struct {
	host        string
	contextName string
	apiClient   client.APIClient
	logger      *slog.Logger
	progress    func(Event)
	stopTimeout *time.Duration
	wait        bool
	waitTimeout time.Duration
	startGrace  time.Duration
	builder     int      // builderAuto, builderBuildKit or builderClassic
	knownHosts  []string // NewHosts only
}

func defaultConfig() config {
	return config{
		wait:        true,
		waitTimeout: DefaultWaitTimeout,
	}
}

// WithHost makes the Composer talk to the Docker Engine at host:
// "unix:///var/run/docker.sock", "tcp://10.0.0.2:2376" (TLS from the
// environment as with `docker -H`: DOCKER_TLS or DOCKER_TLS_VERIFY turn it
// on, the latter verifying the engine against ca.pem; the certificates are
// DOCKER_CERT_PATH's, else the docker config directory's) or
// "ssh://user@host" (through the ssh client, the one transport that runs a
// subprocess). Without WithHost and WithContext the engine is the one the
// docker CLI would use: DOCKER_HOST, else DOCKER_CONTEXT, else the current
// context of the CLI's config file, else the local socket. WithHost and
// WithContext exclude each other, and neither combines with WithAPIClient.
func WithHost(host string) Option {
	return func(c *config) error {
		if host == "" {
			return errors.New("dockercompose: empty docker host")
		}
		c.host = host
		return nil
	}
}

// WithContext makes the Composer talk to the engine of the Docker context
// name, as `docker --context name` would. New returns an error for an
// unknown context (the docker CLI would exit the process).
func WithContext(name string) Option {
	return func(c *config) error {
		if name == "" {
			return errors.New("dockercompose: empty docker context name")
		}
		c.contextName = name
		return nil
	}
}

// WithAPIClient makes the Composer use apiClient instead of building its
// own. Close then leaves apiClient open: its owner closes it.
func WithAPIClient(apiClient client.APIClient) Option {
	return func(c *config) error {
		if apiClient == nil {
			return errors.New("dockercompose: nil api client")
		}
		c.apiClient = apiClient
		return nil
	}
}

// WithLogger makes the Composer log to l (debug records per operation, with
// durations, and warnings the Compose SDK would have printed). The default
// discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		c.logger = l
		return nil
	}
}

// WithProgress makes the Composer call fn with every progress event: the
// Compose SDK's (creating, building, pulling, ...) and its own (starting,
// running, stopping, removing). fn is called synchronously from the
// goroutines doing the work, possibly concurrently: it must be quick and
// safe for concurrent use.
func WithProgress(fn func(Event)) Option {
	return func(c *config) error {
		c.progress = fn
		return nil
	}
}

// WithStopTimeout sets how long Down (and a recreate in Up) waits for a
// container to stop after its stop signal before killing it. The default is
// the service's stop_grace_period, else the engine's default (10s).
func WithStopTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return errors.New("dockercompose: negative stop timeout")
		}
		c.stopTimeout = &d
		return nil
	}
}

// WithWait sets whether Up waits until the started container is running
// (the default) and fails, removing the container, when it is not. With
// WithWait(false) Up returns as soon as the engine accepted the start.
func WithWait(wait bool) Option {
	return func(c *config) error {
		c.wait = wait
		return nil
	}
}

// WithWaitTimeout bounds the start and the wait-until-running of Up
// (default DefaultWaitTimeout). It does not bound a build.
func WithWaitTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return errors.New("dockercompose: wait timeout must be positive")
		}
		c.waitTimeout = d
		return nil
	}
}

// WithStartGrace makes Up, once the started container is running, keep
// watching it for d and fail (removing it) if it exits within d. The default
// is 0: Up checks the container's state once, right after its start, which
// catches a container that cannot start or has already stopped, but not one
// that exits a few milliseconds later. A grace of a few hundred milliseconds
// catches those too, at that cost per Up.
func WithStartGrace(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return errors.New("dockercompose: negative start grace")
		}
		c.startGrace = d
		return nil
	}
}

// WithBuildKit chooses the builder of services with a build section:
// BuildKit (true) or the classic builder (false), whatever the environment
// and the engine say. Without it the Composer decides as the docker CLI
// does: DOCKER_BUILDKIT (read by New: a boolean; another value makes New
// fail), else the engine (BuildKit unless it is a Windows engine, or one
// older than API 1.39, that does not advertise it). BuildKit builds run
// in-process through the Engine API's session endpoint, never through
// `docker buildx`; the classic builder is the Compose SDK's.
func WithBuildKit(enabled bool) Option {
	return func(c *config) error {
		c.builder = builderClassic
		if enabled {
			c.builder = builderBuildKit
		}
		return nil
	}
}

// WithKnownHosts names hosts that NewHosts's Hosts lists and clears
// (Containers, RemoveProject) even when no decky of the project names them
// and no call has opened them yet: say, the hosts of the whole fleet, so
// that a Teardown after a restart also finds the containers of a decky that
// moved off a host. New ignores it.
func WithKnownHosts(hosts ...string) Option {
	return func(c *config) error {
		c.knownHosts = append(c.knownHosts, hosts...)
		return nil
	}
}
