package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path"
	"strings"

	"github.com/decnet/servicelive"
)

// maxBodyBytes bounds a request body; a larger one is refused with 400.
const maxBodyBytes = 64 << 10

// addRequest is the body of a POST: the service to add and its settings.
type addRequest struct {
	Name   string             `json:"name"`
	Config servicelive.Config `json:"config"`
}

// deckyResponse is the body of every successful mutation: the decky's
// services after the change. TopologyID is always present: "" for a fleet
// decky, so clients read one shape whatever the scope.
type deckyResponse struct {
	DeckyName  string   `json:"decky_name"`
	TopologyID string   `json:"topology_id"`
	Services   []string `json:"services"` // never null: [] once the last service is gone
}

// errorResponse is the body of every failure.
type errorResponse struct {
	Error string `json:"error"`
}

// server serves the admin API over one Manager.
type server struct {
	m         *servicelive.Manager
	tokenHash [sha256.Size]byte
	hasToken  bool
	log       *slog.Logger
}

// newHandler returns the admin API over m:
//
//	POST   /api/v1/deckies/{decky}/services                          body {"name": "ssh", "config": {...}} → 201
//	DELETE /api/v1/deckies/{decky}/services/{service}                                                    → 200
//	POST   /api/v1/topologies/{id}/deckies/{decky}/services           (same, in topology id)              → 201
//	DELETE /api/v1/topologies/{id}/deckies/{decky}/services/{service}                                    → 200
//
// Every request needs "Authorization: Bearer <token>"; an empty token
// refuses every request. Success returns {"decky_name", "topology_id",
// "services"} (topology_id "" for the fleet); failure {"error": "..."} with
// 400 (bad body), 401, 404 (servicelive.ErrNotFound), 409 (ErrConflict),
// 422 (ErrInvalidService) or 500 (anything else: the detail is logged, never
// sent).
func newHandler(m *servicelive.Manager, token string, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &server{m: m, log: log, hasToken: token != ""}
	s.tokenHash = sha256.Sum256([]byte(token))

	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/deckies/{decky}/services", s.add)
	mux.HandleFunc("DELETE /api/v1/deckies/{decky}/services/{service}", s.remove)
	mux.HandleFunc("POST /api/v1/topologies/{id}/deckies/{decky}/services", s.add)
	mux.HandleFunc("DELETE /api/v1/topologies/{id}/deckies/{decky}/services/{service}", s.remove)
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
		for _, method := range []string{http.MethodPost, http.MethodDelete} {
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
