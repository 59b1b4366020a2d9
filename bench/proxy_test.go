package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// apiProxy is a recording reverse proxy in front of the engine's unix
// socket: every Engine API request that goes through it is recorded with
// its start (from the last reset) and its duration up to the response
// headers. It serves the call counts and timelines of the report; the
// timed rounds never go through it.
type apiProxy struct {
	sock string // unix socket path to point DOCKER_HOST at

	mu    sync.Mutex
	t0    time.Time
	calls []apiCall
}

type apiCall struct {
	what  string // "POST /containers/{id}/start"
	start time.Duration
	dur   time.Duration
}

// newProxy starts a proxy to the engine at DOCKER_HOST (a unix socket) or
// the default socket; it stops at the end of the benchmark.
func newProxy(b *testing.B) *apiProxy {
	b.Helper()
	target := "/var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		p, ok := strings.CutPrefix(h, "unix://")
		if !ok {
			b.Skipf("API call counting needs a unix socket engine, DOCKER_HOST=%s", h)
		}
		target = p
	}
	dir, err := os.MkdirTemp("", "slbench-proxy-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	p := &apiProxy{sock: filepath.Join(dir, "docker.sock"), t0: time.Now()}
	ln, err := net.Listen("unix", p.sock)
	if err != nil {
		b.Fatal(err)
	}
	transport := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", target)
		},
		MaxIdleConnsPerHost: 64,
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme = "http"
			r.Out.URL.Host = "docker"
			r.Out.Host = "docker"
		},
		Transport:     recorder{p: p, rt: transport},
		FlushInterval: -1,
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: time.Minute}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.Logf("api proxy: %v", err)
		}
	}()
	b.Cleanup(func() {
		_ = srv.Close()
		transport.CloseIdleConnections()
	})
	return p
}

// host is the DOCKER_HOST value of the proxy.
func (p *apiProxy) host() string { return "unix://" + p.sock }

// reset forgets the recorded calls and restarts the clock.
func (p *apiProxy) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = nil
	p.t0 = time.Now()
}

// take returns the calls recorded since the last reset.
func (p *apiProxy) take() []apiCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]apiCall(nil), p.calls...)
}

type recorder struct {
	p  *apiProxy
	rt http.RoundTripper
}

func (r recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	res, err := r.rt.RoundTrip(req)
	end := time.Now()
	r.p.mu.Lock()
	r.p.calls = append(r.p.calls, apiCall{what: req.Method + " " + endpoint(req.URL.Path), start: start.Sub(r.p.t0), dur: end.Sub(start)})
	r.p.mu.Unlock()
	return res, err
}

var versionPrefix = regexp.MustCompile(`^/v[0-9]+\.[0-9]+`)

// endpoint turns a request path into its API endpoint: no version prefix,
// container/network/image names and IDs replaced by {id}.
func endpoint(path string) string {
	path = versionPrefix.ReplaceAllString(path, "")
	parts := strings.Split(path, "/")
	if len(parts) >= 3 {
		switch parts[1] {
		case "containers", "networks", "volumes", "exec":
			switch parts[2] {
			case "json", "create", "prune":
			default:
				parts[2] = "{id}"
			}
		case "images":
			// /images/<name>/json: the name may hold slashes.
			if n := len(parts); parts[n-1] == "json" && n > 3 {
				parts = []string{"", "images", "{name}", "json"}
			}
		}
	}
	return strings.Join(parts, "/")
}

// timeline renders calls as a Markdown table, against the wall time of the
// operation they belong to.
func timeline(calls []apiCall, wall time.Duration) string {
	var b strings.Builder
	var sum time.Duration
	b.WriteString("| # | start (ms) | took (ms) | call |\n|---:|---:|---:|---|\n")
	for i, c := range calls {
		fmt.Fprintf(&b, "| %d | %.1f | %.1f | `%s` |\n", i+1, ms64(c.start), ms64(c.dur), c.what)
		sum += c.dur
	}
	fmt.Fprintf(&b, "\n%d calls, %.1f ms inside the engine (sum of call durations), %.1f ms wall through the proxy.\n",
		len(calls), ms64(sum), ms64(wall))
	return b.String()
}

func ms64(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// endpointCalls is every call to one endpoint.
type endpointCalls struct {
	what string
	durs series
}

func (e endpointCalls) sum() time.Duration {
	var s time.Duration
	for _, d := range e.durs {
		s += d
	}
	return s
}

// endpointStats groups calls by endpoint, in order of first call.
func endpointStats(calls []apiCall) []endpointCalls {
	var out []endpointCalls
	idx := map[string]int{}
	for _, c := range calls {
		i, ok := idx[c.what]
		if !ok {
			i = len(out)
			idx[c.what] = i
			out = append(out, endpointCalls{what: c.what})
		}
		out[i].durs = append(out[i].durs, c.dur)
	}
	return out
}
