package servicelive

import (
	"fmt"
	"regexp"
)

// Ref addresses one decky: in the fleet (Topology "") or in a topology.
type Ref struct {
	Topology string // topology ID; "" = the fleet
	Decky    string
}

// FleetDecky returns the Ref of the fleet decky name.
func FleetDecky(name string) Ref { return Ref{Decky: name} }

// TopologyDecky returns the Ref of decky name in the given topology.
func TopologyDecky(topology, name string) Ref { return Ref{Topology: topology, Decky: name} }

// String returns "fleet/<decky>" or "topology/<id>/<decky>".
func (r Ref) String() string {
	if r.Topology == "" {
		return "fleet/" + r.Decky
	}
	return "topology/" + r.Topology + "/" + r.Decky
}

var (
	deckyNameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	serviceNameRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	topologyNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,63}$`)
)

// ValidDeckyName reports whether name is a valid decky name:
// ^[a-z0-9][a-z0-9-]{0,62}$.
func ValidDeckyName(name string) bool { return deckyNameRE.MatchString(name) }

// ValidServiceName reports whether name is a valid service name:
// ^[a-z0-9][a-z0-9_-]{0,62}$.
func ValidServiceName(name string) bool { return serviceNameRE.MatchString(name) }

// ValidTopologyID reports whether id is a valid topology ID (the empty
// string, the fleet, is not): ^[A-Za-z0-9][A-Za-z0-9-]{0,63}$.
func ValidTopologyID(id string) bool { return topologyNameRE.MatchString(id) }

// validateScope checks a topology ID where "" (the fleet) is allowed.
func validateScope(topology string) error {
	if topology != "" && !ValidTopologyID(topology) {
		return &nameError{what: "topology id", name: topology, re: topologyNameRE.String()}
	}
	return nil
}

// Validate reports a malformed topology ID or decky name in r; the error
// matches ErrInvalidService and names the bad part.
func (r Ref) Validate() error { return r.validate() }

// ValidateScope reports a malformed topology ID ("" = the fleet is valid);
// the error matches ErrInvalidService.
func ValidateScope(topology string) error { return validateScope(topology) }

// validate checks both parts of r; the error matches ErrInvalidService.
func (r Ref) validate() error {
	if err := validateScope(r.Topology); err != nil {
		return err
	}
	if !ValidDeckyName(r.Decky) {
		return &nameError{what: "decky name", name: r.Decky, re: deckyNameRE.String()}
	}
	return nil
}

// nameError reports a malformed decky name or topology ID. It matches
// ErrInvalidService (the contract's sentinel for a bad name) and says which
// name was bad.
type nameError struct {
	what, name, re string
}

func (e *nameError) Error() string {
	return fmt.Sprintf("bad %s %q (want %s)", e.what, e.name, e.re)
}

func (e *nameError) Is(target error) bool { return target == ErrInvalidService }
