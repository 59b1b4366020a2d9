package servicelivetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

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
	next     []error // queued by FailNext, oldest first
	err      error
}

// Publish counts an attempt and consumes the failure queued by FailNext, if
// any; then it returns ctx.Err() if ctx is done, or the queued failure, or
// the error set by Fail, if any; or else records a copy of e and returns
// nil. Only successful publishes are recorded.
func (b *Bus) Publish(ctx context.Context, e servicelive.Event) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.attempts++
	var queued error
	if len(b.next) > 0 {
		queued = b.next[0]
		b.next = b.next[1:]
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if queued != nil {
		return queued
	}
	if b.err != nil {
		return b.err
	}
	e.Services = slices.Clone(e.Services)
	e.ConfigKeys = slices.Clone(e.ConfigKeys)
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
		out[i].ConfigKeys = slices.Clone(out[i].ConfigKeys)
	}
	return out
}

// Topics returns the topics (servicelive.Event.Topic) of the events
// published successfully so far, in order, e.g.
// "decky.web1.service_added". Compare them with slices.Equal; to check
// more than the topic, use AssertEvents.
func (b *Bus) Topics() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, len(b.events))
	for i, e := range b.events {
		out[i] = e.Topic()
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

// FailNext makes the next Publish, and only that one, return err (unless
// its ctx is done: it then returns ctx.Err() and the failure is spent all
// the same). Several calls queue several failures, used in order; a nil err
// clears the queue. Fail is independent of it: a publish that finds no
// queued failure still returns the error set by Fail.
func (b *Bus) FailNext(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil {
		b.next = nil
		return
	}
	b.next = append(b.next, err)
}

// Reset forgets the recorded events and the attempt count. The failures
// set by Fail and FailNext are kept.
func (b *Bus) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = nil
	b.attempts = 0
}

// FormatEvent returns e on one line, as AssertEvents prints it: its topic,
// then its fields as key=value, lists comma-separated:
//
//	decky.web1.service_added service=ssh services=http,ssh config=banner applied=true
//
// topology=<id> comes right after the topic for an event of a topology, and
// config= only when the event names configuration keys. Every line it
// returns is a want that AssertEvents matches with e.
func FormatEvent(e servicelive.Event) string {
	var b strings.Builder
	b.WriteString(e.Topic())
	if e.Topology != "" {
		b.WriteString(" topology=" + e.Topology)
	}
	b.WriteString(" service=" + e.Service)
	b.WriteString(" services=" + strings.Join(e.Services, ","))
	if len(e.ConfigKeys) > 0 {
		b.WriteString(" config=" + strings.Join(e.ConfigKeys, ","))
	}
	b.WriteString(" applied=" + strconv.FormatBool(e.Applied))
	return b.String()
}

// AssertEvents reports, through t.Errorf, whether got differs from want,
// one want per event, in order; it returns true when they match. No want
// means no event.
//
// A want is a topic, or a pattern matching it (servicelive.Match: "*" for
// one token, ">" for the rest), optionally followed by fields to check, as
// FormatEvent writes them; the fields left out are not checked:
//
//	servicelivetest.AssertEvents(t, bus.Events(),
//		"decky.web1.service_added service=ssh services=http,ssh config=banner",
//		"decky.web1.service_removed service=ssh",
//		"decky.*.service_added topology=lab",
//	)
//
// The fields are topology, service, services and config (comma-separated
// lists; "services=" is an empty list) and applied (true or false). On a
// mismatch it prints every event, as FormatEvent does, beside the want it
// failed, so that a wanted line can be copied from the output.
func AssertEvents(t testing.TB, got []servicelive.Event, want ...string) bool {
	t.Helper()
	ok := len(got) == len(want)
	rows := make([]string, 0, max(len(got), len(want)))
	for i := range max(len(got), len(want)) {
		switch {
		case i >= len(want):
			rows = append(rows, fmt.Sprintf("%3d: got  %s\n     want (no more events)", i, FormatEvent(got[i])))
		case i >= len(got):
			rows = append(rows, fmt.Sprintf("%3d: got  (no more events)\n     want %s", i, want[i]))
		default:
			if err := matchEvent(got[i], want[i]); err != nil {
				ok = false
				rows = append(rows, fmt.Sprintf("%3d: got  %s\n     want %s\n     (%v)", i, FormatEvent(got[i]), want[i], err))
			} else {
				rows = append(rows, fmt.Sprintf("%3d: ok   %s", i, FormatEvent(got[i])))
			}
		}
	}
	if !ok {
		t.Errorf("events differ (got %d, want %d):\n%s", len(got), len(want), strings.Join(rows, "\n"))
	}
	return ok
}

// matchEvent returns why e does not match want (see AssertEvents), or nil.
func matchEvent(e servicelive.Event, want string) error {
	fields := strings.Fields(want)
	if len(fields) == 0 {
		return errors.New("empty want")
	}
	if topic := e.Topic(); fields[0] != topic && !servicelive.Match(fields[0], topic) {
		return fmt.Errorf("topic %s does not match %s", topic, fields[0])
	}
	for _, f := range fields[1:] {
		key, val, found := strings.Cut(f, "=")
		if !found {
			return fmt.Errorf("bad field %q in want: no '='", f)
		}
		var got string
		switch key {
		case "topology":
			got = e.Topology
		case "service":
			got = e.Service
		case "services":
			got = strings.Join(e.Services, ",")
		case "config":
			got = strings.Join(e.ConfigKeys, ",")
		case "applied":
			if val != "true" && val != "false" {
				return fmt.Errorf("bad field %q in want: applied is true or false", f)
			}
			got = strconv.FormatBool(e.Applied)
		default:
			return fmt.Errorf("bad field %q in want: unknown key %s", f, key)
		}
		if got != val {
			return fmt.Errorf("%s is %q", key, got)
		}
	}
	return nil
}
