package servicelive

import "context"

// EventKind names what happened to a decky.
type EventKind string

// The kinds of events a Manager publishes.
const (
	ServiceAdded         EventKind = "service_added"
	ServiceRemoved       EventKind = "service_removed"
	ServiceConfigChanged EventKind = "service_config_changed"
)

// Event is published on the Bus after each successful mutation.
type Event struct {
	Kind     EventKind `json:"kind"`
	Decky    string    `json:"decky_name"`
	Service  string    `json:"service_name"`
	Topology string    `json:"topology_id,omitempty"`
	Services []string  `json:"services"` // the decky's services after the change

	// ConfigKeys are the keys of the service's configuration after the
	// change (sorted; values are never published: they may be secrets).
	ConfigKeys []string `json:"config_keys,omitempty"`
	// Applied reports whether the engine runs the change: always for an
	// added or removed service; for ServiceConfigChanged, whether the
	// container was recreated with the new configuration (WithRecreate).
	Applied bool `json:"applied"`
}

// Topic returns the event's subject, "decky.<decky>.<kind>", e.g.
// decky.web1.service_added. Every token is a valid NATS token.
func (e Event) Topic() string { return "decky." + e.Decky + "." + string(e.Kind) }

// Bus publishes events. Publishing is best-effort for the Manager: an error
// is logged and never fails or undoes a mutation.
type Bus interface {
	Publish(ctx context.Context, e Event) error
}
