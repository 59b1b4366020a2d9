package servicelive_test

import (
	"context"
	"fmt"
	"log"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
)

// Example adds a service to a decky and removes it, on the fake engine of
// servicelivetest. The README's Usage section quotes its body (see
// readme_test.go).
func Example() {
	ctx := context.Background()

	// The services deckies can run.
	reg, err := servicelive.NewRegistry(
		servicelive.Service{Name: "ssh", Image: "decnet/ssh:1", Ports: []int{22},
			Schema: []servicelive.Field{{Key: "banner", Type: servicelive.FieldString}}},
	)
	if err != nil {
		log.Fatal(err)
	}

	// The deckies. Put is on the concrete stores (MemoryStore, FileStore,
	// sqlstore), not on the Store interface; "" is the fleet.
	store := servicelive.NewMemoryStore(nil)
	err = store.Put(ctx, "", servicelive.Decky{Name: "web1", Image: "decnet/base:1", IP: "192.168.1.10"})
	if err != nil {
		log.Fatal(err)
	}

	// A subscriber to the events of every decky.
	bus := servicelive.NewLocalBus()
	sub, err := bus.Subscribe("decky.>")
	if err != nil {
		log.Fatal(err)
	}

	// The fake engine; dockercompose.New() returns the Docker one.
	composer := new(servicelivetest.Composer)
	m, err := servicelive.New(store, composer, reg, servicelive.WithBus(bus))
	if err != nil {
		log.Fatal(err)
	}

	// Deploy first: a service joins the network namespace of its decky's
	// running base container.
	if err := m.Deploy(ctx, ""); err != nil {
		log.Fatal(err)
	}
	web1 := servicelive.FleetDecky("web1")
	services, err := m.AddService(ctx, web1, "ssh",
		servicelive.WithConfig(servicelive.Config{"banner": "SSH-2.0-OpenSSH_9.6"}))
	fmt.Println("added:", services, err)
	fmt.Println("running:", composer.Running())
	services, err = m.RemoveService(ctx, web1, "ssh")
	fmt.Println("removed:", services, err)

	bus.Close() // sub.C() ends once its buffered events are read
	for e := range sub.C() {
		fmt.Println("event:", e.Topic(), e.Service, e.Services, e.ConfigKeys)
	}
	// Output:
	// added: [ssh] <nil>
	// running: [web1 web1-ssh]
	// removed: [] <nil>
	// event: decky.web1.service_added ssh [ssh] [banner]
	// event: decky.web1.service_removed ssh [] []
}
