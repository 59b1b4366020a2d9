// Command watch prints the events of servicelive Managers publishing on
// NATS (package natsbus) as they arrive, one line each:
//
//	go run ./examples/watch -nats nats://127.0.0.1:4222 'decky.*.service_removed'
//	2026-11-30T06:45:00.123Z decky.web1.service_removed service=ssh services=http id=0193...
//
// The pattern (default "decky.>") uses NATS wildcards: "*" one token, ">"
// the rest. By default it listens on core NATS, from now on; with -stream
// and -durable it reads the JetStream stream through a durable consumer,
// from where that consumer left off (every event ever stored, the first
// time). -json prints each event's payload as published instead.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/nats-io/nats.go"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/natsbus"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "watch:", err)
		}
		stop()
		os.Exit(2)
	}
}

// run prints the events of the pattern args name until ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: watch [flags] [pattern]   (pattern default: decky.>)")
		fs.PrintDefaults()
	}
	url := fs.String("nats", nats.DefaultURL, "NATS server URL")
	stream := fs.String("stream", "", "JetStream stream of the events (with -durable)")
	durable := fs.String("durable", "", "durable consumer to read the stream through (needs -stream)")
	asJSON := fs.Bool("json", false, "print each event's JSON payload")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pattern := "decky.>"
	switch fs.NArg() {
	case 0:
	case 1:
		pattern = fs.Arg(0)
	default:
		return fmt.Errorf("one pattern at most, got %q", fs.Args())
	}
	if !servicelive.ValidPattern(pattern) {
		return fmt.Errorf("invalid pattern %q", pattern)
	}
	if (*stream == "") != (*durable == "") {
		return errors.New("-stream and -durable go together")
	}
	nc, err := nats.Connect(*url, nats.Name("servicelive watch"), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("nats %s: %w", *url, err)
	}
	defer nc.Close()
	var bopts []natsbus.Option
	var sopts []natsbus.SubscribeOption
	if *stream != "" {
		bopts = append(bopts, natsbus.WithJetStream(*stream))
		sopts = append(sopts, natsbus.Durable(*durable))
	}
	bus, err := natsbus.New(nc, bopts...)
	if err != nil {
		return err
	}
	defer bus.Close()
	events, err := bus.Subscribe(ctx, pattern, sopts...)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "watching %s on %s\n", pattern, nc.ConnectedUrlRedacted())
	for e := range events {
		if *asJSON {
			b, err := natsbus.Encode(e)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s\n", b)
			continue
		}
		fmt.Fprintln(stdout, format(e))
	}
	return nil
}

// format returns e on one line: its time, topic and fields.
func format(e servicelive.Event) string {
	var b strings.Builder
	b.WriteString(e.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00") + " " + e.Topic())
	if e.Topology != "" {
		b.WriteString(" topology=" + e.Topology)
	}
	b.WriteString(" service=" + e.Service + " services=" + strings.Join(e.Services, ","))
	if len(e.ConfigKeys) > 0 {
		b.WriteString(" config=" + strings.Join(e.ConfigKeys, ","))
	}
	if e.Kind == servicelive.ServiceConfigChanged {
		fmt.Fprintf(&b, " applied=%v", e.Applied)
	}
	b.WriteString(" id=" + e.ID)
	return b.String()
}
