package servicelive

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/compose-spec/compose-go/v2/types"
)

// hostExtension is the service extension that carries a decky's Host in
// the project the Manager renders. Extensions are not part of the
// configuration hash the Compose SDK stores on a container
// (com.docker.compose.config-hash), so a container does not diverge when
// its decky's Host is rendered, and they are not written to compose files.
const hostExtension = "x-servicelive-host"

// HostRouter is implemented by composers that run each decky on the Docker
// engine its Decky.Host names (dockercompose.Hosts) and report in
// Container.Host where each container was found. With such a Composer the
// Manager renders the host of every service (see ServiceHost), writes one
// compose file per host, runs Deploy and Reconcile per host in parallel,
// and Reconcile moves a decky whose Host changed. With any other Composer,
// Decky.Host is stored but ignored: every decky runs on the one engine.
type HostRouter interface {
	// RoutesHosts reports whether the Composer routes by host (true for
	// dockercompose.Hosts).
	RoutesHosts() bool
}

// ServiceHost returns the host (Decky.Host: a Docker context name or an
// engine URL, "" = the default engine) that a service of a project
// rendered by a Manager runs on: the one its decky names. Composers that
// route by host (dockercompose.Hosts) read it; it is "" for a service the
// Manager did not render, and for every service when the Manager's
// Composer does not route by host.
func ServiceHost(s types.ServiceConfig) string {
	h, _ := s.Extensions[hostExtension].(string)
	return h
}

// HostError is the failure of one Docker host: a call routed to it, or its
// part of a call that spans hosts (a listing, a project removal). A call
// that spans hosts joins one HostError per failing host; the other hosts'
// parts completed.
type HostError struct {
	Host string // "" = the default engine
	Err  error
}

// Error implements the error interface: `host "site-a": <cause>`, or
// "host (default): <cause>".
func (e *HostError) Error() string {
	h := "(default)"
	if e.Host != "" {
		h = strconv.Quote(e.Host)
	}
	return "host " + h + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *HostError) Unwrap() error { return e.Err }

// routesHosts reports whether the Manager's Composer routes by host.
func (m *Manager) routesHosts() bool {
	r, ok := m.composer.(HostRouter)
	return ok && r.RoutesHosts()
}

// hostOf returns the host decky d runs on: d.Host when the Composer routes
// by host, else "".
func (m *Manager) hostOf(d Decky) string {
	if m.routesHosts() {
		return d.Host
	}
	return ""
}

// place records on s the host it runs on, and points its compose files
// label at that host's compose file.
func (m *Manager) place(s *types.ServiceConfig, host string) {
	if host == "" {
		return
	}
	ext := make(types.Extensions, len(s.Extensions)+1)
	for k, v := range s.Extensions {
		ext[k] = v
	}
	ext[hostExtension] = host
	s.Extensions = ext
	if f, ok := s.CustomLabels[composeFilesLabel]; ok {
		s.CustomLabels[composeFilesLabel] = filepath.Join(filepath.Dir(f), hostFileName(host))
	}
}

// withHost returns s placed on host (for a service the Manager did not
// render, such as a stray it removes from the host it was found on).
func withHost(s types.ServiceConfig, host string) types.ServiceConfig {
	if host != "" {
		s.Extensions = types.Extensions{hostExtension: host}
	}
	return s
}

// plainHostRE matches host names used as they are in a compose file name.
var plainHostRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)

// hostFileName returns the name of the scope's compose file of host:
// compose.yaml for "", compose.host.<host>.yaml for a plain name (a context
// name such as "site-a"), else compose.host.<host with every other byte as
// "_">_<8 hex digits of its SHA-256>.yaml (an URL such as
// "ssh://user@10.0.0.2"). The mapping is injective: a plain name has no
// "_". The "host." infix keeps these names apart from the files Docker
// Compose reads by itself (compose.override.yaml, which it merges into
// compose.yaml) and from a user's own compose.*.yaml files: the writer
// sweeps only hostFilePattern.
func hostFileName(host string) string {
	if host == "" {
		return topFileName
	}
	if plainHostRE.MatchString(host) {
		return hostFilePrefix + host + ".yaml"
	}
	b := []byte(host)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-') {
			b[i] = '_'
		}
	}
	if len(b) > 40 {
		b = b[:40]
	}
	sum := sha256.Sum256([]byte(host))
	return hostFilePrefix + string(b) + "_" + hex.EncodeToString(sum[:4]) + ".yaml"
}

// hostFilePrefix starts the name of every host's compose file (see
// hostFileName); hostFilePattern matches them all, and no other file.
const (
	hostFilePrefix  = "compose.host."
	hostFilePattern = hostFilePrefix + "*.yaml"
)

// failedHosts returns the hosts whose HostError err joins, when err is
// nothing but HostErrors (ok false otherwise: the whole call failed).
func failedHosts(err error) (hosts map[string]error, ok bool) {
	hosts = map[string]error{}
	var walk func(error) bool
	walk = func(err error) bool {
		if j, isJoin := err.(interface{ Unwrap() []error }); isJoin {
			for _, e := range j.Unwrap() {
				if !walk(e) {
					return false
				}
			}
			return true
		}
		var he *HostError
		if errors.As(err, &he) {
			hosts[he.Host] = err
			return true
		}
		return false
	}
	if err == nil || !walk(err) {
		return nil, false
	}
	return hosts, true
}
