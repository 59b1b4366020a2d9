package main

import (
	"io"
	"log/slog"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
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
	srv, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	opts, closeBus, err = (&natsOptions{natsURL: srv.ClientURL(), natsStream: "DECKY"}).openBus(log)
	if err != nil || len(opts) != 1 {
		t.Fatalf("-nats: %d options, %v", len(opts), err)
	}
	if err := closeBus(nil); err != nil {
		t.Errorf("close: %v", err)
	}
}
