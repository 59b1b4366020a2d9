package servicelive

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// ErrBusClosed is returned by LocalBus.Publish and LocalBus.Subscribe once
// the bus is closed.
var ErrBusClosed = errors.New("servicelive: bus closed")

// defaultBuffer is the number of events a LocalBus subscription holds for
// its reader unless WithSubscriptionBuffer says otherwise.
const defaultBuffer = 64

var _ Bus = (*LocalBus)(nil)

// LocalBus is an in-process Bus: Publish hands each event to every
// Subscription whose pattern Matches the event's Topic.
//
// Publish never blocks on subscribers. Each Subscription owns a bounded
// buffer; when it is full the new event is dropped for that subscriber alone
// and its Dropped counter grows, so a slow or dead subscriber can never block
// a mutation, nor delay the other subscribers. Events published one after the
// other reach each subscriber in that order, and every subscriber sees
// concurrent publishes in the same order.
//
// A LocalBus is safe for concurrent use and starts no goroutines. The zero
// LocalBus is ready to use, with the default buffer of 64 events.
type LocalBus struct {
	mu     sync.Mutex // guards everything below and serializes deliveries
	subs   map[*Subscription]struct{}
	buffer int
	closed bool
}

// LocalBusOption configures NewLocalBus.
type LocalBusOption func(*LocalBus)

// WithSubscriptionBuffer sets how many undelivered events each subscription
// of a LocalBus holds before new ones are dropped for it (64 by default).
// Values below 1 mean 1.
func WithSubscriptionBuffer(n int) LocalBusOption {
	return func(b *LocalBus) { b.buffer = max(n, 1) }
}

// WithBuffer is WithSubscriptionBuffer.
//
// Deprecated: the name read like a Manager option; use
// WithSubscriptionBuffer.
func WithBuffer(n int) LocalBusOption { return WithSubscriptionBuffer(n) }

// NewLocalBus returns an open LocalBus.
func NewLocalBus(opts ...LocalBusOption) *LocalBus {
	b := &LocalBus{buffer: defaultBuffer}
	for _, opt := range opts {
		opt(b)
	}
	return b
}

// Publish delivers e to every open subscription whose pattern matches
// e.Topic(), without waiting: a subscription whose buffer is full misses e
// (see Subscription.Dropped). It returns ErrBusClosed after Close, and an
// error for an event whose topic is not a ValidTopic. Subscribers share
// one copy of e.Services, taken by Publish, and must not modify it.
//
// ctx is not consulted: Publish does not block, and an event of a mutation
// that has happened is delivered even if the caller's context is done.
func (b *LocalBus) Publish(_ context.Context, e Event) error {
	topic := e.Topic()
	if !ValidTopic(topic) {
		return fmt.Errorf("servicelive: publish: invalid topic %q", topic)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrBusClosed
	}
	cloned := false
	for s := range b.subs {
		if !Match(s.pattern, topic) {
			continue
		}
		if !cloned {
			e.Services = slices.Clone(e.Services)
			cloned = true
		}
		select {
		case s.ch <- e:
		default:
			s.dropped.Add(1)
		}
	}
	return nil
}

// Subscribe returns a Subscription receiving the events published from now
// on whose topic matches pattern (see Match). An invalid pattern (see
// ValidPattern) is an error, and so is a closed bus (ErrBusClosed).
func (b *LocalBus) Subscribe(pattern string) (*Subscription, error) {
	if !ValidPattern(pattern) {
		return nil, fmt.Errorf("servicelive: subscribe: invalid pattern %q", pattern)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrBusClosed
	}
	if b.subs == nil {
		b.subs = make(map[*Subscription]struct{})
	}
	n := b.buffer
	if n == 0 {
		n = defaultBuffer
	}
	s := &Subscription{bus: b, pattern: pattern, ch: make(chan Event, n)}
	b.subs[s] = struct{}{}
	return s, nil
}

// Close closes every subscription (their channels are closed once drained
// of the events already buffered) and makes later Publish and Subscribe
// calls fail with ErrBusClosed. Closing a closed bus is a no-op.
func (b *LocalBus) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	for s := range b.subs {
		close(s.ch)
	}
	b.subs = nil
	return nil
}

// Subscription receives the events of a LocalBus that match its pattern.
// Its methods are safe for concurrent use.
type Subscription struct {
	bus     *LocalBus
	pattern string
	ch      chan Event // closed, under bus.mu, when removed from bus.subs
	dropped atomic.Uint64
}

// C returns the channel events are delivered on, in publish order. It is
// closed by Close or by the bus's Close; the events buffered before that
// can still be received.
func (s *Subscription) C() <-chan Event { return s.ch }

// Pattern returns the pattern s was subscribed with.
func (s *Subscription) Pattern() string { return s.pattern }

// Dropped returns how many matching events s missed because its buffer was
// full when they were published.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close stops deliveries to s and closes its channel. It is idempotent and
// may be called concurrently with Publish and with the bus's Close.
func (s *Subscription) Close() {
	b := s.bus
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.subs[s]; !ok {
		return // already closed, by s.Close or b.Close
	}
	delete(b.subs, s)
	close(s.ch)
}
