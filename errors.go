package servicelive

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every error returned by this package for a refused call
// matches exactly one of them with errors.Is; engine and I/O failures match
// none of them and wrap the underlying cause instead.
var (
	// ErrNotFound reports a decky or topology that does not exist (HTTP 404).
	ErrNotFound = errors.New("not found")
	// ErrConflict reports a service already on (or not on) the decky, or a
	// compose key that would collide with another one in the scope (HTTP 409).
	ErrConflict = errors.New("conflict")
	// ErrInvalidService reports an unknown or fleet-singleton service, a bad
	// name or a bad configuration value (HTTP 422).
	ErrInvalidService = errors.New("invalid service")
)

// Failure classes. They are not refusals: an error matching one of them
// matches none of the three sentinels above (HTTP 500), and says which
// component failed, so that a caller can tell a broken engine from a broken
// Store without reading messages. A failed undo joins the failure with the
// undo's own, so such an error can match both.
var (
	// ErrEngine reports that the Composer (the engine) failed, panicked or
	// was cut short by ctx (Error.Stage is StageEngine). A Composer error
	// that matches a refusal sentinel (say dockercompose's UnsupportedError,
	// ErrInvalidService) is a refusal, not an ErrEngine.
	ErrEngine = errors.New("engine failure")
	// ErrStore reports that the Store failed (Error.Stage is StageStore;
	// a Store call cut short by ctx matches ctx's error, not ErrStore).
	ErrStore = errors.New("store failure")
)

// Stage names the step of a Manager call an Error comes from.
type Stage string

// The stages of a Manager call.
const (
	StageValidate Stage = "validate" // names, registry, config: a refusal (ErrInvalidService)
	StageLock     Stage = "lock"     // waiting for a decky's lock (ctx's error, or the Store's lock error)
	StageStore    Stage = "store"    // a Store call (refusals from the Store keep their sentinel; other failures match ErrStore)
	StageRender   Stage = "render"   // rendering a compose project (a registry Compose hook)
	StageFiles    Stage = "files"    // writing the compose files
	StageEngine   Stage = "engine"   // a Composer call (matches ErrEngine)
)

// Error describes a failed Manager call: the operation, the decky it
// addressed, the service and the cause. Unwrap yields both the sentinel it
// matches (if any) and the cause, so errors.Is works on either.
type Error struct {
	Op      string // "add", "remove", "deploy", ...
	Ref     Ref
	Service string
	Kind    error  // one of the sentinels, or nil for engine and I/O failures
	Err     error  // the cause; may be nil when Kind says it all
	Msg     string // a human detail, e.g. "service already on decky"
	Stage   Stage  // where it failed; "" when not classified
}

// Error implements the error interface, e.g.
// "servicelive: add ssh to fleet/web1: service already on decky".
func (e *Error) Error() string {
	s := "servicelive: " + e.Op
	switch {
	case e.Service != "" && e.Ref != (Ref{}):
		prep := "on"
		switch e.Op {
		case "add":
			prep = "to"
		case "remove":
			prep = "from"
		}
		s += " " + e.Service + " " + prep + " " + e.Ref.String()
	case e.Service != "":
		s += " " + e.Service
	case e.Ref != (Ref{}):
		s += " " + e.Ref.String()
	}
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.Err != nil {
		// A cause from this module already says "servicelive: ": once is enough.
		s += ": " + strings.TrimPrefix(e.Err.Error(), "servicelive: ")
	} else if e.Msg == "" && e.Kind != nil {
		s += ": " + e.Kind.Error()
	}
	return s
}

// Unwrap returns the sentinel (when there is one), the failure class
// (ErrEngine for StageEngine; ErrStore for StageStore, unless the Store
// refused with a sentinel or ctx ended) and the cause.
func (e *Error) Unwrap() []error {
	errs := make([]error, 0, 3)
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	switch {
	case e.Stage == StageEngine && !isRefusal(e.Err):
		// An engine that refuses (a compose field it cannot honour, a name
		// held by a container not the service's) keeps the refusal's
		// sentinel alone: the call was undone, nothing changed.
		errs = append(errs, ErrEngine)
	case e.Stage == StageStore && e.Kind == nil && !isRefusal(e.Err) &&
		!errors.Is(e.Err, context.Canceled) && !errors.Is(e.Err, context.DeadlineExceeded):
		errs = append(errs, ErrStore)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// ConfigError reports one bad configuration value of a service. It matches
// ErrInvalidService.
type ConfigError struct {
	Service string
	Key     string
	Reason  string
}

// Error implements the error interface.
func (e *ConfigError) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("servicelive: service %s: %s", e.Service, e.Reason)
	}
	return fmt.Sprintf("servicelive: service %s: config %s: %s", e.Service, e.Key, e.Reason)
}

// Is reports whether target is ErrInvalidService.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidService }

// isRefusal reports whether err matches one of the three refusal sentinels.
func isRefusal(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) || errors.Is(err, ErrInvalidService)
}
