package servicelivetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/decnet/servicelive"
)

// storeUpdaters is the number of goroutines TestStore runs at once against
// one decky, and storeUpdatesEach the number of Updates each of them makes.
const (
	storeUpdaters    = 32
	storeUpdatesEach = 8
)

// StoreOption configures TestStore. The With functions of this package
// make them (WithReopen); no other package can.
type StoreOption interface {
	applyStore(*storeSuite)
}

// storeOption is the StoreOption the With functions return.
type storeOption func(*storeSuite)

func (o storeOption) applyStore(c *storeSuite) { o(c) }

// WithReopen gives TestStore a second handle on each store newStore returns,
// so that it also checks what two handles (as two processes would) see of
// each other's Updates and locks. reopen must return a new handle on the
// data of s, as independent of s as a handle in another process would be;
// for a FileStore, servicelive.OpenFileStore(s.(*servicelive.FileStore).Path()).
// When s is a servicelive.DeckyLocker, the new handle must be one too and
// share s's locks. reopen may use t to clean up (closing the handle) and to
// fail.
func WithReopen(reopen func(t *testing.T, s servicelive.Store) servicelive.Store) StoreOption {
	return storeOption(func(c *storeSuite) {
		c.reopen = reopen
		c.reopenNil = reopen == nil
	})
}

// storeSuite is what every check of TestStore gets: how to make a store and
// the options.
type storeSuite struct {
	newStore  func(*testing.T, map[string][]servicelive.Decky) servicelive.Store
	reopen    func(*testing.T, servicelive.Store) servicelive.Store // nil: no WithReopen
	reopenNil bool                                                  // WithReopen(nil) was given
}

// handles returns a new store holding seed and, with WithReopen, a second
// handle on it.
func (c *storeSuite) handles(t *testing.T, seed map[string][]servicelive.Decky) []servicelive.Store {
	t.Helper()
	s := c.newStore(t, seed)
	if c.reopen == nil {
		return []servicelive.Store{s}
	}
	other := c.reopen(t, s)
	if other == nil {
		t.Fatal("the reopen function of WithReopen returned a nil store")
	}
	return []servicelive.Store{s, other}
}

// needReopen skips t without WithReopen.
func (c *storeSuite) needReopen(t *testing.T) {
	t.Helper()
	if c.reopen == nil {
		t.Skip("needs a second handle on the store: pass WithReopen to TestStore")
	}
}

// twoHandles is handles for a check that needs two; it skips t without
// WithReopen.
func (c *storeSuite) twoHandles(t *testing.T, seed map[string][]servicelive.Decky) (a, b servicelive.Store) {
	t.Helper()
	c.needReopen(t)
	hs := c.handles(t, seed)
	return hs[0], hs[1]
}

// storeHandleName names handle i of storeSuite.handles in messages.
func storeHandleName(i int) string {
	if i == 0 {
		return "store"
	}
	return "reopened handle"
}

// TestStore checks a servicelive.Store implementation against the Store
// contract, in subtests. newStore must return a new, independent store
// holding seed (keyed by topology ID, "" = the fleet; nil = nothing). Seeds
// never hold an empty topology, so a constructor can build the store with
// Put-like calls. newStore may use t for cleanup and to fail. When a stored
// decky is not the expected one, the failure shows a diff of the two.
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
//   - when the store is a servicelive.Outbox: appended events come back by
//     ID, whole, limited, an ID appended twice once; deleted ones are gone
//     (unknown IDs ignored); with WithReopen, another handle sees them and
//     each handle gets back the events it was given, and, when the store is
//     a servicelive.OutboxReleaser, all of them once the first released its
//     claims;
//   - Get and List running in goroutines while others Update the same decky
//     and others: every decky read is whole (each Update writes several
//     fields from one counter, and a reader checks that they agree), no
//     reader sees a decky go back to an older value, and no Update is lost.
//     Run it with -race: a store that reads without its lock fails there;
//   - a cancelled context fails every method and writes nothing.
//
// With WithReopen, on two handles of one store:
//   - Updates made from both at once, by several goroutines each appending a
//     token to a decky's Services, lose nothing: every token is there once;
//   - an Update through either handle is seen by Get and List through the
//     other, even after the other has read the decky (no stale copy);
//   - the concurrent reads above run on both handles.
//
// When the store is a servicelive.DeckyLocker (checked by type assertion;
// the checks are skipped otherwise), on both handles with WithReopen:
//   - LockDecky excludes: goroutines taking one decky's lock in a loop never
//     find another holder in their critical section;
//   - the locks of different deckies do not block each other: another decky,
//     the decky of the same name in the fleet and in a topology or another
//     topology, topology IDs that differ only in case, names that join alike;
//   - a waiter whose ctx ends (deadline, cancel, or done already) gives up
//     within 2 s with an error matching ctx.Err(), while another holds the
//     lock, and the lock works afterwards;
//   - a decky that does not exist can be locked, and locking it creates
//     neither the decky nor its topology;
//   - unlock releases: the next LockDecky succeeds at once, and a waiter
//     blocked in LockDecky gets the lock;
//   - Get, List and Update of a decky work while its lock is held (the
//     Manager updates the store with the lock held).
//
// Every fn TestStore passes to Update may run more than once (the contract
// allows it): each run starts over from a fresh copy of the stored decky.
//
// A store's own test calls it with its constructor, and with WithReopen
// when handles can share one store. FileStore's:
//
//	func TestFileStore(t *testing.T) {
//		servicelivetest.TestStore(t,
//			func(t *testing.T, seed map[string][]servicelive.Decky) servicelive.Store {
//				s, err := servicelive.OpenFileStore(filepath.Join(t.TempDir(), "state.json"))
//				if err != nil {
//					t.Fatal(err)
//				}
//				for topology, deckies := range seed {
//					for _, d := range deckies {
//						if err := s.Put(context.Background(), topology, d); err != nil {
//							t.Fatal(err)
//						}
//					}
//				}
//				return s
//			},
//			servicelivetest.WithReopen(func(t *testing.T, s servicelive.Store) servicelive.Store {
//				other, err := servicelive.OpenFileStore(s.(*servicelive.FileStore).Path())
//				if err != nil {
//					t.Fatal(err)
//				}
//				return other
//			}),
//		)
//	}
func TestStore(t *testing.T, newStore func(t *testing.T, seed map[string][]servicelive.Decky) servicelive.Store, opts ...StoreOption) {
	t.Helper()
	c := &storeSuite{newStore: newStore}
	for _, o := range opts {
		if o == nil {
			t.Fatal("servicelivetest: TestStore given a nil StoreOption")
		}
		o.applyStore(c)
	}
	if c.reopenNil {
		t.Fatal("servicelivetest: WithReopen given a nil function")
	}
	tests := []struct {
		name string
		run  func(t *testing.T, c *storeSuite)
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
		{"ConcurrentReads", storeTestConcurrentReads},
		{"CancelledContext", storeTestCancelled},
		{"TwoHandlesUpdates", storeTestTwoHandlesUpdates},
		{"TwoHandlesVisible", storeTestTwoHandlesVisible},
		{"LockDecky", storeTestLockDecky},
		{"Outbox", storeTestOutbox},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, c) })
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

func storeTestGet(t *testing.T, c *storeSuite) {
	s := c.newStore(t, storeSeed())
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

func storeTestList(t *testing.T, c *storeSuite) {
	ctx := context.Background()
	s := c.newStore(t, storeSeed())
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
		{"empty store", c.newStore(t, nil), "", []string{}, nil},
		{"empty fleet beside a topology", c.newStore(t, map[string][]servicelive.Decky{"t1": storeSeed()["t1"]}), "", []string{}, nil},
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

func storeTestUpdate(t *testing.T, c *storeSuite) {
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
			s := c.newStore(t, storeSeed())
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

func storeTestUpdateError(t *testing.T, c *storeSuite) {
	ctx := context.Background()
	s := c.newStore(t, storeSeed())
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

func storeTestUpdateMissing(t *testing.T, c *storeSuite) {
	ctx := context.Background()
	s := c.newStore(t, storeSeed())
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

func storeTestUpdateRename(t *testing.T, c *storeSuite) {
	ctx := context.Background()
	s := c.newStore(t, storeSeed())
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

func storeTestDeepCopy(t *testing.T, c *storeSuite) {
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
			s := c.newStore(t, seed)
			want := tt.mutate(t, s, seed)
			storeCheckStored(t, s, storeWeb1, want)
			storeCheckStored(t, s, servicelive.FleetDecky("web2"), storeSeedDecky(t, "", "web2"))
		})
	}
}

func storeTestConfigTypes(t *testing.T, c *storeSuite) {
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
			return c.newStore(t, seed)
		}},
		{"updated", func(t *testing.T) servicelive.Store {
			s := c.newStore(t, storeSeed())
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

func storeTestConcurrentUpdates(t *testing.T, c *storeSuite) {
	s := c.newStore(t, storeSeed())
	want := storeRunTokenUpdates(t, []servicelive.Store{s}, storeWeb1, storeUpdaters, storeUpdatesEach)
	if t.Failed() {
		return
	}
	storeCheckTokens(t, storeHandleName(0), s, storeWeb1, storeSeedDecky(t, "", "web1").Services, want)
}

// storeRunTokenUpdates starts perHandle goroutines on each of hs, each
// making each Updates of ref that append a token of its own to the decky's
// Services, and waits for them. It returns every token, in no order.
func storeRunTokenUpdates(t *testing.T, hs []servicelive.Store, ref servicelive.Ref, perHandle, each int) []string {
	t.Helper()
	ctx := context.Background()
	var (
		wg     sync.WaitGroup
		tokens []string
	)
	for h, s := range hs {
		for g := range perHandle {
			mine := make([]string, each)
			for i := range mine {
				mine[i] = fmt.Sprintf("h%d-g%d-%d", h, g, i)
			}
			tokens = append(tokens, mine...)
			wg.Go(func() {
				for _, token := range mine {
					if _, err := s.Update(ctx, ref, func(d *servicelive.Decky) error {
						d.Services = append(d.Services, token)
						return nil
					}); err != nil {
						t.Errorf("Update adding %s through the %s: %v", token, storeHandleName(h), err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	return tokens
}

// storeCheckTokens fails t unless the Services of the decky s (the handle
// named handle) holds at ref are base followed by every one of tokens, once
// each, in any order.
func storeCheckTokens(t *testing.T, handle string, s servicelive.Store, ref servicelive.Ref, base, tokens []string) {
	t.Helper()
	d, err := s.Get(context.Background(), ref)
	if err != nil {
		t.Fatalf("Get(%v) through the %s: %v", ref, handle, err)
	}
	if n := min(len(base), len(d.Services)); !slices.Equal(d.Services[:n], base) {
		t.Fatalf("%v through the %s: services start with %q, want %q", ref, handle, d.Services[:n], base)
	}
	seen := make(map[string]int)
	for _, svc := range d.Services[len(base):] {
		seen[svc]++
	}
	var lost, twice []string
	for _, token := range tokens {
		switch seen[token] {
		case 0:
			lost = append(lost, token)
		case 1:
		default:
			twice = append(twice, token)
		}
		delete(seen, token)
	}
	if len(lost) > 0 {
		t.Errorf("%v through the %s: %d of %d updates lost, those adding %s", ref, handle, len(lost), len(tokens), storeSome(lost))
	}
	if len(twice) > 0 {
		t.Errorf("%v through the %s: %d tokens stored more than once: %s", ref, handle, len(twice), storeSome(twice))
	}
	if len(seen) > 0 {
		t.Errorf("%v through the %s: services hold %s, which no update added", ref, handle, storeSome(slices.Sorted(maps.Keys(seen))))
	}
}

// storeSome quotes the first few of ss, for a message.
func storeSome(ss []string) string {
	const most = 8
	if len(ss) <= most {
		return fmt.Sprintf("%q", ss)
	}
	return fmt.Sprintf("%q and %d more", ss[:most], len(ss)-most)
}

// The shape of ConcurrentReads: storeGenUpdaters goroutines make
// storeGenUpdates Updates each of every decky in storeGenRefs, while
// storeGenReaders goroutines Get and List.
const (
	storeGenUpdaters = 3
	storeGenUpdates  = 8
	storeGenReaders  = 4
)

// storeGenRefs are the deckies ConcurrentReads updates: two of the fleet and
// the topology decky that has a fleet decky's name.
var storeGenRefs = []servicelive.Ref{storeWeb1, servicelive.FleetDecky("web2"), storeT1Web}

// storeGenOf returns the generation of d in ConcurrentReads, as its config
// tells it: 0 for a decky as seeded.
func storeGenOf(d servicelive.Decky) int {
	n, _ := d.Config["gen"]["n"].(int)
	return n
}

// storeSetGen moves d, a decky at generation storeGenOf(*d), to generation
// n: its hostname, last service and "gen" config all name n, so that a decky
// holding fields of two generations (a torn read) tells itself apart.
func storeSetGen(d *servicelive.Decky, n int) {
	if storeGenOf(*d) > 0 && len(d.Services) > 0 {
		d.Services = d.Services[:len(d.Services)-1]
	}
	tag := fmt.Sprintf("gen-%d", n)
	d.Hostname = tag + ".corp"
	d.Services = append(d.Services, tag)
	if d.Config == nil {
		d.Config = make(map[string]servicelive.Config)
	}
	d.Config["gen"] = servicelive.Config{"n": n, "tags": []string{tag}}
}

// storeGen returns seed at generation n.
func storeGen(seed servicelive.Decky, n int) servicelive.Decky {
	d := seed.Clone()
	if n > 0 {
		storeSetGen(&d, n)
	}
	return d
}

// storeGenReader checks the deckies one reader of ConcurrentReads sees.
type storeGenReader struct {
	seeds map[servicelive.Ref]servicelive.Decky // every decky of the seed
	last  map[servicelive.Ref]int               // the generation last seen
}

// check returns an error unless d, read at ref, is a whole generation, not
// older than the one this reader saw before.
func (r *storeGenReader) check(ref servicelive.Ref, d servicelive.Decky) error {
	seed, ok := r.seeds[ref]
	if !ok {
		return fmt.Errorf("%v is not in the seed", ref)
	}
	n := storeGenOf(d)
	if diff := storeDiff(storeGen(seed, n), d); diff != "" {
		return fmt.Errorf("torn decky %v: its config says generation %d, but it is not that generation (-want +got):\n%s", ref, n, diff)
	}
	if n < r.last[ref] {
		return fmt.Errorf("decky %v went back from generation %d to %d", ref, r.last[ref], n)
	}
	r.last[ref] = n
	return nil
}

// read makes one round of reads on s: Get of every updated decky, or (odd
// rounds) List of the fleet and of t1.
func (r *storeGenReader) read(ctx context.Context, s servicelive.Store, round int) error {
	if round%2 == 0 {
		for _, ref := range storeGenRefs {
			d, err := s.Get(ctx, ref)
			if err != nil {
				return fmt.Errorf("Get(%v): %w", ref, err)
			}
			if err := r.check(ref, d); err != nil {
				return fmt.Errorf("read by Get: %w", err)
			}
		}
		return nil
	}
	for _, topology := range []string{"", "t1"} {
		ds, err := s.List(ctx, topology)
		if err != nil {
			return fmt.Errorf("List(%q): %w", topology, err)
		}
		var want []string
		for _, d := range storeSeed()[topology] {
			want = append(want, d.Name)
		}
		slices.Sort(want)
		if names := storeNames(ds); !slices.Equal(names, want) {
			return fmt.Errorf("List(%q) names = %q, want %q", topology, names, want)
		}
		for _, d := range ds {
			if err := r.check(servicelive.Ref{Topology: topology, Decky: d.Name}, d); err != nil {
				return fmt.Errorf("read by List(%q): %w", topology, err)
			}
		}
	}
	return nil
}

func storeTestConcurrentReads(t *testing.T, c *storeSuite) {
	ctx := context.Background()
	hs := c.handles(t, storeSeed())
	seeds := make(map[servicelive.Ref]servicelive.Decky)
	for topology, ds := range storeSeed() {
		for _, d := range ds {
			seeds[servicelive.Ref{Topology: topology, Decky: d.Name}] = d
		}
	}

	var updaters, readers sync.WaitGroup
	done := make(chan struct{})
	for r := range storeGenReaders {
		h := r % len(hs)
		readers.Go(func() {
			reader := &storeGenReader{seeds: seeds, last: make(map[servicelive.Ref]int)}
			for round := 0; ; round++ {
				if err := reader.read(ctx, hs[h], round); err != nil {
					t.Errorf("reader %d on the %s: %v", r, storeHandleName(h), err)
					return
				}
				select {
				case <-done:
					return
				default:
				}
			}
		})
	}
	for _, ref := range storeGenRefs {
		for g := range storeGenUpdaters {
			h := g % len(hs)
			updaters.Go(func() {
				for range storeGenUpdates {
					got, err := hs[h].Update(ctx, ref, func(d *servicelive.Decky) error {
						storeSetGen(d, storeGenOf(*d)+1)
						return nil
					})
					if err != nil {
						t.Errorf("Update(%v) through the %s: %v", ref, storeHandleName(h), err)
						return
					}
					if diff := storeDiff(storeGen(seeds[ref], storeGenOf(got)), got); diff != "" {
						t.Errorf("Update(%v) through the %s returned a torn decky (-want +got):\n%s", ref, storeHandleName(h), diff)
						return
					}
				}
			})
		}
	}
	updaters.Wait()
	close(done)
	readers.Wait()
	if t.Failed() {
		return
	}
	for h, s := range hs {
		for _, ref := range storeGenRefs {
			got, err := s.Get(ctx, ref)
			if err != nil {
				t.Fatalf("Get(%v) through the %s: %v", ref, storeHandleName(h), err)
			}
			// Every Update moved the decky one generation on: none was lost.
			const total = storeGenUpdaters * storeGenUpdates
			if n := storeGenOf(got); n != total {
				t.Errorf("%v through the %s: generation %d after %d Updates: %d of them lost", ref, storeHandleName(h), n, total, total-n)
			}
			storeCheckDecky(t, fmt.Sprintf("%v through the %s after the updates", ref, storeHandleName(h)), got, storeGen(seeds[ref], total))
		}
	}
}

// The shape of TwoHandlesUpdates: storeTwoUpdaters goroutines on each handle
// make storeTwoUpdates Updates each.
const (
	storeTwoUpdaters = 4
	storeTwoUpdates  = 4
)

func storeTestTwoHandlesUpdates(t *testing.T, c *storeSuite) {
	c.needReopen(t)
	for _, ref := range []servicelive.Ref{storeWeb1, storeT1Web} {
		t.Run(ref.String(), func(t *testing.T) {
			a, b := c.twoHandles(t, storeSeed())
			hs := []servicelive.Store{a, b}
			want := storeRunTokenUpdates(t, hs, ref, storeTwoUpdaters, storeTwoUpdates)
			if t.Failed() {
				return
			}
			base := storeSeedDecky(t, ref.Topology, ref.Decky).Services
			for h, s := range hs {
				storeCheckTokens(t, storeHandleName(h), s, ref, base, want)
			}
			// The other scope's decky of the same name is untouched.
			other := storeT1Web
			if ref == storeT1Web {
				other = storeWeb1
			}
			storeCheckStored(t, b, other, storeSeedDecky(t, other.Topology, other.Decky))
		})
	}
}

func storeTestTwoHandlesVisible(t *testing.T, c *storeSuite) {
	c.needReopen(t)
	ctx := context.Background()
	for _, ref := range []servicelive.Ref{storeWeb1, storeT1Web} {
		t.Run(ref.String(), func(t *testing.T) {
			a, b := c.twoHandles(t, storeSeed())
			hs := []servicelive.Store{a, b}
			want := storeSeedDecky(t, ref.Topology, ref.Decky)
			for from := range hs {
				to := 1 - from
				// to reads the decky first: a handle that keeps what it read
				// and serves it again after another handle's Update fails.
				storeCheckVisible(t, hs[to], storeHandleName(to)+" before the update", ref, want)

				svc := []string{"smtp", "pop3"}[from]
				got, err := hs[from].Update(ctx, ref, func(d *servicelive.Decky) error {
					d.Hostname = "via-" + svc + ".corp"
					d.Services = append(d.Services, svc)
					if d.Config == nil {
						d.Config = make(map[string]servicelive.Config)
					}
					d.Config[svc] = servicelive.Config{"port": 25 + from, "by": storeHandleName(from)}
					return nil
				})
				if err != nil {
					t.Fatalf("Update(%v) through the %s: %v", ref, storeHandleName(from), err)
				}
				want.Hostname = "via-" + svc + ".corp"
				want.Services = append(want.Services, svc)
				if want.Config == nil {
					want.Config = make(map[string]servicelive.Config)
				}
				want.Config[svc] = servicelive.Config{"port": 25 + from, "by": storeHandleName(from)}
				storeCheckDecky(t, "Update result", got, want)
				storeCheckVisible(t, hs[to], fmt.Sprintf("%s after an Update through the %s", storeHandleName(to), storeHandleName(from)), ref, want)
			}
			// The other scope's decky of the same name is untouched.
			other := storeT1Web
			if ref == storeT1Web {
				other = storeWeb1
			}
			for h, s := range hs {
				storeCheckVisible(t, s, storeHandleName(h), other, storeSeedDecky(t, other.Topology, other.Decky))
			}
		})
	}
}

// storeCheckVisible fails t unless both Get and List of s show want at ref.
func storeCheckVisible(t *testing.T, s servicelive.Store, what string, ref servicelive.Ref, want servicelive.Decky) {
	t.Helper()
	got, err := s.Get(context.Background(), ref)
	if err != nil {
		t.Fatalf("Get(%v), %s: %v", ref, what, err)
	}
	storeCheckDecky(t, fmt.Sprintf("Get(%v), %s,", ref, what), got, want)
	ds, err := s.List(context.Background(), ref.Topology)
	if err != nil {
		t.Fatalf("List(%q), %s: %v", ref.Topology, what, err)
	}
	i := slices.IndexFunc(ds, func(d servicelive.Decky) bool { return d.Name == ref.Decky })
	if i < 0 {
		t.Fatalf("List(%q), %s, has no %s: %q", ref.Topology, what, ref.Decky, storeNames(ds))
	}
	storeCheckDecky(t, fmt.Sprintf("List(%q), %s, decky %s", ref.Topology, what, ref.Decky), ds[i], want)
}

func storeTestCancelled(t *testing.T, c *storeSuite) {
	s := c.newStore(t, storeSeed())
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
// maps being equal, and shows a diff of the two when they differ.
func storeCheckDecky(t *testing.T, what string, got, want servicelive.Decky) {
	t.Helper()
	if diff := storeDiff(want, got); diff != "" {
		t.Fatalf("%s differs from what was expected (-want +got):\n%s", what, diff)
	}
}

// storeDiff returns a line diff of two deckies (-want +got), or "" when they
// are equal: nil and empty slices and maps are equal, config values of
// different Go types are not.
func storeDiff(want, got servicelive.Decky) string {
	return cmp.Diff(want, got, cmpopts.EquateEmpty())
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
