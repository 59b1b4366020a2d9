package natsbus_test

import (
	"context"
	"fmt"
	"os"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/natsbus"
	"github.com/decnet/servicelive/servicelivetest"
)

func ExampleNew() {
	// A NATS server with JetStream (here in-process; usually nats://host:4222).
	dir, _ := os.MkdirTemp("", "natsbus-example")
	defer os.RemoveAll(dir)
	srv, _ := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	srv.Start()
	defer srv.Shutdown()
	srv.ReadyForConnections(10e9)

	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1))
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	bus, err := natsbus.New(nc, natsbus.WithJetStream("DECKY"))
	if err != nil {
		panic(err)
	}
	defer bus.Close()

	// A dashboard's side: the removals of every decky.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	removed, err := bus.Subscribe(ctx, "decky.*.service_removed")
	if err != nil {
		panic(err)
	}

	// The orchestrator's side: a Manager publishing on the bus.
	store := servicelive.NewMemoryStore(map[string][]servicelive.Decky{"": {{Name: "web1", Image: "decnet/base", Services: []string{"ssh"}}}})
	reg, _ := servicelive.NewRegistry(servicelive.Service{Name: "ssh", Image: "decnet/ssh"})
	m, err := servicelive.New(store, &servicelivetest.Composer{Lenient: true}, reg, servicelive.WithBus(bus))
	if err != nil {
		panic(err)
	}
	defer m.Close(context.Background()) // publishes what the broker refused, before bus.Close
	if _, err := m.RemoveService(ctx, servicelive.FleetDecky("web1"), "ssh"); err != nil {
		panic(err)
	}

	e := <-removed
	fmt.Println(e.Topic(), e.Service, e.Services, len(e.ID))
	// Output: decky.web1.service_removed ssh [] 36
}
