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
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Outbox is an optional interface of a Store: a durable queue of the events
// of successful mutations that the Bus has not taken yet. A Manager with a
// Bus publishes each event before the mutation returns; when the Bus
// refuses it (an error, a panic, no answer within 1 s), the Manager appends
// it to the Outbox, still before returning, and so are the events of the
// calls after it, without trying the Bus (a circuit breaker), until its
// relay has emptied the Outbox: the relay publishes them again in ID order,
// with backoff, deleting each once the Bus has taken it; after a restart the
// next Manager on the same Store does (a Manager on a Store with an Outbox
// starts with its relay, and publishes directly once that has found it
// empty). So the event of every call that returned success is delivered at
// least once while the Store survives (a process killed during the publish
// itself has not returned), and the events of one Manager are delivered in
// the order of their IDs (a redelivered event may come again after later
// ones; several Managers relaying one shared Store may interleave their
// events, and so may calls that overlap in time, on different deckies). The Outbox costs nothing while the Bus takes every event. When
// the Outbox refuses an event too, the relay keeps it in memory (logged at
// error level), delivered in order with the rest, or lost if the process
// ends first. At-least-once needs a Bus whose nil error means the event is
// stored: natsbus on core NATS only buffers it (see natsbus.WithJetStream).
//
// An entry that cannot be decoded is quarantined (set aside, not returned)
// so that the events after it flow: FileStore renames its file
// "<id>.json.bad"; package sqlstore marks its row dead.
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

// OutboxReleaser is an optional interface of an Outbox whose PendingEvents
// claims events (a lease): ReleaseEvents gives back every claim of the
// handle, so that another handle (the next process) may publish those
// events at once instead of when the lease runs out. The relay calls it
// after a failed round and when the Manager is closed with events left.
type OutboxReleaser interface {
	ReleaseEvents(ctx context.Context) error
}

// Redelivery defaults (see WithRedelivery).
const (
	defaultRedeliveryMin = 500 * time.Millisecond
	defaultRedeliveryMax = 30 * time.Second
	// relayBatch is how many pending events one round of the relay reads.
	relayBatch = 64
	// closeRetryMin and closeRetryMax bound the backoff of Close's retries
	// (or WithRedelivery's, if shorter).
	closeRetryMin = 50 * time.Millisecond
	closeRetryMax = time.Second
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

// inlinePublishTimeout bounds the publish a mutation makes itself, while
// it holds the decky's lock: a broker that does not answer within it (gone
// without the connection noticing yet, say) costs that call at most this
// much, and only that call (the breaker then sends the next events to the
// outbox). The relay, which holds no lock, gives each publish
// publishTimeout.
const inlinePublishTimeout = time.Second

// relay publishes the events of the outbox that the Bus refused, in ID
// order, with exponential backoff. It is also the Manager's circuit
// breaker: a mutation publishes its event itself only while the relay is
// idle and the outbox is known to be empty (clear); otherwise the event
// joins the outbox, behind the older ones, and the relay delivers it in
// order. It runs no goroutine while idle or waiting: a timer
// (time.AfterFunc) starts each round, and a round that finds nothing left
// closes the breaker again (clear).
type relay struct {
	m  *Manager
	ob Outbox

	sem chan struct{} // held by the round in progress (or Close)

	mu      sync.Mutex
	timer   *time.Timer // the next round, if scheduled
	backoff time.Duration
	closed  bool
	// clear: the outbox is empty and no round is due, so publish may send
	// to the Bus directly. False from the first refusal until a round
	// finds nothing left; false at start with a durable outbox (what an
	// earlier process left is unknown until the first round).
	clear   bool
	gen     uint64  // counts the starts and ends of queue calls
	queuing int     // queue calls in progress
	mem     []Event // events the outbox refused too (best effort), by ID
}

func newRelay(m *Manager, ob Outbox, clear bool) *relay {
	return &relay{m: m, ob: ob, sem: make(chan struct{}, 1), clear: clear}
}

// direct reports whether an event may go to the Bus at once.
func (r *relay) direct() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.clear
}

// queue keeps e for the relay: in the outbox, or in memory when the outbox
// refuses it too. tried reports that the Bus has just refused e (a
// failure: the relay backs off).
func (r *relay) queue(ctx context.Context, e Event, tried bool) {
	r.mu.Lock()
	r.clear = false
	r.gen++
	r.queuing++
	r.mu.Unlock()
	octx, cancel := context.WithTimeout(ctx, publishTimeout)
	err := r.ob.AppendEvent(octx, e)
	cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	// Counted again once stored: a round that read the outbox before this
	// append committed must see that something came meanwhile.
	r.gen++
	r.queuing--
	if err != nil {
		r.m.log.LogAttrs(ctx, slog.LevelError, "servicelive: the outbox refused an event: kept in memory until the relay publishes it (lost if the process ends first)",
			slog.String("topic", e.Topic()), slog.String("id", e.ID), slog.Any("error", err))
		i, _ := slices.BinarySearchFunc(r.mem, e.ID, func(x Event, id string) int { return strings.Compare(x.ID, id) })
		r.mem = slices.Insert(r.mem, i, e)
	}
	if tried {
		r.failedLocked()
	} else {
		r.scheduleLocked(r.backoff)
	}
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

// testHookTick, if set, runs at the start of each timer round, given the
// relay's Manager (tests; atomic: other relays' timers read it).
var testHookTick atomic.Pointer[func(*Manager)]

// tick is the timer's round.
func (r *relay) tick() {
	r.mu.Lock()
	r.timer = nil
	r.mu.Unlock()
	if f := testHookTick.Load(); f != nil {
		(*f)(r.m)
	}
	select {
	case r.sem <- struct{}{}:
	default:
		return // Close is flushing
	}
	r.mu.Lock()
	if r.closed { // Close ran meanwhile: it has flushed
		r.mu.Unlock()
		<-r.sem
		return
	}
	gen := r.gen
	r.mu.Unlock()
	pending, err := r.round(context.Background())
	if err != nil {
		r.m.log.LogAttrs(context.Background(), slog.LevelWarn, "servicelive: redelivery failed", slog.Any("error", err))
		r.release()
	}
	// Released before scheduling: a timer that fires from now on finds
	// the semaphore free (one that fired before found the timer unset,
	// and the next round is scheduled below).
	<-r.sem
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err != nil:
		r.failedLocked()
	case pending || r.gen != gen || r.queuing > 0 || len(r.mem) > 0:
		r.scheduleLocked(0) // the next batch, or what was queued meanwhile
	default:
		r.backoff = 0
		r.clear = true
	}
}

// failedLocked schedules a round after the current backoff (growing it),
// unless one is scheduled already; r.mu is held.
func (r *relay) failedLocked() {
	r.backoff = r.nextBackoff(r.backoff)
	r.scheduleLocked(jitter(r.backoff))
}

// nextBackoff returns the pause after one more failure.
func (r *relay) nextBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return r.m.redeliveryMin
	}
	return min(2*d, r.m.redeliveryMax)
}

// jitter returns d ±25 %.
func jitter(d time.Duration) time.Duration { return d/4*3 + rand.N(d/2+1) }

// release gives back the claims the outbox holds for this relay, if it
// makes any (OutboxReleaser), so that another Manager (the next process)
// may publish them at once.
func (r *relay) release() {
	rel, ok := r.ob.(OutboxReleaser)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	if err := rel.ReleaseEvents(ctx); err != nil {
		r.m.log.LogAttrs(ctx, slog.LevelWarn, "servicelive: release the outbox's claims", slog.Any("error", err))
	}
}

// round publishes one batch of pending events (the outbox's and the
// memory's, merged by ID), in order, deleting each once the Bus has taken
// it; it stops at the first failure (returned). pending reports that more
// may wait.
func (r *relay) round(ctx context.Context) (pending bool, err error) {
	lctx, cancel := context.WithTimeout(ctx, publishTimeout)
	events, err := r.ob.PendingEvents(lctx, relayBatch)
	cancel()
	if err != nil {
		return false, fmt.Errorf("read outbox: %w", err)
	}
	full := len(events) == relayBatch
	inMem := map[string]bool{}
	r.mu.Lock()
	for _, e := range r.mem {
		// With a full batch, the memory's events after it wait for the
		// next one.
		if !full || e.ID < events[len(events)-1].ID {
			events = append(events, e)
			inMem[e.ID] = true
		}
	}
	r.mu.Unlock()
	slices.SortStableFunc(events, func(a, b Event) int { return strings.Compare(a.ID, b.ID) })
	for _, e := range events {
		if err := r.m.sendEvent(ctx, e, publishTimeout); err != nil {
			return false, fmt.Errorf("publish %s (%s): %w", e.Topic(), e.ID, err)
		}
		if inMem[e.ID] {
			r.mu.Lock()
			r.mem = slices.DeleteFunc(r.mem, func(x Event) bool { return x.ID == e.ID })
			r.mu.Unlock()
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, publishTimeout)
		err := r.ob.DeleteEvents(dctx, e.ID)
		cancel()
		if err != nil {
			return false, fmt.Errorf("delete published event %s from the outbox: %w", e.ID, err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return full || len(r.mem) > 0, nil
}

// close stops the relay after publishing what it can before ctx ends,
// retrying with backoff.
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
	var backoff time.Duration
	for {
		r.mu.Lock()
		gen := r.gen
		r.mu.Unlock()
		pending, err := r.round(ctx)
		if err == nil {
			if pending {
				continue
			}
			r.mu.Lock()
			done := r.gen == gen && r.queuing == 0
			r.clear = r.clear || done
			r.mu.Unlock()
			if done {
				return nil
			}
			// A call is appending an event: let it finish.
			select {
			case <-time.After(time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		r.m.log.LogAttrs(ctx, slog.LevelWarn, "servicelive: close: redelivery failed", slog.Any("error", err))
		// Close has a deadline: it retries sooner than the relay.
		backoff = min(max(2*backoff, min(r.m.redeliveryMin, closeRetryMin)), r.m.redeliveryMax, closeRetryMax)
		t := time.NewTimer(jitter(backoff))
		select {
		case <-t.C:
			continue
		case <-ctx.Done():
			t.Stop()
		}
		r.release()
		r.mu.Lock()
		lost := len(r.mem)
		r.mu.Unlock()
		if lost > 0 {
			r.m.log.LogAttrs(ctx, slog.LevelError, "servicelive: close: events the outbox refused are lost", slog.Int("events", lost))
		}
		return fmt.Errorf("servicelive: close: flush the outbox: %w", errors.Join(ctx.Err(), err))
	}
}
