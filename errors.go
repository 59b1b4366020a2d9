package servicelive

import (
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

// Unwrap returns the sentinel (when there is one) and the cause.
func (e *Error) Unwrap() []error {
	errs := make([]error, 0, 2)
	if e.Kind != nil {
		errs = append(errs, e.Kind)
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
