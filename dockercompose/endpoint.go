package dockercompose

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/cli/cli/command"
	cliconfig "github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	dcontext "github.com/docker/cli/cli/context"
	"github.com/docker/cli/cli/context/docker"
	"github.com/docker/cli/cli/context/store"
	cliflags "github.com/docker/cli/cli/flags"
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
		return hostTarget(os.Getenv(client.EnvOverrideHost))
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

// hostTarget is the docker CLI's default context for host (`docker -H
// host`, or DOCKER_HOST): host is unix://, tcp://, ssh://, npipe://, fd://,
// or host:port meaning tcp; "" is the local socket, or tcp://localhost:2376
// when the environment asks for TLS. TLS comes from the environment, as
// with the CLI (see envTLS).
func hostTarget(host string) (target, error) {
	on, skipVerify, data, err := envTLS()
	if err != nil {
		return target{}, err
	}
	h, err := dopts.ParseHost(on, host)
	if err != nil {
		return target{}, fmt.Errorf("dockercompose: docker host %q: %w", host, err)
	}
	return target{
		contextName: defaultContextName,
		endpoint: docker.Endpoint{
			EndpointMeta: docker.EndpointMeta{Host: h, SkipTLSVerify: skipVerify},
			TLSData:      data,
		},
	}, nil
}

// envTLS reads the TLS configuration of the docker CLI's default context
// from the environment, as the CLI does without flags (docker/cli's
// cli/flags.ClientOptions and resolveDefaultDockerEndpoint): TLS is on when
// DOCKER_TLS or DOCKER_TLS_VERIFY is set to anything but "" (DOCKER_CERT_PATH
// alone does not turn it on); the server's certificate is verified when
// DOCKER_TLS_VERIFY is, against ca.pem only; the files are DOCKER_CERT_PATH's
// ca.pem, cert.pem and key.pem, or those of the docker config directory
// (DOCKER_CONFIG, else ~/.docker) when DOCKER_CERT_PATH is empty. ca.pem must
// exist (the CLI fails without it too); a missing cert.pem or key.pem means
// no client certificate. The TLS data is used for tcp:// hosts only (not
// for a socket or ssh://), as by the CLI.
func envTLS() (on, skipVerify bool, data *dcontext.TLSData, err error) {
	verify := os.Getenv(client.EnvTLSVerify) != ""
	if !verify && os.Getenv(cliflags.EnvEnableTLS) == "" {
		return false, false, nil, nil
	}
	dir := os.Getenv(client.EnvOverrideCertPath)
	if dir == "" {
		dir = cliconfig.Dir()
	}
	ca := filepath.Join(dir, cliflags.DefaultCaFile)
	cert := filepath.Join(dir, cliflags.DefaultCertFile)
	key := filepath.Join(dir, cliflags.DefaultKeyFile)
	if _, err := os.Stat(cert); errors.Is(err, fs.ErrNotExist) {
		cert = ""
	}
	if _, err := os.Stat(key); errors.Is(err, fs.ErrNotExist) {
		key = ""
	}
	data, err = dcontext.TLSDataFromFiles(ca, cert, key)
	if err != nil {
		return false, false, nil, fmt.Errorf("dockercompose: TLS from the environment: %w", err)
	}
	return true, !verify, data, nil
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
	// An endpoint with TLS (a context's, or the environment's) replaces this
	// client by the docker CLI's own, TLS configured as the CLI does.
	opts := []client.Opt{client.WithHTTPClient(&http.Client{
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        64,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
		},
		CheckRedirect: client.CheckRedirect,
	})}
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
