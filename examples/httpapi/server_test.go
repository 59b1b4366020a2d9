package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
)

const testToken = "test-token-0123456789abcdef"

// testImage is a demo image with a banner command, as under -engine.
var testImage = demoImage{ref: "servicelive-test:x", banner: []string{"banner"}}

// fixture is the handler over a Manager with the demo registry, a
// MemoryStore seeded with the demo deckies and a recording Composer.
type fixture struct {
	h        http.Handler
	store    *servicelive.MemoryStore
	composer *servicelivetest.Composer
	logs     *syncBuffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	reg, err := demoRegistry(testImage)
	require.NoError(t, err)
	f := &fixture{
		store:    servicelive.NewMemoryStore(demoDeckies(testImage)),
		composer: new(servicelivetest.Composer),
		logs:     new(syncBuffer),
	}
	log := slog.New(slog.NewTextHandler(f.logs, nil))
	m, err := servicelive.New(f.store, f.composer, reg, servicelive.WithLogger(log))
	require.NoError(t, err)
	f.h = newHandler(m, testToken, log)
	return f
}

// do sends an authorized request.
func (f *fixture) do(t *testing.T, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	return f.doAuth(t, method, path, body, "Bearer "+testToken)
}

// doAuth sends a request with the given Authorization header ("" = none).
func (f *fixture) doAuth(t *testing.T, method, path, body, auth string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"), "Content-Type of %s %s", method, path)
	return rec
}

// decky returns the stored decky.
func (f *fixture) decky(t *testing.T, ref servicelive.Ref) servicelive.Decky {
	t.Helper()
	d, err := f.store.Get(context.Background(), ref)
	require.NoError(t, err)
	return d
}

// snapshot returns every stored decky (empty lists and maps as nil), to
// check that a refused call changed nothing.
func (f *fixture) snapshot(t *testing.T) map[string][]servicelive.Decky {
	t.Helper()
	out := map[string][]servicelive.Decky{}
	for _, topology := range []string{"", "lab"} {
		ds, err := f.store.List(context.Background(), topology)
		require.NoError(t, err)
		for i := range ds { // nil and empty mean the same
			if len(ds[i].Services) == 0 {
				ds[i].Services = nil
			}
			if len(ds[i].Config) == 0 {
				ds[i].Config = nil
			}
		}
		out[topology] = ds
	}
	return out
}

// decodeStrict decodes the whole body into a T, refusing unknown fields.
func decodeStrict[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&v), "body %s", rec.Body)
	return v
}

// syncBuffer is a bytes.Buffer safe for concurrent use, for captured logs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAddFleet(t *testing.T) {
	f := newFixture(t)
	rec := f.do(t, "POST", "/api/v1/deckies/web2/services", `{"name": "ssh", "config": {"port": 2222, "banner": "OpenSSH_9.6"}}`)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())

	// The exact shape: topology_id is present, "" for the fleet.
	assert.JSONEq(t, `{"decky_name": "web2", "topology_id": "", "services": ["ssh"]}`, rec.Body.String())

	d := f.decky(t, servicelive.FleetDecky("web2"))
	assert.Equal(t, []string{"ssh"}, d.Services)
	assert.Equal(t, servicelive.Config{"port": 2222, "banner": "OpenSSH_9.6"}, d.Config["ssh"], "config coerced (port is an int)")
	assert.Equal(t, []string{"web2-ssh"}, f.composer.Running())

	// The registry's hook turned the config into the container's settings.
	calls := f.composer.Calls()
	require.Len(t, calls, 1)
	svc := calls[0].Spec.Services["web2-ssh"]
	assert.Equal(t, "servicelive-test:x", svc.Image)
	assert.Equal(t, []string{"banner"}, []string(svc.Command))
	require.NotNil(t, svc.Environment["PORT"])
	assert.Equal(t, "2222", *svc.Environment["PORT"])
	require.NotNil(t, svc.Environment["BANNER"])
	assert.Equal(t, "OpenSSH_9.6\r\n", *svc.Environment["BANNER"])

	// A second service keeps the order.
	rec = f.do(t, "POST", "/api/v1/deckies/web2/services", `{"name": "http"}`)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	assert.Equal(t, []string{"ssh", "http"}, decodeStrict[deckyResponse](t, rec).Services)
}

func TestAddTopology(t *testing.T) {
	f := newFixture(t)
	rec := f.do(t, "POST", "/api/v1/topologies/lab/deckies/edge1/services", `{"name": "http", "config": {}}`)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	assert.Equal(t, deckyResponse{DeckyName: "edge1", TopologyID: "lab", Services: []string{"http"}}, decodeStrict[deckyResponse](t, rec))

	assert.Equal(t, []string{"http"}, f.decky(t, servicelive.TopologyDecky("lab", "edge1")).Services)
	assert.Empty(t, f.decky(t, servicelive.FleetDecky("web2")).Services, "the fleet is untouched")
	calls := f.composer.Calls()
	require.Len(t, calls, 1)
	assert.Equal(t, servicelivetest.OpUp, calls[0].Op)
	assert.Equal(t, "edge1-http", calls[0].Service)
}

func TestRemoveFleet(t *testing.T) {
	f := newFixture(t)
	rec := f.do(t, "DELETE", "/api/v1/deckies/web1/services/http", "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	// The last service gone: [] rather than null.
	assert.JSONEq(t, `{"decky_name": "web1", "topology_id": "", "services": []}`, rec.Body.String())
	assert.Empty(t, f.decky(t, servicelive.FleetDecky("web1")).Services)

	calls := f.composer.Calls()
	require.Len(t, calls, 1)
	assert.Equal(t, servicelivetest.OpDown, calls[0].Op)
	assert.Equal(t, "web1-http", calls[0].Service)
}

func TestRemoveTopology(t *testing.T) {
	f := newFixture(t)
	require.Equal(t, http.StatusCreated, f.do(t, "POST", "/api/v1/topologies/lab/deckies/edge1/services", `{"name":"ssh","config":{"port":22}}`).Code)
	require.Equal(t, http.StatusCreated, f.do(t, "POST", "/api/v1/topologies/lab/deckies/edge1/services", `{"name":"http"}`).Code)

	rec := f.do(t, "DELETE", "/api/v1/topologies/lab/deckies/edge1/services/ssh", "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Equal(t, deckyResponse{DeckyName: "edge1", TopologyID: "lab", Services: []string{"http"}}, decodeStrict[deckyResponse](t, rec))

	d := f.decky(t, servicelive.TopologyDecky("lab", "edge1"))
	assert.Equal(t, []string{"http"}, d.Services)
	assert.NotContains(t, d.Config, "ssh", "its config went with it")
	assert.Equal(t, []string{"web1", "web2"}, deckyNames(t, f, ""), "the fleet is untouched")
	assert.Equal(t, []string{"http"}, f.decky(t, servicelive.FleetDecky("web1")).Services)
}

func deckyNames(t *testing.T, f *fixture, topology string) []string {
	t.Helper()
	ds, err := f.store.List(context.Background(), topology)
	require.NoError(t, err)
	names := make([]string, len(ds))
	for i, d := range ds {
		names[i] = d.Name
	}
	return names
}

// TestRefused: every 4xx, with its message, and nothing changed.
func TestRefused(t *testing.T) {
	const fleetAdd = "/api/v1/deckies/web2/services"
	oversized := func(n int) string {
		head, tail := `{"name": "ssh", "config": {"banner": "`, `"}}`
		return head + strings.Repeat("x", n-len(head)-len(tail)) + tail
	}
	tests := []struct {
		name         string
		method, path string
		body         string
		status       int
		msg          string // in the error message
	}{
		// 400: the body.
		{"malformed JSON", "POST", fleetAdd, `{"name": "ssh",`, 400, "malformed JSON"},
		{"syntax error", "POST", fleetAdd, `{"name": ssh}`, 400, "malformed JSON"},
		{"unknown field", "POST", fleetAdd, `{"name": "ssh", "services": ["http"]}`, 400, `unknown field "services"`},
		{"trailing data", "POST", fleetAdd, `{"name": "ssh"} {"name": "http"}`, 400, "trailing data"},
		{"trailing garbage", "POST", fleetAdd, `{"name": "ssh"}x`, 400, "malformed JSON"},
		{"empty body", "POST", fleetAdd, ``, 400, "empty"},
		{"not an object", "POST", fleetAdd, `["ssh"]`, 400, "want an object"},
		{"name not a string", "POST", fleetAdd, `{"name": 5}`, 400, `field "name"`},
		{"config not an object", "POST", fleetAdd, `{"name": "ssh", "config": "port=22"}`, 400, `field "config"`},
		{"oversized 64KiB+1", "POST", fleetAdd, oversized(64<<10 + 1), 400, "larger than 65536 bytes"},
		{"oversized 1MiB", "POST", fleetAdd, oversized(1 << 20), 400, "larger than 65536 bytes"},

		// 404: ErrNotFound.
		{"missing fleet decky", "POST", "/api/v1/deckies/nope/services", `{"name": "ssh"}`, 404, "not found"},
		{"missing topology", "POST", "/api/v1/topologies/nope/deckies/edge1/services", `{"name": "ssh"}`, 404, "not found"},
		{"missing topology decky", "POST", "/api/v1/topologies/lab/deckies/web1/services", `{"name": "ssh"}`, 404, "not found"},
		{"remove from missing decky", "DELETE", "/api/v1/deckies/nope/services/http", ``, 404, "not found"},
		{"remove from missing topology", "DELETE", "/api/v1/topologies/nope/deckies/edge1/services/http", ``, 404, "not found"},

		// 409: ErrConflict.
		{"already on", "POST", "/api/v1/deckies/web1/services", `{"name": "http"}`, 409, "already on decky"},
		{"not on", "DELETE", "/api/v1/deckies/web2/services/ssh", ``, 409, "not on decky"},
		{"not on, topology", "DELETE", "/api/v1/topologies/lab/deckies/edge1/services/ssh", ``, 409, "not on decky"},

		// 422: ErrInvalidService.
		{"unknown service", "POST", fleetAdd, `{"name": "telnet"}`, 422, "unknown service"},
		{"no name", "POST", fleetAdd, `{"config": {"port": 22}}`, 422, "bad service name"},
		{"fleet singleton", "POST", fleetAdd, `{"name": "llmnr"}`, 422, "fleet-singleton"},
		{"fleet singleton, topology", "POST", "/api/v1/topologies/lab/deckies/edge1/services", `{"name": "llmnr"}`, 422, "fleet-singleton"},
		{"bad int", "POST", fleetAdd, `{"name": "ssh", "config": {"port": "eighty"}}`, 422, `config port: "eighty" is not an integer`},
		{"non-integral int", "POST", fleetAdd, `{"name": "ssh", "config": {"port": 22.5}}`, 422, "not an integer"},
		{"non-scalar string", "POST", fleetAdd, `{"name": "ssh", "config": {"banner": {"a": 1}}}`, 422, "config banner"},
		{"bad decky name", "POST", "/api/v1/deckies/Web_1/services", `{"name": "ssh"}`, 422, "bad decky name"},
		{"escaped decky name", "POST", "/api/v1/deckies/..%2Fetc/services", `{"name": "ssh"}`, 422, "bad decky name"},
		{"bad topology id", "POST", "/api/v1/topologies/lab_1/deckies/edge1/services", `{"name": "ssh"}`, 422, "bad topology id"},
		{"bad decky name, remove", "DELETE", "/api/v1/deckies/-web1/services/http", ``, 422, "bad decky name"},
		{"bad service name, remove", "DELETE", "/api/v1/deckies/web1/services/HTTP", ``, 422, "bad service name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			before := f.snapshot(t)
			rec := f.do(t, tt.method, tt.path, tt.body)
			require.Equal(t, tt.status, rec.Code, rec.Body.String())
			e := decodeStrict[errorResponse](t, rec)
			assert.Contains(t, e.Error, tt.msg)
			assert.Equal(t, before, f.snapshot(t), "the store is unchanged")
			assert.Empty(t, f.composer.Calls(), "the engine is not called")
		})
	}
}

func TestBodyLimitExact(t *testing.T) {
	// Exactly 64 KiB (whitespace-padded) is accepted.
	f := newFixture(t)
	body := `{"name": "http"}`
	body += strings.Repeat(" ", maxBodyBytes-len(body))
	rec := f.do(t, "POST", "/api/v1/deckies/web2/services", body)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())

	// One byte more, even of whitespace, is not.
	rec = f.do(t, "POST", "/api/v1/deckies/web2/services", body+" ")
	require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
}

func TestUnauthorized(t *testing.T) {
	routes := []struct{ method, path, body string }{
		{"POST", "/api/v1/deckies/web2/services", `{"name": "ssh"}`},
		{"DELETE", "/api/v1/deckies/web1/services/http", ``},
		{"POST", "/api/v1/topologies/lab/deckies/edge1/services", `{"name": "ssh"}`},
		{"DELETE", "/api/v1/topologies/lab/deckies/edge1/services/http", ``},
		{"POST", "/api/v1/deckies/web2/services", `{malformed`}, // auth comes before the body
		{"GET", "/nowhere", ``}, // and before routing
	}
	auths := []struct {
		name, header, challenge string
	}{
		{"missing", "", `Bearer realm="servicelive"`},
		{"wrong token", "Bearer wrong", `Bearer realm="servicelive", error="invalid_token"`},
		{"token prefix", "Bearer " + testToken[:len(testToken)-1], `Bearer realm="servicelive", error="invalid_token"`},
		{"token plus a byte", "Bearer " + testToken + "x", `Bearer realm="servicelive", error="invalid_token"`},
		{"empty token", "Bearer ", `Bearer realm="servicelive", error="invalid_token"`},
		{"basic scheme", "Basic " + testToken, `Bearer realm="servicelive"`},
		{"no scheme", testToken, `Bearer realm="servicelive"`},
	}
	for _, a := range auths {
		for _, r := range routes {
			t.Run(a.name+" "+r.method+" "+r.path, func(t *testing.T) {
				f := newFixture(t)
				before := f.snapshot(t)
				rec := f.doAuth(t, r.method, r.path, r.body, a.header)
				require.Equal(t, http.StatusUnauthorized, rec.Code, rec.Body.String())
				assert.Equal(t, a.challenge, rec.Header().Get("WWW-Authenticate"))
				assert.NotEmpty(t, decodeStrict[errorResponse](t, rec).Error)
				assert.Equal(t, before, f.snapshot(t))
				assert.Empty(t, f.composer.Calls())
			})
		}
	}
}

func TestAuthSchemeCaseInsensitive(t *testing.T) {
	f := newFixture(t)
	rec := f.doAuth(t, "POST", "/api/v1/deckies/web2/services", `{"name": "http"}`, "bearer "+testToken)
	assert.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
}

func TestEmptyTokenRefusesEverything(t *testing.T) {
	reg, err := demoRegistry(testImage)
	require.NoError(t, err)
	m, err := servicelive.New(servicelive.NewMemoryStore(demoDeckies(testImage)), new(servicelivetest.Composer), reg)
	require.NoError(t, err)
	h := newHandler(m, "", nil)
	for _, auth := range []string{"", "Bearer ", "Bearer  "} {
		req := httptest.NewRequest("POST", "/api/v1/deckies/web2/services", strings.NewReader(`{"name": "http"}`))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		assert.Equal(t, http.StatusUnauthorized, rec.Code, "Authorization %q", auth)
	}
}

// TestEngineFailure: an engine error is a 500 whose body says nothing of it;
// the detail is logged and the change undone.
func TestEngineFailure(t *testing.T) {
	const secret = "dial unix /var/run/docker.sock: permission denied (secret detail)"
	tests := []struct {
		name, method, path, body, op string
	}{
		{"add fleet", "POST", "/api/v1/deckies/web2/services", `{"name": "ssh", "config": {"port": 22}}`, servicelivetest.OpUp},
		{"add topology", "POST", "/api/v1/topologies/lab/deckies/edge1/services", `{"name": "http"}`, servicelivetest.OpUp},
		{"remove fleet", "DELETE", "/api/v1/deckies/web1/services/http", ``, servicelivetest.OpDown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			before := f.snapshot(t)
			f.composer.FailNext(tt.op, errors.New(secret))

			rec := f.do(t, tt.method, tt.path, tt.body)
			require.Equal(t, http.StatusInternalServerError, rec.Code)
			assert.JSONEq(t, `{"error": "internal error"}`, rec.Body.String())
			assert.NotContains(t, rec.Body.String(), "docker.sock")
			assert.NotContains(t, rec.Body.String(), "servicelive")
			assert.Contains(t, f.logs.String(), "permission denied (secret detail)", "the detail is logged")
			assert.Equal(t, before, f.snapshot(t), "the change is undone")

			// The failure was one-off: a retry works.
			rec = f.do(t, tt.method, tt.path, tt.body)
			want := http.StatusCreated
			if tt.method == "DELETE" {
				want = http.StatusOK
			}
			assert.Equal(t, want, rec.Code, rec.Body.String())
		})
	}
}

func TestConfigNotLogged(t *testing.T) {
	f := newFixture(t)
	rec := f.do(t, "POST", "/api/v1/deckies/web2/services", `{"name": "ssh", "config": {"banner": "hunter2-banner"}}`)
	require.Equal(t, http.StatusCreated, rec.Code)
	assert.Contains(t, f.logs.String(), "service added")
	assert.NotContains(t, f.logs.String(), "hunter2")
}

func TestMethodNotAllowed(t *testing.T) {
	f := newFixture(t)
	req := httptest.NewRequest("GET", "/api/v1/deckies/web1/services", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
}

// TestConcurrentAdds: many requests adding the same service to one decky:
// exactly one wins, the others get 409; different deckies do not conflict.
func TestConcurrentAdds(t *testing.T) {
	f := newFixture(t)
	const n = 32
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			path := "/api/v1/deckies/web2/services"
			if i%2 == 1 {
				path = "/api/v1/topologies/lab/deckies/edge1/services"
			}
			req := httptest.NewRequest("POST", path, strings.NewReader(`{"name": "ssh"}`))
			req.Header.Set("Authorization", "Bearer "+testToken)
			rec := httptest.NewRecorder()
			f.h.ServeHTTP(rec, req)
			codes[i] = rec.Code
		})
	}
	wg.Wait()
	count := map[int]int{}
	for _, c := range codes {
		count[c]++
	}
	assert.Equal(t, map[int]int{http.StatusCreated: 2, http.StatusConflict: n - 2}, count)
	assert.Equal(t, []string{"ssh"}, f.decky(t, servicelive.FleetDecky("web2")).Services)
	assert.Equal(t, []string{"ssh"}, f.decky(t, servicelive.TopologyDecky("lab", "edge1")).Services)
}

func TestParseFlags(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	var stderr bytes.Buffer

	_, err := parseFlags(nil, env(nil), &stderr)
	require.Error(t, err, "no token: refuse to start")
	assert.Contains(t, err.Error(), tokenEnv)

	o, err := parseFlags(nil, env(map[string]string{tokenEnv: "from-env"}), &stderr)
	require.NoError(t, err)
	assert.Equal(t, options{addr: "127.0.0.1:8080", token: "from-env", fleet: "decnet"}, o)

	o, err = parseFlags([]string{"-token", "from-flag", "-addr", ":9", "-state", "s.json", "-project-dir", "p", "-fleet-project", "demo",
		"-engine", "-docker-host", "tcp://10.0.0.2:2376"},
		env(map[string]string{tokenEnv: "from-env"}), &stderr)
	require.NoError(t, err)
	assert.Equal(t, options{addr: ":9", token: "from-flag", state: "s.json", projectDir: "p", fleet: "demo",
		engineOptions: engineOptions{engine: true, dockerHost: "tcp://10.0.0.2:2376"}}, o)

	_, err = parseFlags([]string{"-docker-host", "unix:///x.sock"}, env(map[string]string{tokenEnv: "x"}), &stderr)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "-docker-host needs -engine")

	_, err = parseFlags([]string{"extra"}, env(map[string]string{tokenEnv: "x"}), &stderr)
	assert.Error(t, err)
}

func TestOpenStore(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)

	// In memory: the demo deckies.
	s, err := openStore(ctx, "", testImage, log)
	require.NoError(t, err)
	assert.IsType(t, (*servicelive.MemoryStore)(nil), s)
	ds, err := s.List(ctx, "")
	require.NoError(t, err)
	assert.Len(t, ds, 2)

	// A new state file: seeded. An existing one: left as it is.
	path := filepath.Join(t.TempDir(), "state.json")
	s, err = openStore(ctx, path, testImage, log)
	require.NoError(t, err)
	assert.IsType(t, (*servicelive.FileStore)(nil), s)
	_, err = s.Update(ctx, servicelive.FleetDecky("web1"), func(d *servicelive.Decky) error {
		d.Services = nil
		return nil
	})
	require.NoError(t, err)
	s, err = openStore(ctx, path, testImage, log)
	require.NoError(t, err)
	d, err := s.Get(ctx, servicelive.FleetDecky("web1"))
	require.NoError(t, err)
	assert.Empty(t, d.Services, "not reseeded")
	_, err = s.Get(ctx, servicelive.TopologyDecky("lab", "edge1"))
	assert.NoError(t, err)
}

// TestRun starts the whole server on a free port, serves one request and
// shuts down when the context ends.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := new(syncBuffer)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-token", testToken, "-project-dir", t.TempDir()},
			func(string) string { return "" }, stderr)
	}()

	var addr string
	require.Eventually(t, func() bool {
		_, rest, ok := strings.Cut(stderr.String(), "addr=")
		addr, _, _ = strings.Cut(rest, " ")
		return ok
	}, 5*time.Second, 10*time.Millisecond, "server did not start: %s", stderr)

	req, err := http.NewRequestWithContext(ctx, "POST", addr+"/api/v1/deckies/web2/services", strings.NewReader(`{"name": "ssh"}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var got deckyResponse
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
	require.NoError(t, resp.Body.Close())
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
	assert.Equal(t, deckyResponse{DeckyName: "web2", Services: []string{"ssh"}}, got)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	assert.Contains(t, stderr.String(), "composer: up (stand-in")
	assert.Contains(t, stderr.String(), "stopped")
}

func TestRunRefusesWithoutToken(t *testing.T) {
	err := run(context.Background(), []string{"-addr", "127.0.0.1:0"}, func(string) string { return "" }, new(bytes.Buffer))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "refusing")
}

func Example_statusOf() {
	for _, err := range []error{servicelive.ErrNotFound, servicelive.ErrConflict, servicelive.ErrInvalidService, errors.New("engine")} {
		fmt.Println(statusOf(fmt.Errorf("wrapped: %w", err)))
	}
	// Output:
	// 404
	// 409
	// 422
	// 500
}

func TestDeployAndTeardownAll(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	reg, err := demoRegistry(testImage)
	require.NoError(t, err)
	m, err := servicelive.New(f.store, f.composer, reg)
	require.NoError(t, err)
	log := slog.New(slog.DiscardHandler)

	assert.Equal(t, []string{"", "lab"}, scopes(ctx, f.store))
	require.NoError(t, deployAll(ctx, m, f.store, log))
	assert.Equal(t, []string{"edge1", "web1", "web1-http", "web2"}, f.composer.Running())
	require.NoError(t, teardownAll(m, f.store, log))
	assert.Empty(t, f.composer.Running())
}
