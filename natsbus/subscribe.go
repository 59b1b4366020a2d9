package natsbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/decnet/servicelive"
)

// SubscribeOption configures Subscribe.
type SubscribeOption func(*subscribeOptions)

type subscribeOptions struct {
	durable string
	ackWait time.Duration
}

// Durable makes Subscribe read through the durable JetStream consumer
// named name on the Bus's stream (created, or updated to the pattern, on
// first use): events published while no one listened are delivered, each
// event is acknowledged once received from the channel, and one not
// received (the subscription ended first) is delivered again to the next
// subscriber of that consumer: at once, or after AckWait when it was in
// flight. It needs a Bus made WithJetStream.
func Durable(name string) SubscribeOption {
	return func(o *subscribeOptions) { o.durable = name }
}

// AckWait sets the durable consumer's AckWait (see Durable): an event the
// server sent to a subscription that ended before handing it over (a pull
// in flight when ctx ended) is delivered again after it. The server's
// default is 30 s.
func AckWait(d time.Duration) SubscribeOption {
	return func(o *subscribeOptions) { o.ackWait = d }
}

// subscription is one Subscribe in progress.
type subscription struct {
	cancel context.CancelFunc
}

// Subscribe returns a channel of the events whose topic matches pattern
// (NATS wildcards, see servicelive.Match), in the order the server
// delivers them. The channel is closed when ctx is done, the Bus is closed,
// or the connection is closed. Messages that are not valid payloads are
// skipped. Without Durable the events come from core NATS: those published
// from now on, while connected.
func (b *Bus) Subscribe(ctx context.Context, pattern string, opts ...SubscribeOption) (<-chan servicelive.Event, error) {
	if !servicelive.ValidPattern(pattern) {
		return nil, fmt.Errorf("natsbus: subscribe: invalid pattern %q", pattern)
	}
	var o subscribeOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.durable != "" && b.js == nil {
		return nil, errors.New("natsbus: subscribe: Durable needs a Bus made WithJetStream")
	}
	sctx, cancel := context.WithCancel(ctx)
	s := &subscription{cancel: cancel}
	var next func() (msg, error)
	var stop func()
	if o.durable == "" {
		sub, err := b.nc.SubscribeSync(pattern)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("natsbus: subscribe %s: %w", pattern, err)
		}
		// The subscription is registered with the server once this
		// returns: events published after Subscribe are delivered.
		if err := b.nc.FlushTimeout(b.setupTimeout); err != nil && b.nc.Status() == nats.CONNECTED {
			_ = sub.Unsubscribe()
			cancel()
			return nil, fmt.Errorf("natsbus: subscribe %s: %w", pattern, err)
		}
		next = func() (msg, error) {
			m, err := sub.NextMsgWithContext(sctx)
			if err != nil {
				return msg{}, err
			}
			return msg{data: m.Data}, nil
		}
		stop = func() { _ = sub.Unsubscribe() }
	} else {
		cons, err := b.js.CreateOrUpdateConsumer(sctx, b.stream, jetstream.ConsumerConfig{
			Durable:       o.durable,
			FilterSubject: pattern,
			AckPolicy:     jetstream.AckExplicitPolicy,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			AckWait:       o.ackWait,
		})
		if err != nil {
			cancel()
			return nil, fmt.Errorf("natsbus: subscribe %s: consumer %s: %w", pattern, o.durable, err)
		}
		// One message per pull, none prefetched: a message this
		// subscription holds is one it hands over next, and gives back
		// (Nak) if it ends first, for the next subscriber at once.
		next = func() (msg, error) {
			m, err := cons.Next(jetstream.FetchContext(sctx))
			if err != nil {
				return msg{}, err
			}
			return msg{data: m.Data(), ack: func() { _ = m.Ack() }, term: func() { _ = m.Term() }, nak: func() { _ = m.Nak() }}, nil
		}
		stop = func() {}
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		stop()
		cancel()
		return nil, ErrClosed
	}
	b.subs[s] = struct{}{}
	b.wg.Add(1)
	b.mu.Unlock()

	ch := make(chan servicelive.Event)
	go func() {
		defer b.wg.Done()
		defer close(ch)
		defer cancel()
		defer stop()
		defer func() {
			b.mu.Lock()
			delete(b.subs, s)
			b.mu.Unlock()
		}()
		for {
			m, err := next()
			if err != nil {
				if sctx.Err() != nil || errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrBadSubscription) ||
					errors.Is(err, jetstream.ErrMsgIteratorClosed) || errors.Is(err, jetstream.ErrConsumerDeleted) {
					return
				}
				// A pull that expired, or a transient error (a slow
				// consumer, the connection down): wait a little, read on.
				if errors.Is(err, nats.ErrTimeout) {
					continue
				}
				select {
				case <-time.After(50 * time.Millisecond):
				case <-sctx.Done():
					return
				}
				continue
			}
			e, err := Decode(m.data)
			if err != nil {
				if m.term != nil {
					m.term() // never valid: do not deliver it again
				}
				continue
			}
			select {
			case ch <- e:
				if m.ack != nil {
					m.ack()
				}
			case <-sctx.Done():
				if m.nak != nil {
					m.nak()
				}
				return
			}
		}
	}()
	return ch, nil
}

// msg is a message of either kind of subscription.
type msg struct {
	data           []byte
	ack, term, nak func() // JetStream only
}
