package dockercompose

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/cli/cli/command"
	cliconfig "github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/context/docker"
	"github.com/docker/cli/cli/context/store"
	dopts "github.com/docker/cli/opts"
	"github.com/moby/moby/client"
)

// userAgent is the User-Agent of the API clients New builds.
const userAgent = "servicelive-dockercompose"

// defaultContextName is the docker CLI's name of the context made of
// DOCKER_HOST (or the local socket) and the TLS environment.
const defaultContextName = command.DefaultContextName

// target is the engine a Composer talks to.
type target struct {
	contextName string
	endpoint    docker.Endpoint
	envTLS      bool // TLS comes from DOCKER_CERT_PATH/DOCKER_TLS_VERIFY
}

// loadConfigFile loads the docker CLI's config file (DOCKER_CONFIG or
// ~/.docker/config.json) without printing its warnings.
func loadConfigFile() *configfile.ConfigFile {
	return cliconfig.LoadDefaultConfigFile(io.Discard)
}

// contextStore opens the docker CLI's context store.
func contextStore() store.Store {
	return store.New(cliconfig.ContextStoreDir(), command.DefaultContextStoreConfig())
}

// resolveTarget finds the engine the way `docker` would, except that it
// never exits: an unknown context is an error.
func resolveTarget(cfg *config, cf *configfile.ConfigFile, st store.Store) (target, error) {
	if cfg.host != "" {
		return hostTarget(cfg.host)
	}
	name := cfg.contextName
	if name == "" {
		switch {
		case os.Getenv(client.EnvOverrideHost) != "":
			return hostTarget(os.Getenv(client.EnvOverrideHost))
		case os.Getenv(command.EnvOverrideContext) != "":
			name = os.Getenv(command.EnvOverrideContext)
		case cf.CurrentContext != "":
			name = cf.CurrentContext
		default:
			name = defaultContextName
		}
	}
	if name == defaultContextName {
		host := os.Getenv(client.EnvOverrideHost)
		if host == "" {
			host = client.DefaultDockerHost
		}
		t, err := hostTarget(host)
		t.contextName = defaultContextName
		return t, err
	}
	meta, err := st.GetMetadata(name)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return target{}, fmt.Errorf("dockercompose: docker context %q not found", name)
		}
		return target{}, fmt.Errorf("dockercompose: docker context %q: %w", name, err)
	}
	epMeta, err := docker.EndpointFromContext(meta)
	if err != nil {
		return target{}, fmt.Errorf("dockercompose: docker context %q: %w", name, err)
	}
	ep, err := docker.WithTLSData(st, name, epMeta)
	if err != nil {
		return target{}, fmt.Errorf("dockercompose: docker context %q: %w", name, err)
	}
	return target{contextName: name, endpoint: ep}, nil
}

// hostTarget validates host (unix://, tcp://, ssh://, npipe://, fd://, or
// host:port meaning tcp).
func hostTarget(host string) (target, error) {
	h, err := dopts.ParseHost(false, host)
	if err != nil {
		return target{}, fmt.Errorf("dockercompose: docker host %q: %w", host, err)
	}
	return target{
		contextName: defaultContextName,
		endpoint:    docker.Endpoint{EndpointMeta: docker.EndpointMeta{Host: h}},
		envTLS:      true,
	}, nil
}

// newAPIClient builds the Engine API client for t. Its API version is
// negotiated with the engine on the first request (down to API 1.40, the
// oldest moby/moby/client v0.6.1 speaks). ssh:// endpoints go through the
// ssh command, as with the docker CLI.
func newAPIClient(t target, cf *configfile.ConfigFile) (*client.Client, error) {
	// More idle connections than net/http's default of 2 per host: many
	// concurrent Ups would otherwise dial and drop a connection per request.
	// DialContext is replaced by the endpoint's (unix socket, tcp, ssh); set
	// here, it also keeps net/http from enabling HTTP/2, which would give the
	// transport a TLS config and make the client speak https to a socket.
	opts := []client.Opt{client.WithHTTPClient(&http.Client{
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        64,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
		},
		CheckRedirect: client.CheckRedirect,
	})}
	if t.envTLS && strings.HasPrefix(t.endpoint.Host, "tcp://") {
		opts = append(opts, client.WithTLSClientConfigFromEnv())
	}
	epOpts, err := t.endpoint.ClientOpts()
	if err != nil {
		return nil, fmt.Errorf("dockercompose: docker endpoint %q: %w", t.endpoint.Host, err)
	}
	opts = append(opts, epOpts...)
	if len(cf.HTTPHeaders) > 0 {
		opts = append(opts, client.WithHTTPHeaders(cf.HTTPHeaders))
	}
	opts = append(opts, client.WithUserAgent(userAgent))
	c, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("dockercompose: docker client for %q: %w", t.endpoint.Host, err)
	}
	return c, nil
}

var errClosed = errors.New("dockercompose: composer closed")
