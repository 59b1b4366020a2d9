package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/internal/natstest"
	"github.com/decnet/servicelive/natsbus"
)

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestWatch runs watch against an in-process server and checks that it
// prints the events of its pattern, and only those.
func TestWatch(t *testing.T) {
	broker := natstest.Start(t)
	nc, err := nats.Connect(broker.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	bus, err := natsbus.New(nc, natsbus.WithJetStream("DECKY"))
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errs syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-nats", broker.URL(), "-stream", "DECKY", "-durable", "watch", "decky.*.service_removed"}, &out, &errs)
	}()
	at := time.Date(2026, 11, 30, 6, 45, 0, 123e6, time.UTC)
	for _, e := range []servicelive.Event{
		{ID: "a1", Time: at, Kind: servicelive.ServiceAdded, Decky: "web1", Service: "ssh", Services: []string{"ssh"}},
		{ID: "a2", Time: at, Kind: servicelive.ServiceRemoved, Decky: "web1", Service: "ssh", Topology: "lab", Services: []string{"http"}, Applied: true},
	} {
		if err := bus.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	want := "2026-11-30T06:45:00.123Z decky.web1.service_removed topology=lab service=ssh services=http id=a2\n"
	deadline := time.Now().Add(10 * time.Second)
	for out.String() != want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v (stderr %s)", err, errs.String())
	}
	if got := out.String(); got != want {
		t.Errorf("printed:\n%s\nwant:\n%s", got, want)
	}
	if !strings.Contains(errs.String(), "watching decky.*.service_removed") {
		t.Errorf("stderr: %q", errs.String())
	}
	for _, args := range [][]string{{"a", "b"}, {"decky.web*"}, {"-stream", "S"}} {
		if err := run(context.Background(), args, &out, &errs); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
}
