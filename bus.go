package servicelive

import (
	"context"
	"time"
)

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
	// ID identifies the event: a UUIDv7 (RFC 9562) in its canonical
	// lowercase text form, unique and ordered by time (the IDs of one
	// Manager sort in the order of its events). A Manager delivers its
	// events in ID order, also when some wait in its Outbox: none overtakes
	// an older one that waits (per Manager only: the events of several
	// Managers may interleave, and so may those of calls that overlap in
	// time, which only mutations of different deckies do). A Bus may
	// deliver an event more than once (see Outbox), possibly after later
	// ones: consumers deduplicate by ID.
	ID string `json:"id,omitempty"`
	// Time is when the Manager committed the change (UTC).
	Time time.Time `json:"time,omitzero"`

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

// Bus publishes events. A Publish error never fails or undoes a mutation:
// the Manager keeps the event in its Outbox and publishes it again later
// (see Manager.Close). A nil error means the Bus has taken the event: the
// Manager will not publish it again.
type Bus interface {
	Publish(ctx context.Context, e Event) error
}
