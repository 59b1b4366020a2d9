package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/natsbus"
)

// natsFlushTimeout bounds, at exit, the publishing of the events the broker
// has not taken yet (they stay in the -state file's outbox otherwise).
const natsFlushTimeout = 10 * time.Second

// natsOptions are the flags of the NATS Bus.
type natsOptions struct {
	natsURL    string
	natsStream string
}

func (o *natsOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.natsURL, "nats", "", "NATS server URL to publish the events on (subjects decky.<decky>.<kind>); default: none")
	fs.StringVar(&o.natsStream, "nats-stream", "", "with -nats: JetStream stream to store the events in (created with subjects decky.> if missing); default: core NATS")
}

// openBus connects to the NATS server of -nats, if any: it returns the
// Manager's options and the function that, at exit, flushes what the
// Manager has left (before its deadline) and closes the Bus and the
// connection. A server that is down at start is retried in the background.
func (o *natsOptions) openBus(log *slog.Logger) ([]servicelive.Option, func(*servicelive.Manager) error, error) {
	if o.natsURL == "" {
		if o.natsStream != "" {
			return nil, nil, errors.New("-nats-stream needs -nats")
		}
		return nil, func(*servicelive.Manager) error { return nil }, nil
	}
	nc, err := nats.Connect(o.natsURL, nats.Name("servicelive httpapi"), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("nats disconnected", "error", err) }),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }))
	if err != nil {
		return nil, nil, fmt.Errorf("nats %s: %w", o.natsURL, err)
	}
	var opts []natsbus.Option
	if o.natsStream != "" {
		opts = append(opts, natsbus.WithJetStream(o.natsStream))
	}
	bus, err := natsbus.New(nc, opts...)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	log.Info("publishing events on nats", "url", o.natsURL, "stream", o.natsStream)
	closeBus := func(m *servicelive.Manager) error {
		ctx, cancel := context.WithTimeout(context.Background(), natsFlushTimeout)
		defer cancel()
		var errs []error
		if m != nil {
			errs = append(errs, m.Close(ctx))
		}
		errs = append(errs, bus.Close())
		nc.Close()
		return errors.Join(errs...)
	}
	return []servicelive.Option{servicelive.WithBus(bus)}, closeBus, nil
}
