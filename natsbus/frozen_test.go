package natsbus_test

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/internal/natstest"
	"github.com/decnet/servicelive/natsbus"
)

// freezer is a TCP proxy to a server that can freeze: from then on it
// drops every byte both ways while keeping the connections open, as a
// server gone without a FIN (a host powered off, a partition) looks to a
// client until its pings time out.
type freezer struct {
	ln     net.Listener
	frozen atomic.Bool
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func newFreezer(t testing.TB, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, c, s)
			f.mu.Unlock()
			f.wg.Add(2)
			go f.pipe(c, s)
			go f.pipe(s, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

func (f *freezer) pipe(dst io.Writer, src io.Reader) {
	defer f.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if f.frozen.Load() {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (f *freezer) url() string { return "nats://" + f.ln.Addr().String() }

// TestCorePublishNoticesFrozenServer: on core NATS, Publish flushes, so a
// server that no longer answers (the connection still CONNECTED) fails
// the Publish at ctx's deadline instead of reporting success for a
// message that only sits in a buffer.
func TestCorePublishNoticesFrozenServer(t *testing.T) {
	br := natstest.Start(t)
	f := newFreezer(t, br.URL()[len("nats://"):])
	nc := connect(t, f.url())
	waitStatus(t, nc, nats.RECONNECTING) // connected
	bus := newBus(t, nc, "", natsbus.WithFlushTimeout(100*time.Millisecond))
	e := servicelive.Event{ID: servicelive.NewEventID(), Kind: servicelive.ServiceAdded, Decky: "web1", Service: "ssh"}
	ctx := context.Background()
	if err := bus.Publish(ctx, e); err != nil {
		t.Fatal(err)
	}
	f.frozen.Store(true)
	pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := bus.Publish(pctx, e); err == nil {
		t.Fatal("core Publish to a server that no longer answers: nil error")
	}
	if st := nc.Status(); st != nats.CONNECTED {
		t.Fatalf("status %s: the test needs an undetected failure", st)
	}
}

// TestStreamConfig: New creates the stream with a 1 h duplicate window (or
// WithDuplicateWindow's), and refuses, unaltered, an existing stream with
// NoAck set.
func TestStreamConfig(t *testing.T) {
	ctx := context.Background()
	// jsOn returns a connection to a new server and its JetStream.
	jsOn := func() (*nats.Conn, jetstream.JetStream) {
		nc := connect(t, natstest.Start(t).URL())
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return nc, js
	}
	for _, want := range []time.Duration{0, 10 * time.Minute} {
		nc, js := jsOn()
		var opts []natsbus.Option
		if want != 0 {
			opts = append(opts, natsbus.WithDuplicateWindow(want))
		} else {
			want = time.Hour
		}
		newBus(t, nc, "DECKY", opts...)
		s, err := js.Stream(ctx, "DECKY")
		if err != nil {
			t.Fatal(err)
		}
		if got := s.CachedInfo().Config.Duplicates; got != want {
			t.Errorf("duplicate window %v, want %v", got, want)
		}
	}
	nc, js := jsOn()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "NOACK", Subjects: []string{"decky.>"}, NoAck: true}); err != nil {
		t.Fatal(err)
	}
	_, err := natsbus.New(nc, natsbus.WithJetStream("NOACK"))
	var mm *natsbus.StreamMismatchError
	if !errors.As(err, &mm) || !mm.NoAck || !slices.Equal(mm.Subjects, []string{"decky.>"}) {
		t.Fatalf("New on a NoAck stream: %v, want a *StreamMismatchError with NoAck", err)
	}
	s, err := js.Stream(ctx, "NOACK")
	if err != nil {
		t.Fatal(err)
	}
	if !s.CachedInfo().Config.NoAck {
		t.Error("the NoAck stream was altered")
	}
}
