package servicelive_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
)

// ExampleOptOut shows the hardened profile of a service that needs
// NET_ADMIN and a writable /var/lib/sensor, and one whose hook owns
// security_opt; and what Register refuses.
func ExampleOptOut() {
	reg, err := servicelive.NewRegistry(
		servicelive.Service{Name: "sensor", Image: "decnet/sensor:1", Ports: []int{2222},
			CapAdd:      []string{"NET_ADMIN"},
			Writable:    []string{"/var/lib/sensor"},
			MemoryLimit: 512 << 20,
			OptOut:      servicelive.OptOut{SecurityOpt: true},
		},
		servicelive.Service{Name: "ssh", Image: "decnet/ssh:1", Ports: []int{22}},
	)
	if err != nil {
		panic(err)
	}
	store := servicelive.NewMemoryStore(map[string][]servicelive.Decky{
		"": {{Name: "web1", Image: "decnet/base:1", Services: []string{"sensor", "ssh"}}},
	})
	m, err := servicelive.New(store, new(servicelivetest.Composer), reg)
	if err != nil {
		panic(err)
	}
	p, err := m.Project(context.Background(), "")
	if err != nil {
		panic(err)
	}
	for _, key := range []string{"web1", "web1-sensor", "web1-ssh"} {
		s := p.Services[key]
		fmt.Println(key, s.Restart, s.SecurityOpt, s.CapDrop, s.CapAdd, s.ReadOnly, s.Tmpfs, s.PidsLimit, s.MemLimit)
	}

	err = reg.Register(servicelive.Service{Name: "bad", Image: "x", CapAdd: []string{"ALL"}})
	fmt.Println(errors.Is(err, servicelive.ErrInvalidService))
	// Output:
	// web1 unless-stopped [no-new-privileges:true] [ALL] [] true [/tmp:rw,noexec,nosuid,nodev,size=1048576] 64 67108864
	// web1-sensor unless-stopped [] [ALL] [NET_ADMIN] true [/tmp:rw,noexec,nosuid,nodev,size=16777216 /var/lib/sensor:rw,noexec,nosuid,nodev,size=16777216] 256 536870912
	// web1-ssh unless-stopped [no-new-privileges:true] [ALL] [NET_BIND_SERVICE] true [/tmp:rw,noexec,nosuid,nodev,size=16777216] 256 268435456
	// true
}

// ExampleProfileError shows a Compose hook that shares the host's PID
// namespace: the render fails, naming the setting and the opt-out that
// would allow it.
func ExampleProfileError() {
	hostPID := func(_ servicelive.Decky, _ servicelive.Config, s *types.ServiceConfig) { s.Pid = "host" }
	reg, err := servicelive.NewRegistry(servicelive.Service{Name: "sensor", Image: "decnet/sensor:1", Compose: hostPID})
	if err != nil {
		panic(err)
	}
	store := servicelive.NewMemoryStore(map[string][]servicelive.Decky{
		"": {{Name: "web1", Image: "decnet/base:1", Services: []string{"sensor"}}},
	})
	m, err := servicelive.New(store, new(servicelivetest.Composer), reg)
	if err != nil {
		panic(err)
	}
	_, err = m.Project(context.Background(), "")
	var pe *servicelive.ProfileError
	fmt.Println(errors.Is(err, servicelive.ErrInvalidService), errors.As(err, &pe))
	fmt.Println(pe.Setting, pe.Value, pe.OptOut)
	// Output:
	// true true
	// pid host Namespaces
}
