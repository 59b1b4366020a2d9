package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
)

// muxAnswersJSON says whether the server answers in JSON the authenticated
// requests that no route takes. It does not: http.ServeMux answers them
// itself, in text — 404 "404 page not found" (GET /nowhere, a trailing
// slash), 405 "Method Not Allowed" (GET on a route), 307 with an empty body
// to the cleaned path (/a/../b, //a), 400 for "OPTIONS *" — against the
// documented "failure {"error": "..."}". Until the server answers them
// itself, FuzzHandler checks that they are only those answers and change
// nothing; set this to true then.
const muxAnswersJSON = true

// fuzzRoutes are the documented routes, by pattern.
var fuzzRoutes = []string{
	"GET /api/v1/deckies",
	"GET /api/v1/deckies/{decky}",
	"POST /api/v1/deckies/{decky}/services",
	"DELETE /api/v1/deckies/{decky}/services/{service}",
	"PUT /api/v1/deckies/{decky}/services/{service}/config",
	"GET /api/v1/topologies/{id}/deckies",
	"GET /api/v1/topologies/{id}/deckies/{decky}",
	"POST /api/v1/topologies/{id}/deckies/{decky}/services",
	"DELETE /api/v1/topologies/{id}/deckies/{decky}/services/{service}",
	"PUT /api/v1/topologies/{id}/deckies/{decky}/services/{service}/config",
}

// route returns the documented route req takes ("" if none) and the path
// values it names, as a ServeMux with the documented patterns sees them.
func route(req *http.Request) (pattern string, values map[string]string) {
	mux := http.NewServeMux()
	for _, p := range fuzzRoutes {
		mux.HandleFunc(p, func(_ http.ResponseWriter, r *http.Request) {
			pattern = p
			values = map[string]string{"id": r.PathValue("id"), "decky": r.PathValue("decky"), "service": r.PathValue("service")}
		})
	}
	r := req.Clone(req.Context())
	r.Body = http.NoBody
	mux.ServeHTTP(httptest.NewRecorder(), r)
	return pattern, values
}

// authorized says whether an Authorization header bears the token: the
// scheme "Bearer" in any case, one space, the token (surrounding blanks
// ignored).
func authorized(header string) bool {
	scheme, tok, ok := strings.Cut(header, " ")
	return ok && strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(tok) == testToken
}

// unknownField reports whether body is one JSON object with a top-level key
// that names no field of addRequest (encoding/json matches names without
// regard to case).
func unknownField(body string) bool {
	if !json.Valid([]byte(body)) {
		return false
	}
	dec := json.NewDecoder(strings.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return false
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		if k := tok.(string); !strings.EqualFold(k, "name") && !strings.EqualFold(k, "config") {
			return true
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return false
		}
	}
	return false
}

// FuzzHandler sends any request — method, target, Authorization header and
// body, parsed by net/http as its server would — to the admin API over fakes.
// It never panics; without the token it is a JSON 401 and nothing changes;
// with it, a routed request is answered in JSON with a documented status
// (never 500: the fakes do not fail), a POST or PUT body over 64 KiB (or a
// POST's unknown field) is a 400, a GET changes nothing and answers what
// the store holds, and the store changes only on success, exactly as the
// response says.
func FuzzHandler(f *testing.F) {
	const (
		fleetAdd  = "/api/v1/deckies/web2/services"
		topoAdd   = "/api/v1/topologies/lab/deckies/edge1/services"
		fleetDel  = "/api/v1/deckies/web1/services/http"
		fleetConf = "/api/v1/deckies/web1/services/http/config"
		bearer    = "Bearer " + testToken
	)
	oversized := `{"name": "ssh", "config": {"banner": "` + strings.Repeat("x", maxBodyBytes) + `"}}`
	seeds := []struct{ method, path, auth, body string }{
		{"POST", fleetAdd, bearer, `{"name": "ssh", "config": {"port": 2222, "banner": "OpenSSH"}}`},
		{"POST", topoAdd, bearer, `{"name": "http"}`},
		{"DELETE", fleetDel, bearer, ``},
		{"DELETE", "/api/v1/topologies/lab/deckies/edge1/services/http", bearer, ``},
		{"POST", fleetAdd, "bearer " + testToken, `{"NAME": "http", "Config": null}`},
		{"POST", fleetAdd, "Bearer  " + testToken + " ", `{"name": "http"}`},
		{"POST", fleetAdd, bearer, `{"name": "ssh", "services": ["http"]}`},
		{"POST", fleetAdd, bearer, `{"name": "ssh", "config": {}, "x": 1}`},
		{"POST", fleetAdd, bearer, `{"name": "ssh", "name": "http"}`},
		{"POST", fleetAdd, bearer, oversized},
		{"POST", fleetAdd, bearer, `{"name": "http"}` + strings.Repeat(" ", maxBodyBytes)},
		{"POST", fleetAdd, bearer, `{"name": "ssh", "config": {"banner": "${HOME}\nservices:\n evil:"}}`},
		{"POST", fleetAdd, bearer, `{"name": "ssh", "config": {"port": "eighty"}}`},
		{"POST", fleetAdd, bearer, `{"name": "llmnr"}`},
		{"POST", fleetAdd, bearer, `{"name": "../x"}`},
		{"POST", fleetAdd, bearer, `{"name": "ssh"} {"name": "http"}`},
		{"POST", fleetAdd, bearer, `{`},
		{"POST", fleetAdd, bearer, `[]`},
		{"POST", fleetAdd, bearer, `null`},
		{"POST", fleetAdd, bearer, ``},
		{"POST", fleetAdd, "", `{"name": "http"}`},
		{"POST", fleetAdd, "Bearer wrong", `{"name": "http"}`},
		{"POST", fleetAdd, "Basic " + testToken, `{"name": "http"}`},
		{"POST", fleetAdd, testToken, `{"name": "http"}`},
		{"POST", fleetAdd, "Bearer", `{"name": "http"}`},
		{"POST", fleetAdd, "Bearer " + testToken + "\x00", `{"name": "http"}`},
		{"POST", fleetAdd, "Bearer " + strings.ToUpper(testToken), `{"name": "http"}`},
		{"DELETE", fleetDel, "", ``},
		{"DELETE", fleetDel, "Bearer " + testToken[1:], ``},
		{"POST", "/api/v1/deckies/..%2Fetc/services", bearer, `{"name": "http"}`},
		{"POST", "/api/v1/deckies/web1/../web2/services", bearer, `{"name": "http"}`},
		{"POST", "//api/v1/deckies/web2/services", bearer, `{"name": "http"}`},
		{"POST", "/api/v1/deckies/web2/services/", bearer, `{"name": "http"}`},
		{"POST", "/api/v1/deckies/web2/services?decky=web1", bearer, `{"name": "http"}`},
		{"POST", "/api/v1/deckies/WEB2/services", bearer, `{"name": "http"}`},
		{"POST", "/api/v1/deckies/web2%00/services", bearer, `{"name": "http"}`},
		{"POST", "/api/v1/deckies/%24%7BHOME%7D/services", bearer, `{"name": "http"}`},
		{"POST", "/api/v1/topologies/LAB/deckies/edge1/services", bearer, `{"name": "http"}`},
		{"POST", "/api/v1/topologies/lab%2F..%2F/deckies/edge1/services", bearer, `{"name": "http"}`},
		{"POST", "/api/v1/topologies/" + strings.Repeat("a", 65) + "/deckies/edge1/services", bearer, `{"name": "http"}`},
		{"DELETE", "/api/v1/deckies/web1/services/http%2F..", bearer, ``},
		{"DELETE", "/api/v1/deckies/web1/services/HTTP", bearer, ``},
		{"DELETE", "/api/v1/deckies/web1/services/*", bearer, ``},
		{"GET", fleetAdd, bearer, ``},
		{"PUT", fleetAdd, bearer, `{"name": "http"}`},
		{"HEAD", fleetAdd, bearer, ``},
		{"OPTIONS", "*", bearer, ``},
		{"CONNECT", "servicelive:443", bearer, ``},
		{"post", fleetAdd, bearer, `{"name": "http"}`},
		{"GET", "/nowhere", bearer, ``},
		{"GET", "/nowhere", "", ``},
		{"POST", "http://evil.example" + fleetAdd, bearer, `{"name": "http"}`},

		// The reads.
		{"GET", "/api/v1/deckies", bearer, ``},
		{"GET", "/api/v1/deckies/web1", bearer, ``},
		{"HEAD", "/api/v1/deckies/web1", bearer, ``},
		{"GET", "/api/v1/topologies/lab/deckies", bearer, ``},
		{"GET", "/api/v1/topologies/lab/deckies/edge1", bearer, `{"ignored": true}`},
		{"GET", "/api/v1/topologies/nope/deckies", bearer, ``},
		{"GET", "/api/v1/topologies/lab_1/deckies", bearer, ``},
		{"GET", "/api/v1/deckies/nope", bearer, ``},
		{"GET", "/api/v1/deckies/Web1", bearer, ``},
		{"GET", "/api/v1/deckies/..%2Fweb1", bearer, ``},
		{"GET", "/api/v1/deckies/", bearer, ``},
		{"GET", "/api/v1/deckies?x=1", bearer, ``},
		{"GET", "/api/v1/deckies", "", ``},
		{"DELETE", "/api/v1/deckies", bearer, ``},

		// PUT .../config.
		{"PUT", fleetConf, bearer, `{"port": 2222}`},
		{"PUT", fleetConf + "?apply=true", bearer, `{"banner": "x"}`},
		{"PUT", fleetConf + "?apply=1&apply=0", bearer, `{}`},
		{"PUT", fleetConf + "?apply=maybe", bearer, `{}`},
		{"PUT", fleetConf + "?apply=%zz", bearer, `{}`},
		{"PUT", fleetConf + "?apply", bearer, `{}`},
		{"PUT", fleetConf, bearer, `null`},
		{"PUT", fleetConf, bearer, `[]`},
		{"PUT", fleetConf, bearer, `{"port": 2222} {}`},
		{"PUT", fleetConf, bearer, `{"banner": "` + strings.Repeat("x", maxBodyBytes) + `"}`},
		{"PUT", "/api/v1/deckies/web1/services/ssh/config?apply=true", bearer, `{"port": "eighty"}`},
		{"PUT", "/api/v1/deckies/web1/services/ssh/config", bearer, `{"port": 22}`},
		{"PUT", "/api/v1/deckies/web1/services/llmnr/config", bearer, `{}`},
		{"PUT", "/api/v1/deckies/nope/services/http/config", bearer, `{}`},
		{"PUT", "/api/v1/topologies/lab/deckies/edge1/services/http/config?apply=true", bearer, `{}`},
		{"PUT", "/api/v1/deckies/web1/services/http/config/", bearer, `{}`},
		{"PUT", fleetConf, "", `{}`},
		{"POST", fleetConf, bearer, `{}`},
		{"GET", fleetConf, bearer, ``},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.auth, s.body)
	}
	f.Fuzz(func(t *testing.T, method, path, auth, body string) {
		if strings.ContainsAny(auth, "\r\n") {
			return // one header value: a line break would make another header
		}
		raw := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: servicelive\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", method, path, len(body))
		if auth != "" {
			raw += "Authorization: " + auth + "\r\n"
		}
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw + "\r\n" + body)))
		if err != nil {
			return // net/http's server answers such a request itself
		}
		fx := newFixture(t)
		before := fx.snapshot(t)
		pattern, values := route(req)
		auth = req.Header.Get("Authorization")
		rec := httptest.NewRecorder()
		fx.h.ServeHTTP(rec, req)

		after := fx.snapshot(t)
		calls := fx.composer.Calls()
		unchanged := func(why string) {
			t.Helper()
			if !reflect.DeepEqual(before, after) {
				t.Fatalf("%s, yet the store changed:\n%v\n->\n%v", why, before, after)
			}
			if len(calls) != 0 {
				t.Fatalf("%s, yet the composer was called %d times", why, len(calls))
			}
		}
		isJSON := func() {
			t.Helper()
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" || rec.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Fatalf("%d with Content-Type %q: %q", rec.Code, ct, rec.Body)
			}
		}

		if !authorized(auth) {
			if rec.Code != http.StatusUnauthorized || !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), `Bearer realm="servicelive"`) {
				t.Fatalf("Authorization %q: %d %q, want 401 with a challenge", auth, rec.Code, rec.Body)
			}
			isJSON()
			if e := decodeStrictBody[errorResponse](t, rec); e.Error == "" {
				t.Fatal("401 without a message")
			}
			unchanged("unauthorized")
			return
		}
		if pattern == "" {
			// ServeMux's own answers: 404, 405 (Allow set), a redirect to the
			// cleaned path, or 400 for "*".
			unchanged(fmt.Sprintf("%s %s routed nowhere", req.Method, req.URL))
			if muxAnswersJSON {
				isJSON()
				return
			}
			switch rec.Code {
			case http.StatusNotFound, http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
			case http.StatusBadRequest: // OPTIONS *
				if req.RequestURI != "*" {
					t.Fatalf("%s %s routed nowhere: 400", req.Method, req.RequestURI)
				}
			case http.StatusMethodNotAllowed:
				if rec.Header().Get("Allow") == "" {
					t.Fatalf("405 without Allow")
				}
			default:
				t.Fatalf("%s %s routed nowhere: %d %q", req.Method, req.URL, rec.Code, rec.Body)
			}
			return
		}

		isJSON()
		verb, _, _ := strings.Cut(pattern, " ")
		add, remove, configure, read := verb == "POST", verb == "DELETE", verb == "PUT", verb == "GET"
		withBody := add || configure
		var ok int
		var codes []int
		switch {
		case add:
			ok, codes = http.StatusCreated, []int{201, 400, 404, 409, 422}
		case remove:
			ok, codes = http.StatusOK, []int{200, 404, 409, 422}
		case configure:
			ok, codes = http.StatusOK, []int{200, 400, 404, 409, 422}
		case read:
			ok, codes = http.StatusOK, []int{200, 404, 422}
		}
		if !slices.Contains(codes, rec.Code) {
			t.Fatalf("%s: %d %q, want one of %v", pattern, rec.Code, rec.Body, codes)
		}
		if withBody && len(body) > maxBodyBytes && rec.Code != http.StatusBadRequest {
			t.Fatalf("body of %d bytes: %d, want 400", len(body), rec.Code)
		}
		if add && unknownField(body) && rec.Code != http.StatusBadRequest {
			t.Fatalf("body %q with an unknown field: %d, want 400", body, rec.Code)
		}
		ref := servicelive.TopologyDecky(values["id"], values["decky"])
		switch {
		case rec.Code != ok:
			if e := decodeStrictBody[errorResponse](t, rec); e.Error == "" || strings.Contains(e.Error, "internal") {
				t.Fatalf("%d with error %q", rec.Code, e.Error)
			}
			unchanged(fmt.Sprintf("%s refused with %d", pattern, rec.Code))
		case read:
			unchanged("a read")
			checkRead(t, fx, pattern, ref, rec)
		case configure:
			checkConfigure(t, fx, req, ref, values["service"], rec, before, after, calls)
		default:
			resp := decodeStrictBody[deckyResponse](t, rec)
			if resp.DeckyName != ref.Decky || resp.TopologyID != ref.Topology || resp.Services == nil {
				t.Fatalf("response %+v for %v", resp, ref)
			}
			d := fx.decky(t, ref)
			if !slices.Equal(d.Services, resp.Services) {
				t.Fatalf("response says %v, the store %v", resp.Services, d.Services)
			}
			// Exactly this decky changed, by one service.
			old := deckyIn(before, ref)
			switch {
			case add && (len(d.Services) != len(old.Services)+1 || !slices.Equal(d.Services[:len(old.Services)], old.Services)):
				t.Fatalf("add: %v -> %v", old.Services, d.Services)
			case !add && (len(d.Services) != len(old.Services)-1 || slices.Contains(d.Services, values["service"]) || !old.HasService(values["service"])):
				t.Fatalf("remove %s: %v -> %v", values["service"], old.Services, d.Services)
			}
			onlyChanged(t, ref, before, after)
			if len(calls) != 1 {
				t.Fatalf("%d composer calls, want 1", len(calls))
			}
		}

		// The same request with its body over the limit is a 400, and changes nothing.
		if withBody && len(body) <= maxBodyBytes {
			big := body + strings.Repeat(" ", maxBodyBytes+1-len(body))
			r2 := req.Clone(req.Context())
			r2.Body, r2.ContentLength = io.NopCloser(strings.NewReader(big)), int64(len(big))
			before, ncalls := fx.snapshot(t), len(fx.composer.Calls())
			rec := httptest.NewRecorder()
			fx.h.ServeHTTP(rec, r2)
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("body of %d bytes: %d %q, want 400", len(big), rec.Code, rec.Body)
			}
			if after := fx.snapshot(t); !reflect.DeepEqual(before, after) || len(fx.composer.Calls()) != ncalls {
				t.Fatalf("oversized body changed the store or called the composer")
			}
		}
	})
}

// deckyIn returns the decky ref names in a snapshot (the zero Decky if none).
func deckyIn(snapshot map[string][]servicelive.Decky, ref servicelive.Ref) servicelive.Decky {
	for _, d := range snapshot[ref.Topology] {
		if d.Name == ref.Decky {
			return d
		}
	}
	return servicelive.Decky{}
}

// onlyChanged fails unless every decky but ref's is the same in both snapshots.
func onlyChanged(t *testing.T, ref servicelive.Ref, before, after map[string][]servicelive.Decky) {
	t.Helper()
	for scope := range before {
		for i, x := range before[scope] {
			if (scope != ref.Topology || x.Name != ref.Decky) && !reflect.DeepEqual(x, after[scope][i]) {
				t.Fatalf("%v changed %s/%s: %+v -> %+v", ref, scope, x.Name, x, after[scope][i])
			}
		}
	}
}

// checkRead checks a successful GET against the store: the listing of the
// scope, or the decky, with its services and their configuration keys.
func checkRead(t *testing.T, fx *fixture, pattern string, ref servicelive.Ref, rec *httptest.ResponseRecorder) {
	t.Helper()
	if strings.HasSuffix(pattern, "/deckies") {
		resp := decodeStrictBody[scopeResponse](t, rec)
		ds, err := fx.store.List(context.Background(), ref.Topology)
		if err != nil {
			t.Fatal(err)
		}
		if resp.TopologyID != ref.Topology || resp.Deckies == nil || len(resp.Deckies) != len(ds) {
			t.Fatalf("listing %+v of scope %q, the store has %d deckies", resp, ref.Topology, len(ds))
		}
		for i, d := range ds {
			if want := view(ref.Topology, d); !reflect.DeepEqual(resp.Deckies[i], want) {
				t.Fatalf("listing shows %+v, the store %+v", resp.Deckies[i], want)
			}
		}
		return
	}
	resp := decodeStrictBody[deckyView](t, rec)
	d := fx.decky(t, ref)
	want := view(ref.Topology, d)
	if resp.DeckyName != ref.Decky || !reflect.DeepEqual(resp, want) {
		t.Fatalf("GET %v shows %+v, the store %+v", ref, resp, want)
	}
	for _, s := range resp.Services {
		if resp.ConfigKeys[s] == nil {
			t.Fatalf("no config_keys for %s: %+v", s, resp)
		}
	}
}

// checkConfigure checks a successful PUT .../config: the response names the
// decky and the keys stored, the decky's services are unchanged and only its
// service's configuration may have changed, and the engine recreated that
// service's container exactly when ?apply said so.
func checkConfigure(t *testing.T, fx *fixture, req *http.Request, ref servicelive.Ref, service string, rec *httptest.ResponseRecorder,
	before, after map[string][]servicelive.Decky, calls []servicelivetest.Call) {
	t.Helper()
	resp := decodeStrictBody[configResponse](t, rec)
	apply, msg := applyQuery(req)
	if msg != "" {
		t.Fatalf("query %q accepted: %s", req.URL.RawQuery, msg)
	}
	if resp.DeckyName != ref.Decky || resp.TopologyID != ref.Topology || resp.Service != service || resp.ConfigKeys == nil || resp.Applied != apply {
		t.Fatalf("response %+v for %v %s (apply %v)", resp, ref, service, apply)
	}
	old, d := deckyIn(before, ref), fx.decky(t, ref)
	if !slices.Equal(old.Services, d.Services) || !d.HasService(service) {
		t.Fatalf("configure %s: services %v -> %v", service, old.Services, d.Services)
	}
	if keys := slices.Sorted(maps.Keys(d.Config[service])); !slices.Equal(keys, resp.ConfigKeys) {
		t.Fatalf("response says keys %v, the store %v", resp.ConfigKeys, keys)
	}
	for s, cfg := range old.Config {
		if s != service && !reflect.DeepEqual(cfg, d.Config[s]) {
			t.Fatalf("configure %s changed %s's config: %v -> %v", service, s, cfg, d.Config[s])
		}
	}
	onlyChanged(t, ref, before, after)
	switch {
	case !apply && len(calls) != 0:
		t.Fatalf("stored only, yet %d composer calls", len(calls))
	case apply && (len(calls) != 1 || calls[0].Op != servicelivetest.OpUp || calls[0].Service != servicelive.ServiceKey(ref.Decky, service)):
		t.Fatalf("applied: composer calls %+v, want one up of %s", calls, servicelive.ServiceKey(ref.Decky, service))
	}
}

// decodeStrictBody decodes the whole response body into a T, refusing
// unknown fields and trailing data.
func decodeStrictBody[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	if dec.More() {
		t.Fatalf("body %q: trailing data", rec.Body)
	}
	return v
}
