package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
)

const testToken = "test-token-0123456789abcdef"

// testImage is a demo image with a banner command, as under -engine.
var testImage = demoImage{ref: "servicelive-test:x", banner: []string{"banner"}}

// fixture is the handler over a Manager with the demo registry, a
// MemoryStore seeded with the demo deckies and a recording Composer on which
// they are deployed (its record of calls starts empty).
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
	// Deployed, as under -engine: a service joins its decky's running base.
	require.NoError(t, deployAll(context.Background(), m, f.store, slog.New(slog.DiscardHandler)))
	f.composer.Reset()
	f.h = newHandler(m, f.store, reg, testToken, log)
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
	assert.Equal(t, []string{"edge1", "web1", "web1-http", "web2", "web2-ssh"}, f.composer.Running())

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

// TestListDeckies: the exact shape of a scope's listing, before and after
// changes; a read calls no engine.
func TestListDeckies(t *testing.T) {
	f := newFixture(t)
	rec := f.do(t, "GET", "/api/v1/deckies", "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.JSONEq(t, `{"topology_id": "", "deckies": [
		{"decky_name": "web1", "topology_id": "", "services": ["http"], "config_keys": {"http": []}},
		{"decky_name": "web2", "topology_id": "", "services": [], "config_keys": {}}
	]}`, rec.Body.String())
	decodeStrict[scopeResponse](t, rec)

	rec = f.do(t, "GET", "/api/v1/topologies/lab/deckies", "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.JSONEq(t, `{"topology_id": "lab", "deckies": [
		{"decky_name": "edge1", "topology_id": "lab", "services": [], "config_keys": {}}
	]}`, rec.Body.String())
	assert.Empty(t, f.composer.Calls(), "a read calls no engine")

	// The listing follows the writes.
	require.Equal(t, http.StatusCreated, f.do(t, "POST", "/api/v1/deckies/web2/services", `{"name": "ssh", "config": {"port": 2222, "banner": "b"}}`).Code)
	require.Equal(t, http.StatusCreated, f.do(t, "POST", "/api/v1/deckies/web2/services", `{"name": "http"}`).Code)
	require.Equal(t, http.StatusOK, f.do(t, "DELETE", "/api/v1/deckies/web1/services/http", "").Code)
	rec = f.do(t, "GET", "/api/v1/deckies", "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.JSONEq(t, `{"topology_id": "", "deckies": [
		{"decky_name": "web1", "topology_id": "", "services": [], "config_keys": {}},
		{"decky_name": "web2", "topology_id": "", "services": ["ssh", "http"], "config_keys": {"ssh": ["banner", "port"], "http": []}}
	]}`, rec.Body.String())

	// An empty topology (the MemoryStore keeps it) lists [] rather than null.
	require.NoError(t, f.store.Delete(context.Background(), servicelive.TopologyDecky("lab", "edge1")))
	rec = f.do(t, "GET", "/api/v1/topologies/lab/deckies", "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.JSONEq(t, `{"topology_id": "lab", "deckies": []}`, rec.Body.String())
}

// TestGetDecky: one decky, its services and their configuration keys, in
// the fleet and in a topology; HEAD answers as GET.
func TestGetDecky(t *testing.T) {
	f := newFixture(t)
	require.Equal(t, http.StatusCreated, f.do(t, "POST", "/api/v1/deckies/web1/services", `{"name": "ssh", "config": {"port": 2222, "banner": "SSH-2.0-x"}}`).Code)
	rec := f.do(t, "GET", "/api/v1/deckies/web1", "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.JSONEq(t, `{"decky_name": "web1", "topology_id": "", "services": ["http", "ssh"], "config_keys": {"http": [], "ssh": ["banner", "port"]}}`, rec.Body.String())
	assert.Equal(t, deckyView{DeckyName: "web1", Services: []string{"http", "ssh"}, ConfigKeys: map[string][]string{"http": {}, "ssh": {"banner", "port"}}},
		decodeStrict[deckyView](t, rec))

	rec = f.do(t, "GET", "/api/v1/topologies/lab/deckies/edge1", "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.JSONEq(t, `{"decky_name": "edge1", "topology_id": "lab", "services": [], "config_keys": {}}`, rec.Body.String())

	rec = f.do(t, "HEAD", "/api/v1/deckies/web2", "")
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Len(t, f.composer.Calls(), 1, "only the add called the engine")
}

// TestUpdateConfig: PUT .../config stores the whole new configuration and,
// with ?apply=true, recreates that service's container (one Up) with it.
func TestUpdateConfig(t *testing.T) {
	tests := []struct {
		name    string
		topo    string // "" = the fleet, else topology lab's edge1
		query   string
		body    string
		applied bool
		want    servicelive.Config // stored
		keys    []string
	}{
		{"stored", "", "", `{"port": 2200, "banner": "SSH-2.0-new"}`, false, servicelive.Config{"port": 2200, "banner": "SSH-2.0-new"}, []string{"banner", "port"}},
		{"applied", "", "?apply=true", `{"port": 2200, "banner": "SSH-2.0-new"}`, true, servicelive.Config{"port": 2200, "banner": "SSH-2.0-new"}, []string{"banner", "port"}},
		{"apply=1, topology", "lab", "?apply=1", `{"banner": "SSH-2.0-lab"}`, true, servicelive.Config{"banner": "SSH-2.0-lab"}, []string{"banner"}},
		{"apply=false, other parameters ignored", "", "?apply=false&x=1", `{"banner": "SSH-2.0-new"}`, false, servicelive.Config{"banner": "SSH-2.0-new"}, []string{"banner"}},
		{"unknown keys dropped, strings coerced", "", "?apply=TRUE", `{"port": "2201", "colour": "blue", "banner": ""}`, true, servicelive.Config{"port": 2201}, []string{"port"}},
		{"{} clears", "lab", "?apply=true", `{}`, true, nil, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			ref, prefix := servicelive.FleetDecky("web2"), "/api/v1/deckies/web2"
			if tt.topo != "" {
				ref, prefix = servicelive.TopologyDecky("lab", "edge1"), "/api/v1/topologies/lab/deckies/edge1"
			}
			require.Equal(t, http.StatusCreated, f.do(t, "POST", prefix+"/services", `{"name": "ssh", "config": {"port": 22, "banner": "SSH-2.0-old"}}`).Code)
			require.Equal(t, http.StatusCreated, f.do(t, "POST", prefix+"/services", `{"name": "http"}`).Code)
			f.composer.Reset()
			others := f.snapshot(t)

			rec := f.do(t, "PUT", prefix+"/services/ssh/config"+tt.query, tt.body)
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			assert.Equal(t, configResponse{DeckyName: ref.Decky, TopologyID: ref.Topology, Service: "ssh", ConfigKeys: tt.keys, Applied: tt.applied},
				decodeStrict[configResponse](t, rec))

			d := f.decky(t, ref)
			assert.Equal(t, []string{"ssh", "http"}, d.Services, "the services are unchanged")
			assert.Equal(t, tt.want, d.Config["ssh"])
			calls := f.composer.Calls()
			if !tt.applied {
				assert.Empty(t, calls, "stored only: the container keeps running as it is")
			} else {
				require.Len(t, calls, 1)
				assert.Equal(t, servicelivetest.OpUp, calls[0].Op)
				assert.Equal(t, ref.Decky+"-ssh", calls[0].Service, "only the service's container")
				env := calls[0].Spec.Services[ref.Decky+"-ssh"].Environment
				wantBanner, wantPort := "SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n", "22"
				if b, ok := tt.want["banner"].(string); ok {
					wantBanner = b + "\r\n"
				}
				if p, ok := tt.want["port"].(int); ok {
					wantPort = fmt.Sprint(p)
				}
				require.NotNil(t, env["BANNER"])
				require.NotNil(t, env["PORT"])
				assert.Equal(t, wantBanner, *env["BANNER"])
				assert.Equal(t, wantPort, *env["PORT"])
			}

			// Nothing else changed.
			after := f.snapshot(t)
			for scope := range others {
				for i, x := range others[scope] {
					if scope != ref.Topology || x.Name != ref.Decky {
						assert.Equal(t, x, after[scope][i])
					}
				}
			}

			// The read shows the new keys.
			rec = f.do(t, "GET", prefix, "")
			require.Equal(t, http.StatusOK, rec.Code)
			assert.Equal(t, tt.keys, decodeStrict[deckyView](t, rec).ConfigKeys["ssh"])
		})
	}
}

// TestUpdateConfigEngineFailure: when the engine fails to recreate the
// container, the answer is a bare 500, and the old configuration is stored
// again and brought back on the engine.
func TestUpdateConfigEngineFailure(t *testing.T) {
	f := newFixture(t)
	require.Equal(t, http.StatusCreated, f.do(t, "POST", "/api/v1/deckies/web2/services", `{"name": "ssh", "config": {"banner": "SSH-2.0-old"}}`).Code)
	f.composer.Reset()
	before := f.snapshot(t)
	f.composer.FailNext(servicelivetest.OpUp, errors.New("no such image: registry.example/ssh:9.9 (secret detail)"))

	rec := f.do(t, "PUT", "/api/v1/deckies/web2/services/ssh/config?apply=true", `{"banner": "SSH-2.0-new"}`)
	require.Equal(t, http.StatusInternalServerError, rec.Code, rec.Body.String())
	assert.JSONEq(t, `{"error": "internal error"}`, rec.Body.String())
	assert.Contains(t, f.logs.String(), "(secret detail)", "the detail is logged")
	assert.NotContains(t, f.logs.String(), "SSH-2.0-new", "the config is not")
	assert.Equal(t, before, f.snapshot(t), "the old config is stored again")
	calls := f.composer.Calls()
	require.Len(t, calls, 2, "the failed recreate, then the old container brought back")
	for i, banner := range []string{"SSH-2.0-new\r\n", "SSH-2.0-old\r\n"} {
		assert.Equal(t, "web2-ssh", calls[i].Service)
		assert.Equal(t, banner, *calls[i].Spec.Services["web2-ssh"].Environment["BANNER"])
	}

	// The failure was one-off: a retry works.
	rec = f.do(t, "PUT", "/api/v1/deckies/web2/services/ssh/config?apply=true", `{"banner": "SSH-2.0-new"}`)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Equal(t, servicelive.Config{"banner": "SSH-2.0-new"}, f.decky(t, servicelive.FleetDecky("web2")).Config["ssh"])
}

// TestRefused: every 4xx, with its message, and nothing changed.
func TestRefused(t *testing.T) {
	const fleetAdd = "/api/v1/deckies/web2/services"
	const fleetConf = "/api/v1/deckies/web1/services/http/config"
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

		// PUT .../config: 400 (body, query), 404, 409, 422.
		{"config: malformed JSON", "PUT", fleetConf, `{"port": 22`, 400, "malformed JSON"},
		{"config: null", "PUT", fleetConf, `null`, 400, "want an object, got null"},
		{"config: array", "PUT", fleetConf, `[{"port": 22}]`, 400, "want an object"},
		{"config: string", "PUT", fleetConf, `"port=22"`, 400, "want an object"},
		{"config: empty body", "PUT", fleetConf, ``, 400, "empty"},
		{"config: trailing data", "PUT", fleetConf, `{} {}`, 400, "trailing data"},
		{"config: oversized", "PUT", fleetConf, `{"banner": "` + strings.Repeat("x", maxBodyBytes) + `"}`, 400, "larger than 65536 bytes"},
		{"config: apply not a bool", "PUT", fleetConf + "?apply=yes", `{}`, 400, `want true or false, got "yes"`},
		{"config: apply empty", "PUT", fleetConf + "?apply", `{}`, 400, "want true or false"},
		{"config: apply twice", "PUT", fleetConf + "?apply=true&apply=false", `{}`, 400, "more than once"},
		{"config: malformed query", "PUT", fleetConf + "?apply=%zz", `{}`, 400, "malformed query"},
		{"config: missing decky", "PUT", "/api/v1/deckies/nope/services/http/config", `{}`, 404, "not found"},
		{"config: missing topology", "PUT", "/api/v1/topologies/nope/deckies/edge1/services/ssh/config?apply=true", `{}`, 404, "not found"},
		{"config: not on", "PUT", "/api/v1/deckies/web2/services/ssh/config?apply=true", `{"port": 22}`, 409, "not on decky"},
		{"config: not on, topology", "PUT", "/api/v1/topologies/lab/deckies/edge1/services/http/config", `{}`, 409, "not on decky"},
		{"config: unknown service", "PUT", "/api/v1/deckies/web1/services/telnet/config", `{}`, 422, "unknown service"},
		{"config: fleet singleton", "PUT", "/api/v1/deckies/web1/services/llmnr/config", `{}`, 422, "fleet-singleton"},
		{"config: bad int", "PUT", "/api/v1/deckies/web1/services/ssh/config?apply=true", `{"port": "eighty"}`, 422, `config port: "eighty" is not an integer`},
		{"config: non-scalar string", "PUT", "/api/v1/deckies/web1/services/ssh/config", `{"banner": ["a"]}`, 422, "config banner"},
		{"config: bad service name", "PUT", "/api/v1/deckies/web1/services/HTTP/config", `{}`, 422, "bad service name"},
		{"config: bad decky name", "PUT", "/api/v1/deckies/Web1/services/http/config", `{}`, 422, "bad decky name"},
		{"config: bad topology id", "PUT", "/api/v1/topologies/lab_1/deckies/edge1/services/http/config", `{}`, 422, "bad topology id"},

		// GET: 404, 422.
		{"get missing decky", "GET", "/api/v1/deckies/nope", ``, 404, "not found"},
		{"get missing topology", "GET", "/api/v1/topologies/nope/deckies/edge1", ``, 404, "not found"},
		{"get decky of another scope", "GET", "/api/v1/topologies/lab/deckies/web1", ``, 404, "not found"},
		{"list missing topology", "GET", "/api/v1/topologies/nope/deckies", ``, 404, "not found"},
		{"get bad decky name", "GET", "/api/v1/deckies/Web1", ``, 422, `bad decky name "Web1"`},
		{"get escaped decky name", "GET", "/api/v1/deckies/..%2Fetc", ``, 422, "bad decky name"},
		{"get bad topology id", "GET", "/api/v1/topologies/lab_1/deckies/edge1", ``, 422, `bad topology id "lab_1"`},
		{"list bad topology id", "GET", "/api/v1/topologies/-lab/deckies", ``, 422, `bad topology id "-lab"`},
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

	// The same for a configuration.
	body = `{"port": 2222}`
	body += strings.Repeat(" ", maxBodyBytes-len(body))
	rec = f.do(t, "PUT", "/api/v1/deckies/web1/services/ssh/config", body+" ")
	require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
	require.Equal(t, http.StatusCreated, f.do(t, "POST", "/api/v1/deckies/web1/services", `{"name": "ssh"}`).Code)
	rec = f.do(t, "PUT", "/api/v1/deckies/web1/services/ssh/config", body)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
}

func TestUnauthorized(t *testing.T) {
	routes := []struct{ method, path, body string }{
		{"POST", "/api/v1/deckies/web2/services", `{"name": "ssh"}`},
		{"DELETE", "/api/v1/deckies/web1/services/http", ``},
		{"POST", "/api/v1/topologies/lab/deckies/edge1/services", `{"name": "ssh"}`},
		{"DELETE", "/api/v1/topologies/lab/deckies/edge1/services/http", ``},
		{"GET", "/api/v1/deckies", ``},
		{"GET", "/api/v1/deckies/web1", ``},
		{"GET", "/api/v1/topologies/lab/deckies", ``},
		{"HEAD", "/api/v1/topologies/lab/deckies/edge1", ``},
		{"PUT", "/api/v1/deckies/web1/services/http/config?apply=true", `{}`},
		{"PUT", "/api/v1/topologies/lab/deckies/edge1/services/http/config", `{}`},
		{"POST", "/api/v1/deckies/web2/services", `{malformed`}, // auth comes before the body
		{"GET", "/nowhere", ``},                                 // and before routing
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
	store := servicelive.NewMemoryStore(demoDeckies(testImage))
	m, err := servicelive.New(store, new(servicelivetest.Composer), reg)
	require.NoError(t, err)
	h := newHandler(m, store, reg, "", nil)
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
		name, method, path, body string
		op                       servicelivetest.Op
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

// TestConfigNotLogged: configuration values (maybe secrets) reach neither
// the log nor any response; their keys do.
func TestConfigNotLogged(t *testing.T) {
	f := newFixture(t)
	responses := new(strings.Builder)
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/api/v1/deckies/web2/services", `{"name": "ssh", "config": {"banner": "hunter2-banner"}}`},
		{"PUT", "/api/v1/deckies/web2/services/ssh/config", `{"banner": "hunter3-banner", "port": 31337}`},
		{"PUT", "/api/v1/deckies/web2/services/ssh/config?apply=true", `{"banner": "hunter4-banner"}`},
		{"GET", "/api/v1/deckies/web2", ``},
		{"GET", "/api/v1/deckies", ``},
	} {
		rec := f.do(t, r.method, r.path, r.body)
		require.Less(t, rec.Code, 300, "%s %s: %s", r.method, r.path, rec.Body)
		responses.WriteString(rec.Body.String())
	}
	assert.Contains(t, f.logs.String(), "service added")
	assert.Contains(t, f.logs.String(), "service configured")
	assert.Contains(t, f.logs.String(), "banner", "the keys are logged")
	assert.Contains(t, responses.String(), `"banner"`, "the keys are shown")
	for _, secret := range []string{"hunter", "31337"} {
		assert.NotContains(t, f.logs.String(), secret)
		assert.NotContains(t, responses.String(), secret)
	}
}

// TestMethodNotAllowed: a route asked with another method is a JSON 405
// whose Allow lists the methods it takes.
func TestMethodNotAllowed(t *testing.T) {
	tests := []struct{ method, path, allow string }{
		{"GET", "/api/v1/deckies/web1/services", "POST"},
		{"PUT", "/api/v1/deckies/web1/services", "POST"},
		{"PATCH", "/api/v1/deckies/web1", "GET, HEAD"},
		{"DELETE", "/api/v1/deckies", "GET, HEAD"},
		{"POST", "/api/v1/topologies/lab/deckies", "GET, HEAD"},
		{"GET", "/api/v1/deckies/web1/services/http", "DELETE"},
		{"POST", "/api/v1/deckies/web1/services/http/config", "PUT"},
		{"GET", "/api/v1/topologies/lab/deckies/edge1/services/http/config", "PUT"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			f := newFixture(t)
			before := f.snapshot(t)
			rec := f.do(t, tt.method, tt.path, `{}`)
			require.Equal(t, http.StatusMethodNotAllowed, rec.Code, rec.Body.String())
			assert.Equal(t, tt.allow, rec.Header().Get("Allow"))
			assert.Equal(t, "method not allowed", decodeStrict[errorResponse](t, rec).Error)
			assert.Equal(t, before, f.snapshot(t))
			assert.Empty(t, f.composer.Calls())
		})
	}
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

	o, err = parseFlags([]string{"-engine", "b=ssh://ops@10.0.0.3", "-engine=c=unix:///run/c.sock", "-addr", ":9"}, env(map[string]string{tokenEnv: "x"}), &stderr)
	require.NoError(t, err)
	assert.Equal(t, engineOptions{engine: true, engines: []namedEngine{{"b", "ssh://ops@10.0.0.3"}, {"c", "unix:///run/c.sock"}}}, o.engineOptions)
	_, err = parseFlags([]string{"-engine", "b=x", "-engine", "b=y"}, env(map[string]string{tokenEnv: "x"}), &stderr)
	assert.ErrorContains(t, err, "twice")
	_, err = parseFlags([]string{"-engine=b"}, env(map[string]string{tokenEnv: "x"}), &stderr)
	assert.ErrorContains(t, err, "name=url")

	_, err = parseFlags([]string{"-docker-host", "unix:///x.sock"}, env(map[string]string{tokenEnv: "x"}), &stderr)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "-docker-host needs -engine")

	_, err = parseFlags([]string{"extra"}, env(map[string]string{tokenEnv: "x"}), &stderr)
	assert.Error(t, err)

	// -h lists the routes, then the flags.
	stderr.Reset()
	_, err = parseFlags([]string{"-h"}, env(nil), &stderr)
	require.ErrorIs(t, err, flag.ErrHelp)
	assert.Contains(t, stderr.String(), "PUT    /api/v1/deckies/{decky}/services/{service}/config[?apply=true]")
	assert.Contains(t, stderr.String(), "GET    /api/v1/deckies/{decky} ")
	assert.Contains(t, stderr.String(), "-token string")
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

// TestDemoRegistryRendersIndependently: the demo's Compose hooks keep no
// state: a render neither changes an earlier one's result nor leaks its
// configuration into the next, even concurrently (run with -race).
func TestDemoRegistryRendersIndependently(t *testing.T) {
	reg, err := demoRegistry(testImage)
	require.NoError(t, err)
	ssh, ok := reg.Lookup("ssh")
	require.True(t, ok)
	render := func(cfg servicelive.Config) *types.ServiceConfig {
		s := new(types.ServiceConfig)
		ssh.Compose(servicelive.Decky{Name: "web1"}, cfg, s)
		return s
	}
	configured := render(servicelive.Config{"port": 2200, "banner": "SSH-2.0-configured"})
	plain := render(nil)
	assert.Equal(t, "2200", *configured.Environment["PORT"])
	assert.Equal(t, "SSH-2.0-configured\r\n", *configured.Environment["BANNER"], "unchanged by the next render")
	assert.Equal(t, "22", *plain.Environment["PORT"], "the default, not the previous render's")
	assert.Equal(t, "SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n", *plain.Environment["BANNER"])

	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			want := fmt.Sprint("SSH-2.0-", i)
			for range 100 {
				if got := *render(servicelive.Config{"banner": want}).Environment["BANNER"]; got != want+"\r\n" {
					t.Errorf("rendered %q, want %q", got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}
