package servicelivetest

import (
	"context"
	"slices"
	"sync"

	"github.com/decnet/servicelive"
)

var _ servicelive.Bus = (*Bus)(nil)

// Bus is a fake servicelive.Bus that records the events published on it and
// fails on demand. It is safe for concurrent use; the zero Bus is ready to
// use.
//
// Like a bus behind a network, Publish fails with ctx.Err() when ctx is
// already done.
type Bus struct {
	mu       sync.Mutex
	events   []servicelive.Event
	attempts int
	err      error
}

// Publish counts an attempt, then returns ctx.Err() if ctx is done, or the
// error set by Fail if any, or records a copy of e and returns nil. Only
// successful publishes are recorded.
func (b *Bus) Publish(ctx context.Context, e servicelive.Event) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.attempts++
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.err != nil {
		return b.err
	}
	e.Services = slices.Clone(e.Services)
	b.events = append(b.events, e)
	return nil
}

// Events returns a copy of the events published successfully so far, in
// order.
func (b *Bus) Events() []servicelive.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := slices.Clone(b.events)
	for i := range out {
		out[i].Services = slices.Clone(out[i].Services)
	}
	return out
}

// Attempts returns how many times Publish was called, failed calls
// included.
func (b *Bus) Attempts() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.attempts
}

// Fail makes every later Publish return err, until Fail(nil).
func (b *Bus) Fail(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.err = err
}

// Reset forgets the recorded events and the attempt count. A failure set by
// Fail is kept.
func (b *Bus) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = nil
	b.attempts = 0
}
