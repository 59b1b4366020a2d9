package sqlstore_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/sqlstore"
)

// Open a store in an SQLite file, put a decky, update it and read it back:
// config values keep their Go types.
func ExampleOpen() {
	dir, err := os.MkdirTemp("", "sqlstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	s, err := sqlstore.Open(ctx, "sqlite", filepath.Join(dir, "state.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	if err := s.Put(ctx, "", servicelive.Decky{Name: "web1", Image: "alpine:3.20"}); err != nil {
		log.Fatal(err)
	}
	d, err := s.Update(ctx, servicelive.FleetDecky("web1"), func(d *servicelive.Decky) error {
		d.Services = append(d.Services, "ssh")
		d.Config = map[string]servicelive.Config{"ssh": {"port": 2222, "users": []string{"root"}}}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(d.Name, d.Services)

	got, err := s.Get(ctx, servicelive.FleetDecky("web1"))
	if err != nil {
		log.Fatal(err)
	}
	port := got.Config["ssh"]["port"]
	fmt.Printf("port %v (%T), users %q\n", port, port, got.Config["ssh"]["users"])
	// Output:
	// web1 [ssh]
	// port 2222 (int), users ["root"]
}

// Hold a decky's lock around a read-modify-write that spans more than one
// Store call; every other Store on the database (in any process) that asks
// for the same decky's lock waits meanwhile.
func ExampleStore_LockDecky() {
	dir, err := os.MkdirTemp("", "sqlstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	s, err := sqlstore.Open(ctx, "sqlite", filepath.Join(dir, "state.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	ref := servicelive.TopologyDecky("lab", "gw")
	unlock, err := s.LockDecky(ctx, ref) // the decky need not exist
	if err != nil {
		log.Fatal(err)
	}
	if _, err := s.Get(ctx, ref); err != nil {
		fmt.Println("before:", err)
	}
	if err := s.Put(ctx, "lab", servicelive.Decky{Name: "gw"}); err != nil {
		log.Fatal(err)
	}
	unlock()

	ds, err := s.List(ctx, "lab")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("after:", len(ds), "decky in topology lab")
	// Output:
	// before: servicelive: topology lab: not found
	// after: 1 decky in topology lab
}
