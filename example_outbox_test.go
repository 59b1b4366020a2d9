package servicelive_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
)

// An event the Bus refuses is kept (in the Store's Outbox, or in memory for
// a MemoryStore) and published again; Close publishes what is left before
// its deadline.
func ExampleManager_Close() {
	store := servicelive.NewMemoryStore(map[string][]servicelive.Decky{"": {{Name: "web1", Image: "decnet/base"}}})
	reg, _ := servicelive.NewRegistry(servicelive.Service{Name: "ssh", Image: "decnet/ssh"})
	bus := &servicelivetest.Bus{}
	m, _ := servicelive.New(store, &servicelivetest.Composer{Lenient: true}, reg,
		servicelive.WithBus(bus), servicelive.WithRedelivery(time.Minute, time.Hour))

	bus.Fail(errors.New("broker down"))
	services, err := m.AddService(context.Background(), servicelive.FleetDecky("web1"), "ssh")
	fmt.Println(services, err, len(bus.Events())) // the call succeeds; its event waits

	bus.Fail(nil) // the broker is back
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fmt.Println(m.Close(ctx), bus.Topics())
	// Output:
	// [ssh] <nil> 0
	// <nil> [decky.web1.service_added]
}
