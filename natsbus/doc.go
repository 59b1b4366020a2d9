// Package natsbus is a servicelive.Bus on NATS (github.com/nats-io/nats.go):
// the events of a Manager leave the process, for dashboards, alerting
// pipelines and other orchestrators.
//
//	nc, err := nats.Connect(url)
//	...
//	bus, err := natsbus.New(nc, natsbus.WithJetStream("DECKY"))
//	...
//	m, err := servicelive.New(store, composer, reg, servicelive.WithBus(bus))
//	...
//	defer bus.Close()
//	defer m.Close(ctx) // before bus.Close: publish what is left
//
// # Subjects and payload
//
// Each event is published on its topic, servicelive.Event.Topic:
// "decky.<decky>.<kind>", e.g. decky.web1.service_added. Subscribers use NATS
// wildcards ("decky.*.service_removed", "decky.>"), whose semantics
// servicelive.Match shares.
//
// The payload is a JSON object, version 1:
//
//	{
//	  "version": 1,                               // PayloadVersion; consumers refuse others
//	  "id": "01937f6c-1c2e-7b3a-9c1d-2f0e6a5b4c3d", // the event's ID, a UUIDv7: deduplicate on it
//	  "time": "2026-11-30T06:45:00.123456789Z",   // when the change was committed (RFC 3339, UTC)
//	  "kind": "service_added",                    // or "service_removed", "service_config_changed"
//	  "decky_name": "web1",
//	  "service_name": "ssh",
//	  "topology_id": "lab",                       // absent for the fleet
//	  "services": ["http", "ssh"],                // the decky's services after the change
//	  "config_keys": ["banner", "port"],          // the service's configuration keys (never values); absent when none
//	  "applied": true                             // the engine runs the change (see servicelive.Event)
//	}
//
// decky_name, service_name, topology_id and services are the seed's field
// names: consumers written for it keep working. A later version may add
// fields; a change to the meaning of a field gets a new version.
// testdata/payload.golden.json holds one, checked by the tests.
//
// # Core NATS and JetStream
//
// By default events are published on core NATS: only the subscribers
// connected at that moment get them, and nothing stores them. Publish
// flushes after each event (a round trip to the server, bounded by the
// Manager's 1 s), so that a server that is gone is noticed and the event
// kept in the Manager's Outbox; but a nil error only means that the server
// received it, not that any subscriber did: the Manager's at-least-once
// guarantee (see servicelive.Outbox) needs WithJetStream. The flush costs a
// round trip per event (see BENCHMARKS.md), nothing at the rate of
// container changes.
//
// With WithJetStream the events are stored in a stream (created by New if
// missing, with subjects "decky.>" and a duplicate window of 1 h,
// WithDuplicateWindow; an existing stream must capture them and acknowledge
// publishes (no NoAck), or New fails with a *StreamMismatchError: it is
// never altered), and Publish returns once the stream has acknowledged the
// event. Each message carries the header Nats-Msg-Id = the event's ID, so a
// redelivered event (the Manager publishes again an event whose
// acknowledgment was lost) is dropped by the stream's duplicate window, if
// it comes back within it.
//
// Publish fails at once, with ErrNotConnected, when the connection is not
// connected (reconnecting, say): nats.go would otherwise keep the message in
// its reconnect buffer, in memory, and lose it with the process. The Manager
// keeps the event in its Outbox and publishes it again once the broker is
// back, and a mutation never waits for a broker that is down.
//
// # Consumers
//
// Subscribe returns the events of a pattern as servicelive.Events: on core
// NATS (those published from now on) or, with Durable, through a durable
// JetStream consumer, which resumes where the last one left off and
// acknowledges each event once it has been received from the channel.
package natsbus
