package servicelive_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
)

func TestMemoryStore(t *testing.T) {
	t.Run("seeded", func(t *testing.T) {
		servicelivetest.TestStore(t, func(t *testing.T, seed map[string][]servicelive.Decky) servicelive.Store {
			return servicelive.NewMemoryStore(seed)
		})
	})
	t.Run("put", func(t *testing.T) {
		servicelivetest.TestStore(t, func(t *testing.T, seed map[string][]servicelive.Decky) servicelive.Store {
			s := servicelive.NewMemoryStore(nil)
			for topology, ds := range seed {
				for _, d := range ds {
					if err := s.Put(context.Background(), topology, d); err != nil {
						t.Fatalf("Put(%q, %s): %v", topology, d.Name, err)
					}
				}
			}
			return s
		})
	})
}

func TestMemoryStoreEmptyTopology(t *testing.T) {
	ctx := context.Background()
	s := servicelive.NewMemoryStore(map[string][]servicelive.Decky{"t1": nil})
	for _, topology := range []string{"", "t1"} {
		got, err := s.List(ctx, topology)
		if err != nil || got == nil || len(got) != 0 {
			t.Errorf("List(%q) = %#v, %v; want an empty slice", topology, got, err)
		}
	}
}

// storePutDeleter is what MemoryStore and FileStore add to Store.
type storePutDeleter interface {
	servicelive.Store
	Put(ctx context.Context, topology string, d servicelive.Decky) error
	Delete(ctx context.Context, ref servicelive.Ref) error
}

func TestMemoryStorePutDelete(t *testing.T) {
	testStorePutDelete(t, func(t *testing.T) storePutDeleter { return servicelive.NewMemoryStore(nil) })
}

// testStorePutDelete checks Put and Delete of a store newStore returns empty.
func testStorePutDelete(t *testing.T, newStore func(t *testing.T) storePutDeleter) {
	t.Helper()
	ctx := context.Background()
	web1 := servicelive.Decky{Name: "web1", Services: []string{"ssh"}, Config: map[string]servicelive.Config{"ssh": {"port": 22}}}

	t.Run("put creates and replaces", func(t *testing.T) {
		s := newStore(t)
		if err := s.Put(ctx, "t1", web1); err != nil {
			t.Fatal(err)
		}
		replaced := web1.Clone()
		replaced.Services = append(replaced.Services, "http")
		if err := s.Put(ctx, "t1", replaced); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, servicelive.TopologyDecky("t1", "web1"))
		if err != nil || len(got.Services) != 2 {
			t.Fatalf("Get after second Put = %#v, %v; want the replacement", got, err)
		}
		if ds, err := s.List(ctx, "t1"); err != nil || len(ds) != 1 {
			t.Fatalf("List(t1) = %#v, %v; want one decky", ds, err)
		}
		if ds, err := s.List(ctx, ""); err != nil || len(ds) != 0 {
			t.Fatalf("List(fleet) = %#v, %v; want none", ds, err)
		}
	})

	t.Run("put refuses", func(t *testing.T) {
		tests := []struct {
			name     string
			topology string
			d        servicelive.Decky
		}{
			{"bad decky name", "", servicelive.Decky{Name: "Web_1"}},
			{"empty decky name", "", servicelive.Decky{}},
			{"bad topology id", "t 1", web1},
			{"float config value", "", servicelive.Decky{Name: "web1", Config: map[string]servicelive.Config{"ssh": {"port": 22.5}}}},
			{"nil config value", "", servicelive.Decky{Name: "web1", Config: map[string]servicelive.Config{"ssh": {"port": nil}}}},
			{"[]any config value", "", servicelive.Decky{Name: "web1", Config: map[string]servicelive.Config{"ssh": {"users": []any{"root"}}}}},
			{"int64 config value", "", servicelive.Decky{Name: "web1", Config: map[string]servicelive.Config{"ssh": {"port": int64(22)}}}},
			{"invalid UTF-8 value", "", servicelive.Decky{Name: "web1", Config: map[string]servicelive.Config{"ssh": {"banner": "\xff"}}}},
			{"invalid UTF-8 hostname", "", servicelive.Decky{Name: "web1", Hostname: "a\xffb"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := newStore(t)
				if err := s.Put(ctx, tt.topology, tt.d); !errors.Is(err, servicelive.ErrInvalidService) {
					t.Fatalf("Put error = %v, want one matching ErrInvalidService", err)
				}
				if ds, err := s.List(ctx, ""); err != nil || len(ds) != 0 {
					t.Fatalf("List(fleet) after a refused Put = %#v, %v; want none", ds, err)
				}
			})
		}
	})

	t.Run("update refuses a bad value", func(t *testing.T) {
		s := newStore(t)
		if err := s.Put(ctx, "", web1); err != nil {
			t.Fatal(err)
		}
		_, err := s.Update(ctx, servicelive.FleetDecky("web1"), func(d *servicelive.Decky) error {
			d.Config["ssh"]["port"] = uint16(22)
			return nil
		})
		if !errors.Is(err, servicelive.ErrInvalidService) {
			t.Fatalf("Update error = %v, want one matching ErrInvalidService", err)
		}
		got, err := s.Get(ctx, servicelive.FleetDecky("web1"))
		if err != nil || got.Config["ssh"]["port"] != 22 {
			t.Fatalf("Get after a refused Update = %#v, %v; want the decky unchanged", got, err)
		}
	})

	t.Run("bad refs", func(t *testing.T) {
		s := newStore(t)
		for _, ref := range []servicelive.Ref{servicelive.FleetDecky("Bad"), servicelive.TopologyDecky("t 1", "web1")} {
			if _, err := s.Get(ctx, ref); !errors.Is(err, servicelive.ErrInvalidService) {
				t.Errorf("Get(%v) error = %v, want one matching ErrInvalidService", ref, err)
			}
			if err := s.Delete(ctx, ref); !errors.Is(err, servicelive.ErrInvalidService) {
				t.Errorf("Delete(%v) error = %v, want one matching ErrInvalidService", ref, err)
			}
		}
		if _, err := s.List(ctx, "t 1"); !errors.Is(err, servicelive.ErrInvalidService) {
			t.Errorf("List(bad id) error = %v, want one matching ErrInvalidService", err)
		}
	})

	t.Run("delete", func(t *testing.T) {
		s := newStore(t)
		for _, topology := range []string{"", "t1"} {
			if err := s.Put(ctx, topology, web1); err != nil {
				t.Fatal(err)
			}
		}
		ref := servicelive.TopologyDecky("t1", "web1")
		if err := s.Delete(ctx, ref); err != nil {
			t.Fatalf("Delete(%v): %v", ref, err)
		}
		if _, err := s.Get(ctx, ref); !errors.Is(err, servicelive.ErrNotFound) {
			t.Fatalf("Get after Delete error = %v, want one matching ErrNotFound", err)
		}
		if ds, err := s.List(ctx, "t1"); err != nil || len(ds) != 0 {
			t.Fatalf("List(t1) after deleting its last decky = %#v, %v; want an empty topology", ds, err)
		}
		if _, err := s.Get(ctx, servicelive.FleetDecky("web1")); err != nil {
			t.Fatalf("the fleet's web1 went with t1's: %v", err)
		}
		for _, missing := range []servicelive.Ref{ref, servicelive.TopologyDecky("t2", "web1")} {
			if err := s.Delete(ctx, missing); !errors.Is(err, servicelive.ErrNotFound) {
				t.Fatalf("Delete(%v) error = %v, want one matching ErrNotFound", missing, err)
			}
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := s.Put(cctx, "", web1); !errors.Is(err, context.Canceled) {
			t.Fatalf("Put with a cancelled context: %v", err)
		}
		if err := s.Delete(cctx, servicelive.FleetDecky("web1")); !errors.Is(err, context.Canceled) {
			t.Fatalf("Delete with a cancelled context: %v", err)
		}
	})

	t.Run("error messages", func(t *testing.T) {
		s := newStore(t)
		_, err := s.Get(ctx, servicelive.FleetDecky("web1"))
		if got, want := fmt.Sprint(err), "servicelive: decky fleet/web1: not found"; got != want {
			t.Errorf("Get error = %q, want %q", got, want)
		}
		_, err = s.List(ctx, "t9")
		if got, want := fmt.Sprint(err), "servicelive: topology t9: not found"; got != want {
			t.Errorf("List error = %q, want %q", got, want)
		}
	})
}

// storeDeckies returns n deckies of 5 services each, with config.
func storeDeckies(n int) []servicelive.Decky {
	ds := make([]servicelive.Decky, n)
	for i := range ds {
		ds[i] = servicelive.Decky{
			Name:     fmt.Sprintf("decky-%04d", i),
			Hostname: fmt.Sprintf("host%d.corp.example", i),
			IP:       fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
			Image:    "ghcr.io/decnet/base:1.4.2",
			Services: []string{"ssh", "http", "ftp", "smtp", "telnet"},
			Config: map[string]servicelive.Config{
				"ssh":    {"port": 22, "banner": "SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13", "password_auth": true, "users": []string{"root", "admin", "ubuntu"}},
				"http":   {"port": 80, "server": "nginx/1.24.0", "tls": false},
				"ftp":    {"port": 21, "anonymous": true},
				"smtp":   {"port": 25, "domains": []string{"corp.example"}},
				"telnet": {"port": 23},
			},
			Network: "decnet",
		}
	}
	return ds
}

func BenchmarkMemoryStoreUpdate(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ctx := context.Background()
			ds := storeDeckies(n)
			s := servicelive.NewMemoryStore(map[string][]servicelive.Decky{"": ds})
			i := 0
			for b.Loop() {
				ref := servicelive.FleetDecky(ds[i%n].Name)
				i++
				if _, err := s.Update(ctx, ref, func(d *servicelive.Decky) error {
					d.Config["http"]["port"] = i
					return nil
				}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkMemoryStoreGet(b *testing.B) {
	ctx := context.Background()
	ds := storeDeckies(1000)
	s := servicelive.NewMemoryStore(map[string][]servicelive.Decky{"": ds})
	i := 0
	for b.Loop() {
		if _, err := s.Get(ctx, servicelive.FleetDecky(ds[i%len(ds)].Name)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func ExampleMemoryStore() {
	ctx := context.Background()
	s := servicelive.NewMemoryStore(map[string][]servicelive.Decky{
		"": {{Name: "web1", Services: []string{"ssh"}}},
	})
	d, err := s.Update(ctx, servicelive.FleetDecky("web1"), func(d *servicelive.Decky) error {
		d.Services = append(d.Services, "http")
		return nil
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(d.Services)

	_, err = s.Get(ctx, servicelive.FleetDecky("web2"))
	fmt.Println(err, errors.Is(err, servicelive.ErrNotFound))
	// Output:
	// [ssh http]
	// servicelive: decky fleet/web2: not found true
}
