package servicelive

import (
	"fmt"
	"unicode/utf8"
)

// What every Store accepts, and the errors it gives: shared by the stores of
// this module, and exported for those of their users.

// DeckyNotFound returns the error every Store of this module gives for a
// missing decky, e.g. "servicelive: decky fleet/web1: not found". It
// matches ErrNotFound.
func DeckyNotFound(ref Ref) error {
	return fmt.Errorf("servicelive: decky %s: %w", ref, ErrNotFound)
}

// TopologyNotFound returns the error every Store of this module gives for
// a missing topology, e.g. "servicelive: topology t1: not found". It
// matches ErrNotFound.
func TopologyNotFound(topology string) error {
	return fmt.Errorf("servicelive: topology %s: %w", topology, ErrNotFound)
}

// CheckPut reports whether a Store's Put can store d in topology: valid
// names, and config values of the storable types (string, int, bool,
// []string) in valid UTF-8. The error matches ErrInvalidService. Store
// implementations call it so that every Store refuses the same deckies in
// the same words.
func CheckPut(topology string, d Decky) error {
	ref := Ref{Topology: topology, Decky: d.Name}
	if err := ref.validate(); err != nil {
		return &Error{Op: "put", Ref: ref, Err: err}
	}
	return checkValues(ref, "put", d)
}

// CheckUpdate reports whether a Store's Update of ref can store d, as fn
// left it: the same name, storable config values (see CheckPut). The error
// matches ErrInvalidService.
func CheckUpdate(ref Ref, d Decky) error {
	if d.Name != ref.Decky {
		return &Error{Op: "update", Ref: ref, Kind: ErrInvalidService,
			Msg: fmt.Sprintf("fn renamed the decky to %q", d.Name)}
	}
	return checkValues(ref, "update", d)
}

// checkValues reports a config value that is not a string, int, bool or
// []string, or a string that is not valid UTF-8 (no store could return it
// unchanged). The error matches ErrInvalidService.
func checkValues(ref Ref, op string, d Decky) error {
	bad := func(what string) error {
		return &Error{Op: op, Ref: ref, Kind: ErrInvalidService, Msg: what + " is not valid UTF-8"}
	}
	fields := [...]struct{ what, s string }{
		{"hostname", d.Hostname}, {"ip", d.IP}, {"image", d.Image}, {"network", d.Network}, {"host", d.Host},
	}
	for _, f := range fields {
		if !utf8.ValidString(f.s) {
			return bad(f.what)
		}
	}
	for _, svc := range d.Services {
		if !utf8.ValidString(svc) {
			return bad("service name")
		}
	}
	for svc, cfg := range d.Config {
		if !utf8.ValidString(svc) {
			return bad("service name")
		}
		for k, v := range cfg {
			var ok bool
			switch v := v.(type) {
			case string:
				ok = utf8.ValidString(v)
			case int, bool:
				ok = true
			case []string:
				ok = true
				for _, s := range v {
					ok = ok && utf8.ValidString(s)
				}
			}
			if !ok || !utf8.ValidString(k) {
				return &ConfigError{Service: svc, Key: k,
					Reason: fmt.Sprintf("cannot store a value of type %T (want string, int, bool or []string, valid UTF-8)", v)}
			}
		}
	}
	return nil
}
