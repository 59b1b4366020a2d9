package sqlstore

import (
	"fmt"
	"unicode/utf8"

	"github.com/decnet/servicelive"
)

// The checks and errors below are those of servicelive.MemoryStore and
// FileStore, so that every Store refuses the same calls in the same words.

// checkScope checks a topology ID where "" (the fleet) is allowed; the
// error matches ErrInvalidService.
func checkScope(topology string) error {
	if topology != "" && !servicelive.ValidTopologyID(topology) {
		return fmt.Errorf("%w: bad topology id %q", servicelive.ErrInvalidService, topology)
	}
	return nil
}

// checkRef checks both parts of ref; the error matches ErrInvalidService.
func checkRef(ref servicelive.Ref) error {
	if err := checkScope(ref.Topology); err != nil {
		return err
	}
	if !servicelive.ValidDeckyName(ref.Decky) {
		return fmt.Errorf("%w: bad decky name %q", servicelive.ErrInvalidService, ref.Decky)
	}
	return nil
}

// deckyNotFound is the error for a missing decky, e.g.
// "servicelive: decky fleet/web1: not found".
func deckyNotFound(ref servicelive.Ref) error {
	return fmt.Errorf("servicelive: decky %s: %w", ref, servicelive.ErrNotFound)
}

// topologyNotFound is the error for a missing topology, e.g.
// "servicelive: topology t1: not found".
func topologyNotFound(topology string) error {
	return fmt.Errorf("servicelive: topology %s: %w", topology, servicelive.ErrNotFound)
}

// checkPut checks a decky given to Put: names and config values.
func checkPut(topology string, d servicelive.Decky) error {
	ref := servicelive.Ref{Topology: topology, Decky: d.Name}
	if err := checkRef(ref); err != nil {
		return &servicelive.Error{Op: "put", Ref: ref, Err: err}
	}
	return checkValues(ref, "put", d)
}

// checkUpdate checks the decky fn left behind in Update: same name,
// storable config values.
func checkUpdate(ref servicelive.Ref, d servicelive.Decky) error {
	if d.Name != ref.Decky {
		return &servicelive.Error{Op: "update", Ref: ref, Kind: servicelive.ErrInvalidService,
			Msg: fmt.Sprintf("fn renamed the decky to %q", d.Name)}
	}
	return checkValues(ref, "update", d)
}

// checkValues reports a config value that is not a string, int, bool or
// []string, or a string that is not valid UTF-8 (JSON could not return it
// unchanged). The error matches ErrInvalidService.
func checkValues(ref servicelive.Ref, op string, d servicelive.Decky) error {
	bad := func(what string) error {
		return &servicelive.Error{Op: op, Ref: ref, Kind: servicelive.ErrInvalidService, Msg: what + " is not valid UTF-8"}
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
				return &servicelive.ConfigError{Service: svc, Key: k,
					Reason: fmt.Sprintf("cannot store a value of type %T (want string, int, bool or []string, valid UTF-8)", v)}
			}
		}
	}
	return nil
}
