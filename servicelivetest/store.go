package servicelivetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/decnet/servicelive"
)

// storeUpdaters is the number of goroutines TestStore runs at once against
// one decky, and storeUpdatesEach the number of Updates each of them makes.
const (
	storeUpdaters    = 32
	storeUpdatesEach = 8
)

// TestStore checks a servicelive.Store implementation against the Store
// contract, in subtests. newStore must return a new, independent store
// holding seed (keyed by topology ID, "" = the fleet; nil = nothing). Seeds
// never hold an empty topology, so a constructor can build the store with
// Put-like calls. newStore may use t for cleanup and to fail.
//
// It checks:
//   - Get of a decky, of a missing decky and of a missing topology (ErrNotFound);
//   - List: sorted by name, stable, fleet and topologies kept apart, an empty
//     fleet as an empty non-nil slice, a missing topology as ErrNotFound;
//   - Update: the change is stored and visible to Get and List; an error from
//     fn is returned unchanged (==) and nothing is written; a missing decky or
//     topology is ErrNotFound and fn is not called; fn cannot rename the decky;
//   - deep copies: mutating what Get, List or Update return, the seed, or the
//     *Decky fn was given after Update returns never changes the store;
//   - config values come back with their types: string, int, bool, []string;
//   - 32 goroutines making 8 Updates each on one decky, each appending a
//     token to its Services, lose no update;
//   - a cancelled context fails every method and writes nothing.
//
// Every fn TestStore passes to Update may run more than once (the contract
// allows it): each run starts over from a fresh copy of the stored decky.
//
// A store's own test calls it with its constructor:
//
//	func TestMyStore(t *testing.T) {
//		servicelivetest.TestStore(t, func(t *testing.T, seed map[string][]servicelive.Decky) servicelive.Store {
//			s := mystore.Open(filepath.Join(t.TempDir(), "state"))
//			for topology, deckies := range seed {
//				for _, d := range deckies {
//					if err := s.Put(context.Background(), topology, d); err != nil {
//						t.Fatal(err)
//					}
//				}
//			}
//			return s
//		})
//	}
func TestStore(t *testing.T, newStore func(t *testing.T, seed map[string][]servicelive.Decky) servicelive.Store) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, newStore func(*testing.T, map[string][]servicelive.Decky) servicelive.Store)
	}{
		{"Get", storeTestGet},
		{"List", storeTestList},
		{"Update", storeTestUpdate},
		{"UpdateError", storeTestUpdateError},
		{"UpdateMissing", storeTestUpdateMissing},
		{"UpdateRename", storeTestUpdateRename},
		{"DeepCopy", storeTestDeepCopy},
		{"ConfigTypes", storeTestConfigTypes},
		{"ConcurrentUpdates", storeTestConcurrentUpdates},
		{"CancelledContext", storeTestCancelled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, newStore) })
	}
}

// storeSeed returns a fresh seed: three fleet deckies given out of order and
// a topology with a decky of the same name as a fleet one.
func storeSeed() map[string][]servicelive.Decky {
	return map[string][]servicelive.Decky{
		"": {
			{
				Name: "web2", Hostname: "web2.corp", IP: "10.0.0.12", Image: "alpine:3.20",
				Services: []string{"http"},
				Config:   map[string]servicelive.Config{"http": {"port": 8080, "server": "nginx"}},
			},
			{
				Name: "web1", Hostname: "web1.corp", IP: "10.0.0.11", Image: "alpine:3.20",
				Services: []string{"ssh", "http"},
				Config: map[string]servicelive.Config{
					"ssh":  {"port": 22, "banner": "SSH-2.0-OpenSSH_9.6", "password_auth": true, "users": []string{"root", "admin"}},
					"http": {"port": 80},
				},
				Network: "decnet", Host: "engine-a",
			},
			{Name: "db1", Hostname: "db1.corp", IP: "10.0.0.21", Image: "debian:12"},
		},
		"t1": {
			{Name: "web1", IP: "192.168.1.5", Image: "alpine:3.20", Services: []string{"ftp"},
				Config: map[string]servicelive.Config{"ftp": {"anonymous": false}}},
			{Name: "gw", IP: "192.168.1.1", Image: "alpine:3.20"},
		},
	}
}

// storeSeedDecky returns the seed's decky name in topology.
func storeSeedDecky(t *testing.T, topology, name string) servicelive.Decky {
	t.Helper()
	for _, d := range storeSeed()[topology] {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("no seed decky %q in topology %q", name, topology)
	return servicelive.Decky{}
}

var (
	storeWeb1  = servicelive.FleetDecky("web1")
	storeT1Web = servicelive.TopologyDecky("t1", "web1")
)

func storeTestGet(t *testing.T, newStore func(*testing.T, map[string][]servicelive.Decky) servicelive.Store) {
	s := newStore(t, storeSeed())
	ctx := context.Background()
	tests := []struct {
		name    string
		ref     servicelive.Ref
		want    servicelive.Decky
		wantErr error
	}{
		{"fleet decky", storeWeb1, storeSeedDecky(t, "", "web1"), nil},
		{"fleet decky without services", servicelive.FleetDecky("db1"), storeSeedDecky(t, "", "db1"), nil},
		{"topology decky of a fleet name", storeT1Web, storeSeedDecky(t, "t1", "web1"), nil},
		{"missing decky", servicelive.FleetDecky("nope"), servicelive.Decky{}, servicelive.ErrNotFound},
		{"missing decky in topology", servicelive.TopologyDecky("t1", "web2"), servicelive.Decky{}, servicelive.ErrNotFound},
		{"missing topology", servicelive.TopologyDecky("t2", "web1"), servicelive.Decky{}, servicelive.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Get(ctx, tt.ref)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Get(%v) error = %v, want one matching %v", tt.ref, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Get(%v): %v", tt.ref, err)
			}
			storeCheckDecky(t, "Get("+tt.ref.String()+")", got, tt.want)
		})
	}
}

func storeTestList(t *testing.T, newStore func(*testing.T, map[string][]servicelive.Decky) servicelive.Store) {
	ctx := context.Background()
	s := newStore(t, storeSeed())
	tests := []struct {
		name      string
		store     servicelive.Store
		topology  string
		wantNames []string
		wantErr   error
	}{
		{"fleet sorted by name", s, "", []string{"db1", "web1", "web2"}, nil},
		{"topology", s, "t1", []string{"gw", "web1"}, nil},
		{"missing topology", s, "t2", nil, servicelive.ErrNotFound},
		{"empty store", newStore(t, nil), "", []string{}, nil},
		{"empty fleet beside a topology", newStore(t, map[string][]servicelive.Decky{"t1": storeSeed()["t1"]}), "", []string{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.store.List(ctx, tt.topology)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("List(%q) error = %v, want one matching %v", tt.topology, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("List(%q): %v", tt.topology, err)
			}
			if got == nil {
				t.Fatalf("List(%q) = nil, want a non-nil slice", tt.topology)
			}
			if names := storeNames(got); !slices.Equal(names, tt.wantNames) {
				t.Fatalf("List(%q) names = %q, want %q", tt.topology, names, tt.wantNames)
			}
			for _, d := range got {
				storeCheckDecky(t, "List("+tt.topology+")", d, storeSeedDecky(t, tt.topology, d.Name))
			}
			again, err := tt.store.List(ctx, tt.topology)
			if err != nil {
				t.Fatalf("List(%q) again: %v", tt.topology, err)
			}
			if !slices.Equal(storeNames(again), tt.wantNames) {
				t.Fatalf("List(%q) again names = %q, want %q", tt.topology, storeNames(again), tt.wantNames)
			}
		})
	}
}

func storeTestUpdate(t *testing.T, newStore func(*testing.T, map[string][]servicelive.Decky) servicelive.Store) {
	ctx := context.Background()
	tests := []struct {
		name string
		ref  servicelive.Ref
	}{
		{"fleet", storeWeb1},
		{"topology", storeT1Web},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, storeSeed())
			want := storeSeedDecky(t, tt.ref.Topology, tt.ref.Decky)
			want.Services = append(want.Services, "smtp")
			if want.Config == nil {
				want.Config = map[string]servicelive.Config{}
			}
			want.Config["smtp"] = servicelive.Config{"port": 25, "relay": false, "domains": []string{"corp"}}
			want.Hostname = "changed.corp"

			got, err := s.Update(ctx, tt.ref, func(d *servicelive.Decky) error {
				d.Services = append(d.Services, "smtp")
				if d.Config == nil {
					d.Config = map[string]servicelive.Config{}
				}
				d.Config["smtp"] = servicelive.Config{"port": 25, "relay": false, "domains": []string{"corp"}}
				d.Hostname = "changed.corp"
				return nil
			})
			if err != nil {
				t.Fatalf("Update(%v): %v", tt.ref, err)
			}
			storeCheckDecky(t, "Update result", got, want)
			stored, err := s.Get(ctx, tt.ref)
			if err != nil {
				t.Fatalf("Get after Update: %v", err)
			}
			storeCheckDecky(t, "Get after Update", stored, want)
			list, err := s.List(ctx, tt.ref.Topology)
			if err != nil {
				t.Fatalf("List after Update: %v", err)
			}
			for _, d := range list {
				if d.Name == tt.ref.Decky {
					storeCheckDecky(t, "List after Update", d, want)
				} else {
					storeCheckDecky(t, "List after Update, other decky", d, storeSeedDecky(t, tt.ref.Topology, d.Name))
				}
			}
			// The other scope's decky of the same name is untouched.
			other := storeT1Web
			if tt.ref == storeT1Web {
				other = storeWeb1
			}
			storeCheckStored(t, s, other, storeSeedDecky(t, other.Topology, other.Decky))
		})
	}
}

func storeTestUpdateError(t *testing.T, newStore func(*testing.T, map[string][]servicelive.Decky) servicelive.Store) {
	ctx := context.Background()
	s := newStore(t, storeSeed())
	fnErr := fmt.Errorf("refused by fn")
	_, err := s.Update(ctx, storeWeb1, func(d *servicelive.Decky) error {
		d.Services = append(d.Services, "smtp") // must not be written
		d.Config["ssh"]["port"] = 2222
		d.IP = "10.9.9.9"
		return fnErr
	})
	if err != fnErr { //nolint:errorlint // the contract is "unchanged", so == is the check
		t.Fatalf("Update error = %#v, want fn's error returned unchanged", err)
	}
	if !errors.Is(err, fnErr) {
		t.Fatalf("Update error = %v, want one matching fn's error", err)
	}
	storeCheckStored(t, s, storeWeb1, storeSeedDecky(t, "", "web1"))
}

func storeTestUpdateMissing(t *testing.T, newStore func(*testing.T, map[string][]servicelive.Decky) servicelive.Store) {
	ctx := context.Background()
	s := newStore(t, storeSeed())
	for _, ref := range []servicelive.Ref{
		servicelive.FleetDecky("nope"),
		servicelive.TopologyDecky("t1", "web2"),
		servicelive.TopologyDecky("t2", "web1"),
	} {
		t.Run(ref.String(), func(t *testing.T) {
			called := false
			_, err := s.Update(ctx, ref, func(*servicelive.Decky) error { called = true; return nil })
			if !errors.Is(err, servicelive.ErrNotFound) {
				t.Fatalf("Update(%v) error = %v, want one matching ErrNotFound", ref, err)
			}
			if called {
				t.Fatalf("Update(%v) called fn for a missing decky", ref)
			}
			if _, err := s.Get(ctx, ref); !errors.Is(err, servicelive.ErrNotFound) {
				t.Fatalf("Get(%v) after Update error = %v, want one matching ErrNotFound", ref, err)
			}
		})
	}
}

func storeTestUpdateRename(t *testing.T, newStore func(*testing.T, map[string][]servicelive.Decky) servicelive.Store) {
	ctx := context.Background()
	s := newStore(t, storeSeed())
	_, err := s.Update(ctx, storeWeb1, func(d *servicelive.Decky) error {
		d.Name = "web9"
		d.Services = append(d.Services, "smtp")
		return nil
	})
	if err == nil {
		t.Fatal("Update renaming the decky succeeded, want an error")
	}
	storeCheckStored(t, s, storeWeb1, storeSeedDecky(t, "", "web1"))
	if _, err := s.Get(ctx, servicelive.FleetDecky("web9")); !errors.Is(err, servicelive.ErrNotFound) {
		t.Fatalf("Get(fleet/web9) after a refused rename error = %v, want one matching ErrNotFound", err)
	}
}

func storeTestDeepCopy(t *testing.T, newStore func(*testing.T, map[string][]servicelive.Decky) servicelive.Store) {
	ctx := context.Background()
	tests := []struct {
		name string
		// mutate gets a store seeded with seed, mutates what it can reach and
		// returns the decky web1 should now hold.
		mutate func(t *testing.T, s servicelive.Store, seed map[string][]servicelive.Decky) servicelive.Decky
	}{
		{"seed", func(t *testing.T, _ servicelive.Store, seed map[string][]servicelive.Decky) servicelive.Decky {
			for i := range seed[""] {
				storeScribble(&seed[""][i])
			}
			return storeSeedDecky(t, "", "web1")
		}},
		{"Get result", func(t *testing.T, s servicelive.Store, _ map[string][]servicelive.Decky) servicelive.Decky {
			d, err := s.Get(ctx, storeWeb1)
			if err != nil {
				t.Fatal(err)
			}
			storeScribble(&d)
			return storeSeedDecky(t, "", "web1")
		}},
		{"List result", func(t *testing.T, s servicelive.Store, _ map[string][]servicelive.Decky) servicelive.Decky {
			ds, err := s.List(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			for i := range ds {
				storeScribble(&ds[i])
			}
			return storeSeedDecky(t, "", "web1")
		}},
		{"Update result and fn's decky", func(t *testing.T, s servicelive.Store, _ map[string][]servicelive.Decky) servicelive.Decky {
			var kept *servicelive.Decky
			got, err := s.Update(ctx, storeWeb1, func(d *servicelive.Decky) error {
				d.Services = append(d.Services, "smtp")
				d.Config["smtp"] = servicelive.Config{"domains": []string{"corp"}}
				kept = d
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			storeScribble(kept)
			storeScribble(&got)
			want := storeSeedDecky(t, "", "web1")
			want.Services = append(want.Services, "smtp")
			want.Config["smtp"] = servicelive.Config{"domains": []string{"corp"}}
			return want
		}},
		{"fn's decky of a failed Update", func(t *testing.T, s servicelive.Store, _ map[string][]servicelive.Decky) servicelive.Decky {
			fnErr := errors.New("no")
			var kept *servicelive.Decky
			if _, err := s.Update(ctx, storeWeb1, func(d *servicelive.Decky) error { kept = d; return fnErr }); err != fnErr { //nolint:errorlint
				t.Fatalf("Update error = %v, want %v", err, fnErr)
			}
			storeScribble(kept)
			return storeSeedDecky(t, "", "web1")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seed := storeSeed()
			s := newStore(t, seed)
			want := tt.mutate(t, s, seed)
			storeCheckStored(t, s, storeWeb1, want)
			storeCheckStored(t, s, servicelive.FleetDecky("web2"), storeSeedDecky(t, "", "web2"))
		})
	}
}

func storeTestConfigTypes(t *testing.T, newStore func(*testing.T, map[string][]servicelive.Decky) servicelive.Store) {
	ctx := context.Background()
	values := servicelive.Config{
		"string":        "SSH-2.0-OpenSSH_9.6 \"quoted\" <tag> é",
		"empty string":  "",
		"number string": "22",
		"int":           2222,
		"zero":          0,
		"negative":      -7,
		"big":           1<<53 + 1, // not representable as a float64
		"true":          true,
		"false":         false,
		"strings":       []string{"root", "admin", ""},
		"one string":    []string{"x"},
		"no strings":    []string{},
	}
	tests := []struct {
		name  string
		store func(t *testing.T) servicelive.Store
	}{
		{"seeded", func(t *testing.T) servicelive.Store {
			seed := storeSeed()
			seed[""][1].Config["types"] = values.Clone()
			return newStore(t, seed)
		}},
		{"updated", func(t *testing.T) servicelive.Store {
			s := newStore(t, storeSeed())
			if _, err := s.Update(ctx, storeWeb1, func(d *servicelive.Decky) error {
				d.Config["types"] = values.Clone()
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			return s
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.store(t)
			d, err := s.Get(ctx, storeWeb1)
			if err != nil {
				t.Fatal(err)
			}
			got := d.Config["types"]
			for k, want := range values {
				v, ok := got[k]
				if !ok {
					t.Errorf("config %q missing", k)
					continue
				}
				if reflect.TypeOf(v) != reflect.TypeOf(want) {
					t.Errorf("config %q = %#v (%T), want %#v (%T)", k, v, v, want, want)
					continue
				}
				if !storeEqualValue(v, want) {
					t.Errorf("config %q = %#v, want %#v", k, v, want)
				}
			}
			if len(got) != len(values) {
				t.Errorf("config has %d values, want %d: %#v", len(got), len(values), got)
			}
			// The seed's own values keep their types too.
			if port, ok := d.Config["ssh"]["port"].(int); !ok || port != 22 {
				t.Errorf("ssh port = %#v, want int 22", d.Config["ssh"]["port"])
			}
		})
	}
}

func storeTestConcurrentUpdates(t *testing.T, newStore func(*testing.T, map[string][]servicelive.Decky) servicelive.Store) {
	ctx := context.Background()
	s := newStore(t, storeSeed())
	var (
		wg     sync.WaitGroup
		failed atomic.Int32
	)
	for g := range storeUpdaters {
		wg.Go(func() {
			for i := range storeUpdatesEach {
				token := fmt.Sprintf("g%d-%d", g, i)
				if _, err := s.Update(ctx, storeWeb1, func(d *servicelive.Decky) error {
					d.Services = append(d.Services, token)
					return nil
				}); err != nil {
					failed.Add(1)
					t.Errorf("Update adding %s: %v", token, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		return
	}
	d, err := s.Get(ctx, storeWeb1)
	if err != nil {
		t.Fatal(err)
	}
	want := storeSeedDecky(t, "", "web1").Services
	if !slices.Equal(d.Services[:min(len(want), len(d.Services))], want) {
		t.Fatalf("services start with %q, want %q", d.Services[:min(len(want), len(d.Services))], want)
	}
	seen := make(map[string]bool)
	for _, svc := range d.Services[len(want):] {
		if seen[svc] {
			t.Errorf("token %s appears twice", svc)
		}
		seen[svc] = true
	}
	for g := range storeUpdaters {
		for i := range storeUpdatesEach {
			if token := fmt.Sprintf("g%d-%d", g, i); !seen[token] {
				t.Errorf("update adding %s was lost", token)
			}
		}
	}
	if n := len(d.Services) - len(want); n != storeUpdaters*storeUpdatesEach {
		t.Errorf("%d updates stored, want %d", n, storeUpdaters*storeUpdatesEach)
	}
}

func storeTestCancelled(t *testing.T, newStore func(*testing.T, map[string][]servicelive.Decky) servicelive.Store) {
	s := newStore(t, storeSeed())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		call func() error
	}{
		{"Get", func() error { _, err := s.Get(ctx, storeWeb1); return err }},
		{"List", func() error { _, err := s.List(ctx, ""); return err }},
		{"Update", func() error {
			_, err := s.Update(ctx, storeWeb1, func(d *servicelive.Decky) error {
				d.Services = append(d.Services, "smtp")
				return nil
			})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, context.Canceled) {
				t.Fatalf("%s with a cancelled context: error = %v, want one matching context.Canceled", tt.name, err)
			}
		})
	}
	storeCheckStored(t, s, storeWeb1, storeSeedDecky(t, "", "web1"))
}

// storeScribble changes every slice element and map entry d holds, in place,
// and the fields of d itself.
func storeScribble(d *servicelive.Decky) {
	for i := range d.Services {
		d.Services[i] = "scribbled"
	}
	for svc, cfg := range d.Config {
		for k, v := range cfg {
			if ss, ok := v.([]string); ok {
				for i := range ss {
					ss[i] = "scribbled"
				}
				continue
			}
			cfg[k] = "scribbled"
		}
		cfg["scribbled"] = true
		d.Config[svc] = cfg
	}
	if d.Config != nil {
		d.Config["scribbled"] = servicelive.Config{"x": 1}
	}
	d.Services = append(d.Services, "scribbled")
	d.Hostname = "scribbled"
}

// storeCheckStored fails t unless s holds want at ref.
func storeCheckStored(t *testing.T, s servicelive.Store, ref servicelive.Ref, want servicelive.Decky) {
	t.Helper()
	got, err := s.Get(context.Background(), ref)
	if err != nil {
		t.Fatalf("Get(%v): %v", ref, err)
	}
	storeCheckDecky(t, "stored "+ref.String(), got, want)
}

// storeCheckDecky fails t unless got equals want, nil and empty slices and
// maps being equal.
func storeCheckDecky(t *testing.T, what string, got, want servicelive.Decky) {
	t.Helper()
	if !storeEqualDecky(got, want) {
		t.Fatalf("%s =\n\t%#v\nwant\n\t%#v", what, got, want)
	}
}

func storeEqualDecky(a, b servicelive.Decky) bool {
	if a.Name != b.Name || a.Hostname != b.Hostname || a.IP != b.IP || a.Image != b.Image ||
		a.Network != b.Network || a.Host != b.Host || !slices.Equal(a.Services, b.Services) ||
		len(a.Config) != len(b.Config) {
		return false
	}
	for svc, ac := range a.Config {
		bc, ok := b.Config[svc]
		if !ok || len(ac) != len(bc) {
			return false
		}
		for k, av := range ac {
			bv, ok := bc[k]
			if !ok || !storeEqualValue(av, bv) {
				return false
			}
		}
	}
	return true
}

// storeEqualValue compares config values with their types.
func storeEqualValue(a, b any) bool {
	as, aok := a.([]string)
	bs, bok := b.([]string)
	if aok || bok {
		return aok && bok && slices.Equal(as, bs)
	}
	return reflect.TypeOf(a) == reflect.TypeOf(b) && a == b
}

func storeNames(ds []servicelive.Decky) []string {
	names := make([]string, len(ds))
	for i, d := range ds {
		names[i] = d.Name
	}
	return names
}
