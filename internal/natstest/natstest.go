// Package natstest runs a real NATS server in the test's process, for the
// tests of natsbus and of the examples that publish on NATS: JetStream on,
// its store in a temporary directory, listening on a free loopback port.
package natstest

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Broker is an in-process nats-server that can be stopped and started
// again on the same port and store, as a broker outage would.
type Broker struct {
	tb   testing.TB
	dir  string
	port int
	srv  *server.Server
}

// Start starts a broker, shut down when tb ends.
func Start(tb testing.TB) *Broker {
	tb.Helper()
	b := &Broker{tb: tb, dir: tb.TempDir(), port: -1}
	b.Restart()
	b.port = b.srv.Addr().(*net.TCPAddr).Port
	tb.Cleanup(b.Stop)
	return b
}

// Restart starts the server again after Stop (on the same port and store).
// It fails the test if the server is not ready within 10 s.
func (b *Broker) Restart() {
	b.tb.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: b.port, JetStream: true, StoreDir: b.dir,
		NoLog: true, NoSigs: true, MaxPayload: 1 << 20,
	})
	if err != nil {
		b.tb.Fatalf("nats server: %v", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		b.tb.Fatal("nats server not ready after 10 s")
	}
	b.srv = srv
}

// Stop shuts the server down and waits until it is down (a no-op when it
// is down already).
func (b *Broker) Stop() {
	if b.srv == nil {
		return
	}
	b.srv.Shutdown()
	b.srv.WaitForShutdown()
	b.srv = nil
}

// URL is the broker's client URL; it stays the same across restarts.
func (b *Broker) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", b.port) }

// Server is the running server, nil while stopped.
func (b *Broker) Server() *server.Server { return b.srv }
