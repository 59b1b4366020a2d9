package servicelive

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Outbox is an optional interface of a Store: a durable queue of the events
// of successful mutations that the Bus has not taken yet. A Manager with a
// Bus publishes each event before the mutation returns; when the Bus
// refuses it (an error, a panic, the 5 s timeout), the Manager appends it
// to the Outbox, still before returning. Its relay publishes the Outbox's
// events again, with backoff, deleting each once the Bus has taken it; after
// a restart the next Manager on the same Store does. So the event of every
// call that returned success is delivered at least once while the Store
// survives (a process killed during the publish itself has not returned).
// The Outbox costs nothing while the Bus takes every event.
//
// FileStore keeps it in files beside its state file and package sqlstore in
// a table; a Store without one (MemoryStore) gets a queue in the Manager's
// memory, which a restart loses. servicelivetest.TestStore checks any
// implementation.
type Outbox interface {
	// AppendEvent stores e durably (e.ID is unique) before returning.
	AppendEvent(ctx context.Context, e Event) error
	// PendingEvents returns up to limit stored events, by ID (oldest
	// first). A Store shared by several processes may claim them for the
	// caller's handle for a while (a lease), so that the others skip them
	// meanwhile; a handle always gets back the events it has claimed.
	PendingEvents(ctx context.Context, limit int) ([]Event, error)
	// DeleteEvents removes the events with these IDs; an unknown ID is
	// ignored.
	DeleteEvents(ctx context.Context, ids ...string) error
}

// Redelivery defaults (see WithRedelivery).
const (
	defaultRedeliveryMin = 500 * time.Millisecond
	defaultRedeliveryMax = 30 * time.Second
	// relayBatch is how many pending events one round of the relay reads.
	relayBatch = 64
)

// WithRedelivery sets the backoff of the relay that publishes again the
// events the Bus refused: the first retry comes first after the failure,
// and each failed retry doubles the pause, up to limit (with ±25 % jitter).
// Defaults: 500 ms and 30 s.
func WithRedelivery(first, limit time.Duration) Option {
	return func(m *Manager) {
		m.redeliveryMin = max(first, time.Millisecond)
		m.redeliveryMax = max(limit, m.redeliveryMin)
	}
}

// NewEventID returns a new event ID: a UUIDv7 in canonical text form.
// IDs made by one process sort in the order they were made.
func NewEventID() string {
	id, err := uuid.NewV7()
	if err != nil { // the system's random source failed
		panic("servicelive: event ID: " + err.Error())
	}
	return id.String()
}

// memOutbox is the Outbox of a Manager whose Store has none: in memory.
type memOutbox struct {
	mu     sync.Mutex
	events []Event // sorted by ID
}

func (o *memOutbox) AppendEvent(_ context.Context, e Event) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	i, _ := slices.BinarySearchFunc(o.events, e.ID, func(x Event, id string) int { return strings.Compare(x.ID, id) })
	o.events = slices.Insert(o.events, i, cloneEvent(e))
	return nil
}

func (o *memOutbox) PendingEvents(_ context.Context, limit int) ([]Event, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]Event, 0, min(limit, len(o.events)))
	for _, e := range o.events[:min(limit, len(o.events))] {
		out = append(out, cloneEvent(e))
	}
	return out, nil
}

func (o *memOutbox) DeleteEvents(_ context.Context, ids ...string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = slices.DeleteFunc(o.events, func(e Event) bool { return slices.Contains(ids, e.ID) })
	return nil
}

// cloneEvent returns a copy of e sharing no slice with it.
func cloneEvent(e Event) Event {
	e.Services = slices.Clone(e.Services)
	e.ConfigKeys = slices.Clone(e.ConfigKeys)
	return e
}

// relay publishes the events of the outbox that the Bus refused, in ID
// order, with exponential backoff. It runs no goroutine while idle or
// waiting: a timer (time.AfterFunc) starts each round, and a round that
// finds the outbox empty ends the relay until the next failure.
type relay struct {
	m  *Manager
	ob Outbox

	sem chan struct{} // held by the round in progress (or Close)

	mu      sync.Mutex
	timer   *time.Timer // the next round, if scheduled
	backoff time.Duration
	closed  bool
}

func newRelay(m *Manager, ob Outbox) *relay {
	return &relay{m: m, ob: ob, sem: make(chan struct{}, 1)}
}

// failed schedules a round after the current backoff (growing it), unless
// one is scheduled already.
func (r *relay) failed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failedLocked()
}

// schedule starts a round after d, unless one is scheduled already.
func (r *relay) schedule(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.scheduleLocked(d)
}

func (r *relay) scheduleLocked(d time.Duration) {
	if r.closed || r.timer != nil {
		return
	}
	r.timer = time.AfterFunc(d, r.tick)
}

// tick is the timer's round.
func (r *relay) tick() {
	r.mu.Lock()
	r.timer = nil
	r.mu.Unlock()
	select {
	case r.sem <- struct{}{}:
	default:
		return // Close is flushing
	}
	pending, err := r.round(context.Background())
	<-r.sem
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err != nil:
		r.m.log.LogAttrs(context.Background(), slog.LevelWarn, "servicelive: redelivery failed", slog.Any("error", err))
		r.failedLocked()
	case pending:
		r.scheduleLocked(0) // the next batch
	default:
		r.backoff = 0
	}
}

// failedLocked is failed with r.mu held.
func (r *relay) failedLocked() {
	if r.backoff == 0 {
		r.backoff = r.m.redeliveryMin
	} else {
		r.backoff = min(2*r.backoff, r.m.redeliveryMax)
	}
	r.scheduleLocked(r.backoff/4*3 + rand.N(r.backoff/2+1))
}

// round publishes one batch of pending events, in order, deleting each once
// the Bus has taken it; it stops at the first failure (returned). pending
// reports that the batch was full (more may wait).
func (r *relay) round(ctx context.Context) (pending bool, err error) {
	lctx, cancel := context.WithTimeout(ctx, publishTimeout)
	events, err := r.ob.PendingEvents(lctx, relayBatch)
	cancel()
	if err != nil {
		return false, fmt.Errorf("read outbox: %w", err)
	}
	for _, e := range events {
		if err := r.m.sendEvent(ctx, e); err != nil {
			return false, fmt.Errorf("publish %s (%s): %w", e.Topic(), e.ID, err)
		}
		dctx, cancel := context.WithTimeout(ctx, publishTimeout)
		err := r.ob.DeleteEvents(dctx, e.ID)
		cancel()
		if err != nil {
			return false, fmt.Errorf("delete published event %s from the outbox: %w", e.ID, err)
		}
	}
	return len(events) == relayBatch, nil
}

// close stops the relay after publishing what it can before ctx ends.
func (r *relay) close(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.mu.Unlock()
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("servicelive: close: flush the outbox: %w", ctx.Err())
	}
	defer func() { <-r.sem }()
	for {
		pending, err := r.round(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return fmt.Errorf("servicelive: close: flush the outbox: %w", errors.Join(ctx.Err(), err))
		case err != nil:
			return fmt.Errorf("servicelive: close: flush the outbox: %w", err)
		case !pending:
			return nil
		}
	}
}
