package natsbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/decnet/servicelive"
)

// PayloadVersion is the version of the payload this package writes and
// reads (see the package documentation).
const PayloadVersion = 1

// StreamSubjects is the subject filter of the stream New creates.
const StreamSubjects = "decky.>"

// Defaults of the options.
const (
	defaultSetupTimeout = 10 * time.Second
	defaultFlushTimeout = 5 * time.Second
	// DefaultDuplicateWindow is the duplicate window of the stream New
	// creates (see WithDuplicateWindow).
	DefaultDuplicateWindow = time.Hour
)

// Errors of Publish and Subscribe.
var (
	// ErrNotConnected is returned by Publish when the connection is not
	// connected: the event was not sent.
	ErrNotConnected = errors.New("natsbus: not connected")
	// ErrClosed is returned once the Bus is closed.
	ErrClosed = errors.New("natsbus: bus closed")
)

var _ servicelive.Bus = (*Bus)(nil)

// Bus is a servicelive.Bus on a NATS connection. Create one with New. It is
// safe for concurrent use.
type Bus struct {
	nc           *nats.Conn
	js           jetstream.JetStream // nil on core NATS
	stream       string
	setupTimeout time.Duration
	flushTimeout time.Duration
	dupWindow    time.Duration

	mu     sync.Mutex
	closed bool
	subs   map[*subscription]struct{}
	wg     sync.WaitGroup // the subscriptions' goroutines
}

// Option configures New.
type Option func(*Bus)

// WithJetStream publishes the events into the JetStream stream named
// stream, waiting for its acknowledgment; see the package documentation.
func WithJetStream(stream string) Option { return func(b *Bus) { b.stream = stream } }

// WithSetupTimeout bounds what New asks the server (the stream's check or
// creation): 10 s by default.
func WithSetupTimeout(d time.Duration) Option { return func(b *Bus) { b.setupTimeout = d } }

// WithFlushTimeout bounds how long Close waits for the server to have
// received what was published, and a core NATS Publish whose ctx has no
// deadline: 5 s by default.
func WithFlushTimeout(d time.Duration) Option { return func(b *Bus) { b.flushTimeout = d } }

// WithDuplicateWindow sets the duplicate window of the stream New creates
// (an existing stream keeps its own): the stream drops a message whose
// Nats-Msg-Id it has stored within that time, so an event published again
// after its acknowledgment was lost is stored once if the Manager's relay
// publishes it again within the window (outages longer than it store it
// twice; consumers deduplicate by ID anyway). Default
// DefaultDuplicateWindow, 1 h, where the server's default is 2 minutes: the
// server keeps every ID of the window in memory (about 100 bytes an event:
// 36 MB at 100 events/s, negligible at the rate of container changes) and
// checks each publish against them.
func WithDuplicateWindow(d time.Duration) Option { return func(b *Bus) { b.dupWindow = d } }

// StreamMismatchError is returned by New when the JetStream stream exists
// but does not capture the events' subjects, or does not acknowledge
// publishes (NoAck: every Publish would time out): New does not alter it.
type StreamMismatchError struct {
	Stream   string
	Subjects []string // the stream's
	NoAck    bool     // the stream's NoAck
}

func (e *StreamMismatchError) Error() string {
	if e.NoAck {
		return fmt.Sprintf("natsbus: stream %s exists with no_ack set: it would acknowledge no event (it is left as it is)", e.Stream)
	}
	return fmt.Sprintf("natsbus: stream %s exists with subjects %q, which do not capture %s (it is left as it is)", e.Stream, e.Subjects, StreamSubjects)
}

// New returns a Bus publishing on nc, which stays the caller's: Close does
// not close it. With WithJetStream it checks the stream, or creates it
// (file storage, subjects StreamSubjects, the duplicate window of
// WithDuplicateWindow), and fails with a *StreamMismatchError when an
// existing stream does not capture StreamSubjects or has NoAck set; it
// never alters an existing stream.
func New(nc *nats.Conn, opts ...Option) (*Bus, error) {
	if nc == nil {
		return nil, errors.New("natsbus: nil connection")
	}
	b := &Bus{nc: nc, setupTimeout: defaultSetupTimeout, flushTimeout: defaultFlushTimeout, dupWindow: DefaultDuplicateWindow, subs: make(map[*subscription]struct{})}
	for _, o := range opts {
		o(b)
	}
	if b.stream == "" {
		return b, nil
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsbus: jetstream: %w", err)
	}
	b.js = js
	ctx, cancel := context.WithTimeout(context.Background(), b.setupTimeout)
	defer cancel()
	s, err := js.Stream(ctx, b.stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		_, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        b.stream,
			Description: "servicelive events (github.com/decnet/servicelive/natsbus)",
			Subjects:    []string{StreamSubjects},
			Storage:     jetstream.FileStorage,
			Duplicates:  b.dupWindow,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return New(nc, opts...) // made meanwhile by another process: check it
		}
		if err != nil {
			return nil, fmt.Errorf("natsbus: create stream %s: %w", b.stream, err)
		}
	case err != nil:
		return nil, fmt.Errorf("natsbus: stream %s: %w", b.stream, err)
	default:
		cfg := s.CachedInfo().Config
		if !slices.ContainsFunc(cfg.Subjects, func(f string) bool { return covers(f, StreamSubjects) }) || cfg.NoAck {
			return nil, &StreamMismatchError{Stream: b.stream, Subjects: cfg.Subjects, NoAck: cfg.NoAck}
		}
	}
	return b, nil
}

// covers reports whether the subject filter f captures every subject of
// the filter g (g = "decky.>": f is "decky.>", "*.>" or ">").
func covers(f, g string) bool {
	return f == g || f == ">" || f == "*.>"
}

// Encode returns the payload of e (see the package documentation).
func Encode(e servicelive.Event) ([]byte, error) {
	return json.Marshal(payload{Version: PayloadVersion, Event: e})
}

// Decode returns the event of a payload; a payload of another version, or
// whose topic would be invalid, is an error.
func Decode(data []byte) (servicelive.Event, error) {
	var p payload
	if err := json.Unmarshal(data, &p); err != nil {
		return servicelive.Event{}, fmt.Errorf("natsbus: decode: %w", err)
	}
	if p.Version != PayloadVersion {
		return servicelive.Event{}, fmt.Errorf("natsbus: decode: payload version %d, want %d", p.Version, PayloadVersion)
	}
	if !servicelive.ValidTopic(p.Event.Topic()) || p.Kind == "" {
		return servicelive.Event{}, fmt.Errorf("natsbus: decode: invalid event (topic %q)", p.Event.Topic())
	}
	return p.Event, nil
}

// payload is the JSON document of an event.
type payload struct {
	Version int `json:"version"`
	servicelive.Event
}

// Publish sends e on subject e.Topic(). It fails at once with
// ErrNotConnected when the connection is not connected, and with ErrClosed
// after Close. On core NATS it returns once the server has answered a
// ping sent after the message (a flush, bounded by ctx's deadline, or the
// flush timeout when ctx has none): the server has received it and passed
// it to the subscribers of that moment, if any, but nothing stores it;
// with JetStream once the stream has acknowledged it (or ctx is done), the
// header Nats-Msg-Id set to e.ID. A connection that died without nats.go
// noticing yet holds a Publish until ctx ends (the Manager bounds its own
// publish to 1 s, its relay's to 5 s).
func (b *Bus) Publish(ctx context.Context, e servicelive.Event) error {
	topic := e.Topic()
	if !servicelive.ValidTopic(topic) {
		return fmt.Errorf("natsbus: publish: invalid topic %q", topic)
	}
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if st := b.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("natsbus: publish %s: %w (%s)", topic, ErrNotConnected, st)
	}
	data, err := Encode(e)
	if err != nil {
		return fmt.Errorf("natsbus: publish %s: %w", topic, err)
	}
	msg := &nats.Msg{Subject: topic, Data: data, Header: nats.Header{}}
	if e.ID != "" {
		msg.Header.Set(jetstream.MsgIDHeader, e.ID)
	}
	if b.js == nil {
		if err := b.nc.PublishMsg(msg); err != nil {
			return fmt.Errorf("natsbus: publish %s: %w", topic, err)
		}
		// A nil error so far only means buffered: the flush notices a
		// server that is gone.
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, b.flushTimeout)
			defer cancel()
		}
		if err := b.nc.FlushWithContext(ctx); err != nil {
			return fmt.Errorf("natsbus: publish %s: flush: %w", topic, err)
		}
		return nil
	}
	if _, err := b.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(b.stream)); err != nil {
		return fmt.Errorf("natsbus: publish %s to stream %s: %w", topic, b.stream, err)
	}
	return nil
}

// Close ends the subscriptions (their channels are closed), makes later
// calls fail with ErrClosed, and waits up to the flush timeout
// (WithFlushTimeout) for the server to have received what was published; it
// returns the flush's error (e.g. when the server is unreachable). It does
// not close the connection. Closing a closed Bus is a no-op.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	subs := b.subs
	b.subs = nil
	b.mu.Unlock()
	for s := range subs {
		s.cancel()
	}
	b.wg.Wait()
	if b.nc.IsClosed() {
		return nil
	}
	if err := b.nc.FlushTimeout(b.flushTimeout); err != nil {
		return fmt.Errorf("natsbus: close: flush: %w", err)
	}
	return nil
}
