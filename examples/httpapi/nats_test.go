package main

import (
	"io"
	"log/slog"
	"testing"

	"github.com/decnet/servicelive/internal/natstest"
)

func TestNATSFlags(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, _, err := (&natsOptions{natsStream: "DECKY"}).openBus(log); err == nil {
		t.Error("-nats-stream without -nats accepted")
	}
	opts, closeBus, err := (&natsOptions{}).openBus(log)
	if err != nil || len(opts) != 0 || closeBus(nil) != nil {
		t.Errorf("no -nats: %d options, %v", len(opts), err)
	}
	broker := natstest.Start(t)
	opts, closeBus, err = (&natsOptions{natsURL: broker.URL(), natsStream: "DECKY"}).openBus(log)
	if err != nil || len(opts) != 1 {
		t.Fatalf("-nats: %d options, %v", len(opts), err)
	}
	if err := closeBus(nil); err != nil {
		t.Errorf("close: %v", err)
	}
}
