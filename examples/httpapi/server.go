package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/decnet/servicelive"
)

// maxBodyBytes bounds a request body; a larger one is refused with 400.
const maxBodyBytes = 64 << 10

// applyParam is the query parameter of PUT .../config that recreates the
// service's container with the new configuration (WithRecreate).
const applyParam = "apply"

// addRequest is the body of a POST: the service to add and its settings.
type addRequest struct {
	Name   string             `json:"name"`
	Config servicelive.Config `json:"config"`
}

// deckyResponse is the body of every successful add and remove: the decky's
// services after the change. TopologyID is always present: "" for a fleet
// decky, so clients read one shape whatever the scope.
type deckyResponse struct {
	DeckyName  string   `json:"decky_name"`
	TopologyID string   `json:"topology_id"`
	Services   []string `json:"services"` // never null: [] once the last service is gone
}

// configResponse is the body of a successful PUT .../config.
type configResponse struct {
	DeckyName  string `json:"decky_name"`
	TopologyID string `json:"topology_id"`
	Service    string `json:"service"`
	// ConfigKeys are the keys of the configuration now stored (sorted; never
	// null): those of the body the service's schema kept. Never the values.
	ConfigKeys []string `json:"config_keys"`
	// Applied reports whether the container was recreated with it (?apply=true).
	Applied bool `json:"applied"`
}

// deckyView is the body of GET .../deckies/{decky}, and each element of a
// list: the decky's services, in the order they were added, and for each of
// them the keys of its configuration. The values are never shown: they may
// be secrets.
type deckyView struct {
	DeckyName  string   `json:"decky_name"`
	TopologyID string   `json:"topology_id"`
	Services   []string `json:"services"` // never null
	// ConfigKeys has one entry per service of the decky: its configuration's
	// keys, sorted ([] for a service without configuration).
	ConfigKeys map[string][]string `json:"config_keys"`
}

// scopeResponse is the body of GET .../deckies: the deckies of the fleet or
// of one topology, in the Store's order (by name for the bundled Stores).
type scopeResponse struct {
	TopologyID string      `json:"topology_id"`
	Deckies    []deckyView `json:"deckies"` // never null
}

// errorResponse is the body of every failure.
type errorResponse struct {
	Error string `json:"error"`
}

// server serves the admin API over one Manager, the Store it manages (read
// for the GETs) and its Registry (for the keys a PUT stored).
type server struct {
	m         *servicelive.Manager
	store     servicelive.Store
	reg       *servicelive.Registry
	tokenHash [sha256.Size]byte
	hasToken  bool
	log       *slog.Logger
}

// newHandler returns the admin API over m, which manages store with reg:
//
//	GET    /api/v1/deckies                                  → 200 {"topology_id": "", "deckies": [<decky>, ...]}
//	GET    /api/v1/deckies/{decky}                          → 200 <decky>
//	POST   /api/v1/deckies/{decky}/services                 body {"name": "ssh", "config": {...}} → 201
//	DELETE /api/v1/deckies/{decky}/services/{service}       → 200
//	PUT    /api/v1/deckies/{decky}/services/{service}/config[?apply=true]
//	                                                        body {"port": 2222, ...} → 200
//
// and the same five under /api/v1/topologies/{id}/... for the deckies of
// topology id (GET /api/v1/topologies/{id}/deckies lists them).
//
// <decky> is {"decky_name", "topology_id", "services", "config_keys"}:
// config_keys maps each service of the decky to the sorted keys of its
// configuration. No response ever holds a configuration value: they may be
// secrets.
//
// POST and DELETE answer {"decky_name", "topology_id", "services"} (the
// decky's services after the change; topology_id "" for the fleet).
//
// PUT replaces the service's whole configuration with the body, a JSON
// object ({} clears it; keys the service's schema does not know are
// dropped), through Manager.UpdateServiceConfig. Without ?apply=true the
// new configuration is stored and written to the compose file, and the
// running container keeps the old one until it is recreated (Reconcile does
// it); with ?apply=true (any strconv.ParseBool form) the service's container,
// and only it, is recreated with it, and a failure puts the old
// configuration and container back. It answers {"decky_name",
// "topology_id", "service", "config_keys", "applied"}.
//
// Every request needs "Authorization: Bearer <token>"; an empty token
// refuses every request. A failure is {"error": "..."} with 400 (bad body
// or query), 401, 404 (servicelive.ErrNotFound, or no such route), 405 (a
// route of another method; Allow lists them), 409 (ErrConflict: the service
// is already on the decky, or not on it), 422 (ErrInvalidService: a bad
// name, an unknown service, a bad configuration value) or 500 (anything
// else: the detail is logged, never sent).
func newHandler(m *servicelive.Manager, store servicelive.Store, reg *servicelive.Registry, token string, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &server{m: m, store: store, reg: reg, log: log, hasToken: token != ""}
	s.tokenHash = sha256.Sum256([]byte(token))

	mux := http.NewServeMux()
	for _, prefix := range []string{"/api/v1", "/api/v1/topologies/{id}"} {
		mux.HandleFunc("GET "+prefix+"/deckies", s.list)
		mux.HandleFunc("GET "+prefix+"/deckies/{decky}", s.get)
		mux.HandleFunc("POST "+prefix+"/deckies/{decky}/services", s.add)
		mux.HandleFunc("DELETE "+prefix+"/deckies/{decky}/services/{service}", s.remove)
		mux.HandleFunc("PUT "+prefix+"/deckies/{decky}/services/{service}/config", s.configure)
	}
	return s.authorize(jsonMux(mux))
}

// jsonMux answers in JSON what mux would answer in plain text: a path it
// would redirect to its clean form, no route (404), a route of another
// method (405, with Allow).
func jsonMux(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.EscapedPath(); p == "" || p[0] != '/' || path.Clean(p) != p {
			writeError(w, http.StatusNotFound, "not found")
			return
		}
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		var allowed []string
		for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = method
			if _, pattern := mux.Handler(probe); pattern != "" {
				allowed = append(allowed, method)
			}
		}
		if len(allowed) == 0 {
			writeError(w, http.StatusNotFound, "not found")
			return
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
	})
}

// authorize lets through only requests bearing the token. The comparison is
// on SHA-256 digests, in constant time: neither the token's content nor its
// length leaks through timing.
func (s *server) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			w.Header().Set("WWW-Authenticate", `Bearer realm="servicelive"`)
			writeError(w, http.StatusUnauthorized, "missing bearer token")
			return
		}
		h := sha256.Sum256([]byte(strings.TrimSpace(got)))
		if subtle.ConstantTimeCompare(h[:], s.tokenHash[:]) != 1 || !s.hasToken {
			w.Header().Set("WWW-Authenticate", `Bearer realm="servicelive", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "invalid bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ref returns the decky the request's path addresses; the Manager validates
// the names (a bad one is a 422).
func ref(r *http.Request) servicelive.Ref {
	return servicelive.TopologyDecky(r.PathValue("id"), r.PathValue("decky"))
}

func (s *server) add(w http.ResponseWriter, r *http.Request) {
	var req addRequest
	if msg := decodeBody(w, r, &req); msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	ref := ref(r)
	services, err := s.m.AddService(r.Context(), ref, req.Name, servicelive.WithConfig(req.Config))
	if err != nil {
		s.fail(w, r, "add", ref, req.Name, err)
		return
	}
	// The config is not logged: it may hold secrets.
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "service added",
		slog.String("decky", ref.String()), slog.String("service", req.Name), slog.Any("services", services))
	writeDecky(w, http.StatusCreated, ref, services)
}

func (s *server) remove(w http.ResponseWriter, r *http.Request) {
	ref, service := ref(r), r.PathValue("service")
	services, err := s.m.RemoveService(r.Context(), ref, service)
	if err != nil {
		s.fail(w, r, "remove", ref, service, err)
		return
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "service removed",
		slog.String("decky", ref.String()), slog.String("service", service), slog.Any("services", services))
	writeDecky(w, http.StatusOK, ref, services)
}

// configure replaces a service's configuration (see newHandler).
func (s *server) configure(w http.ResponseWriter, r *http.Request) {
	ref, service := ref(r), r.PathValue("service")
	apply, msg := applyQuery(r)
	if msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	var cfg servicelive.Config
	if msg := decodeBody(w, r, &cfg); msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	if cfg == nil { // the body was null; {} is an empty, non-nil map
		writeError(w, http.StatusBadRequest, "malformed JSON body: want an object, got null")
		return
	}
	var opts []servicelive.UpdateOption
	if apply {
		opts = append(opts, servicelive.WithRecreate())
	}
	if err := s.m.UpdateServiceConfig(r.Context(), ref, service, cfg, opts...); err != nil {
		s.fail(w, r, "configure", ref, service, err)
		return
	}
	keys := s.storedKeys(service, cfg)
	// The keys only: the values may be secrets.
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "service configured",
		slog.String("decky", ref.String()), slog.String("service", service),
		slog.Any("config_keys", keys), slog.Bool("applied", apply))
	writeJSON(w, http.StatusOK, configResponse{DeckyName: ref.Decky, TopologyID: ref.Topology, Service: service, ConfigKeys: keys, Applied: apply})
}

// storedKeys returns the sorted keys of the configuration the Manager
// stored for cfg: cfg as the service's schema keeps it, as
// UpdateServiceConfig validated it a moment ago.
func (s *server) storedKeys(service string, cfg servicelive.Config) []string {
	keys := []string{}
	if svc, ok := s.reg.Lookup(service); ok {
		if stored, err := svc.Validate(cfg); err == nil {
			keys = append(keys, slices.Sorted(maps.Keys(stored))...)
		}
	}
	return keys
}

// applyQuery reads ?apply=<bool> (absent: false). It returns "" on success,
// else the message of a 400: a malformed query, apply given twice or not a
// boolean.
func applyQuery(r *http.Request) (apply bool, msg string) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return false, "malformed query string"
	}
	vs, ok := q[applyParam]
	switch {
	case !ok:
		return false, ""
	case len(vs) > 1:
		return false, "query parameter " + applyParam + " given more than once"
	}
	apply, err = strconv.ParseBool(vs[0])
	if err != nil {
		return false, fmt.Sprintf("query parameter %s: want true or false, got %q", applyParam, vs[0])
	}
	return apply, ""
}

// list answers the deckies of the fleet or of a topology.
func (s *server) list(w http.ResponseWriter, r *http.Request) {
	topology := r.PathValue("id")
	if topology != "" && !servicelive.ValidTopologyID(topology) {
		writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("bad topology id %q", topology))
		return
	}
	ds, err := s.store.List(r.Context(), topology)
	if err != nil {
		s.fail(w, r, "list", servicelive.Ref{Topology: topology}, "", err)
		return
	}
	resp := scopeResponse{TopologyID: topology, Deckies: make([]deckyView, 0, len(ds))}
	for _, d := range ds {
		resp.Deckies = append(resp.Deckies, view(topology, d))
	}
	writeJSON(w, http.StatusOK, resp)
}

// get answers one decky.
func (s *server) get(w http.ResponseWriter, r *http.Request) {
	ref := ref(r)
	switch {
	case ref.Topology != "" && !servicelive.ValidTopologyID(ref.Topology):
		writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("bad topology id %q", ref.Topology))
		return
	case !servicelive.ValidDeckyName(ref.Decky):
		writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("bad decky name %q", ref.Decky))
		return
	}
	d, err := s.store.Get(r.Context(), ref)
	if err != nil {
		s.fail(w, r, "get", ref, "", err)
		return
	}
	writeJSON(w, http.StatusOK, view(ref.Topology, d))
}

// view returns what the API shows of d: its services and their
// configuration's keys, never the values.
func view(topology string, d servicelive.Decky) deckyView {
	v := deckyView{DeckyName: d.Name, TopologyID: topology, Services: slices.Clone(d.Services), ConfigKeys: make(map[string][]string, len(d.Services))}
	if v.Services == nil {
		v.Services = []string{}
	}
	for _, svc := range d.Services {
		v.ConfigKeys[svc] = append([]string{}, slices.Sorted(maps.Keys(d.Config[svc]))...)
	}
	return v
}

// fail answers a Manager error: the sentinels become 4xx with the error's
// message; anything else (engine, store, I/O) a 500 whose detail only goes to
// the log.
func (s *server) fail(w http.ResponseWriter, r *http.Request, op string, ref servicelive.Ref, service string, err error) {
	status := statusOf(err)
	attrs := []slog.Attr{slog.String("op", op), slog.String("decky", ref.String()),
		slog.String("service", service), slog.Int("status", status), slog.Any("error", err)}
	if status == http.StatusInternalServerError {
		s.log.LogAttrs(r.Context(), slog.LevelError, "request failed", attrs...)
		writeError(w, status, "internal error")
		return
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "request refused", attrs...)
	writeError(w, status, err.Error())
}

// statusOf maps a Manager error to its HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, servicelive.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, servicelive.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, servicelive.ErrInvalidService):
		return http.StatusUnprocessableEntity
	}
	return http.StatusInternalServerError
}

// decodeBody decodes exactly one JSON object of at most maxBodyBytes into v,
// refusing unknown fields and trailing data. It returns "" on success, else
// the message of a 400.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) string {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		// One value only: anything but whitespace after it is an error.
		if err = dec.Decode(new(json.RawMessage)); err == io.EOF {
			return ""
		} else if err == nil {
			return "malformed JSON body: trailing data after the object"
		}
	}
	var tooBig *http.MaxBytesError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		return fmt.Sprintf("request body larger than %d bytes", tooBig.Limit)
	case errors.Is(err, io.EOF):
		return "empty request body"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON body: unexpected end"
	case errors.As(err, &syntax):
		return fmt.Sprintf("malformed JSON body at offset %d: %v", syntax.Offset, syntax)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("malformed JSON body: field %q: want %s, got %s", typ.Field, typ.Type, typ.Value)
		}
		return fmt.Sprintf("malformed JSON body: want an object, got %s", typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no type for this error.
		return "malformed JSON body: " + strings.TrimPrefix(err.Error(), "json: ")
	}
	return "malformed JSON body"
}

func writeDecky(w http.ResponseWriter, status int, ref servicelive.Ref, services []string) {
	if services == nil {
		services = []string{}
	}
	writeJSON(w, status, deckyResponse{DeckyName: ref.Decky, TopologyID: ref.Topology, Services: services})
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorResponse{Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil { // cannot happen with the types above
		status, body = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
