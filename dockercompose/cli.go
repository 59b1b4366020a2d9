package dockercompose

import (
	"context"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/docker/cli/cli/command"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/context/docker"
	"github.com/docker/cli/cli/context/store"
	"github.com/docker/cli/cli/streams"
	"github.com/moby/moby/client"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/docker/compose/v5/pkg/api"
	"go.opentelemetry.io/otel/metric"
)

// cli is the command.Cli the Compose SDK runs on. docker/cli's DockerCli is
// not used because, for a library, it does too much on its own:
//
//   - Client() calls os.Exit(1) when the endpoint cannot be resolved (an
//     unknown context), DockerEndpoint() prints to stderr;
//   - Initialize() sets the global logrus level;
//   - BuildKitEnabled() is true on Linux, which makes the SDK look up the
//     docker-buildx plugin (running it for its metadata) and build through a
//     `docker buildx bake` subprocess.
//
// This one hands out a ready API client, discards the standard streams,
// reports BuildKit disabled, so the SDK never runs buildx (the Composer
// builds with BuildKit itself, see buildKitBuild, and leaves the SDK only
// the classic builder, its fallback), and serves a config file without credential
// helpers (running docker-credential-* is a subprocess too): registry
// credentials come from the config file's inline "auths" only.
type cli struct {
	apiClient   client.APIClient
	configFile  *configfile.ConfigFile
	contextName string
	endpoint    docker.Endpoint
	store       store.Store
	in          *streams.In
	out, err    *streams.Out

	infoOnce sync.Once
	info     command.ServerInfo
}

var _ command.Cli = (*cli)(nil)

func newCLI(apiClient client.APIClient, cf *configfile.ConfigFile, contextName string, ep docker.Endpoint, st store.Store) *cli {
	return &cli{
		apiClient:   apiClient,
		configFile:  cf,
		contextName: contextName,
		endpoint:    ep,
		store:       st,
		in:          streams.NewIn(io.NopCloser(strings.NewReader(""))),
		out:         streams.NewOut(io.Discard),
		err:         streams.NewOut(io.Discard),
	}
}

// sanitizeConfig returns a copy of cf without credential helpers.
func sanitizeConfig(cf *configfile.ConfigFile) *configfile.ConfigFile {
	c := *cf
	c.CredentialsStore = ""
	c.CredentialHelpers = nil
	c.Aliases = nil // a "builder" alias turns BuildKit on in docker/cli
	return &c
}

func (c *cli) Client() client.APIClient             { return c.apiClient }
func (c *cli) In() *streams.In                      { return c.in }
func (c *cli) Out() *streams.Out                    { return c.out }
func (c *cli) Err() *streams.Out                    { return c.err }
func (c *cli) SetIn(*streams.In)                    {}
func (c *cli) ConfigFile() *configfile.ConfigFile   { return c.configFile }
func (c *cli) CurrentVersion() string               { return c.apiClient.ClientVersion() }
func (c *cli) BuildKitEnabled() (bool, error)       { return false, nil }
func (c *cli) ContextStore() store.Store            { return c.store }
func (c *cli) CurrentContext() string               { return c.contextName }
func (c *cli) DockerEndpoint() docker.Endpoint      { return c.endpoint }
func (c *cli) Resource() *resource.Resource         { return resource.Empty() }
func (c *cli) TracerProvider() trace.TracerProvider { return tracenoop.NewTracerProvider() }
func (c *cli) MeterProvider() metric.MeterProvider  { return metricnoop.NewMeterProvider() }
func (c *cli) contextInfo() api.ContextInfo         { return contextInfo{c} }
func (c *cli) ServerInfo() command.ServerInfo       { c.infoOnce.Do(c.ping); return c.info }
func (c *cli) ping() {
	// Only the SDK's rarely used paths ask (use_api_socket); a failed ping
	// leaves the zero value, as docker/cli does.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	p, err := c.apiClient.Ping(ctx, client.PingOptions{})
	if err != nil {
		return
	}
	c.info = command.ServerInfo{
		HasExperimental: p.Experimental,
		OSType:          p.OSType,
		BuildkitVersion: p.BuilderVersion,
		SwarmStatus:     p.SwarmStatus,
	}
}

// contextInfo is the SDK's view of the context: BuildKit is always off.
type contextInfo struct{ c *cli }

func (i contextInfo) CurrentContext() string         { return i.c.contextName }
func (i contextInfo) ServerOSType() string           { return i.c.ServerInfo().OSType }
func (i contextInfo) BuildKitEnabled() (bool, error) { return false, nil }
