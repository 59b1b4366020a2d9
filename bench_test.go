package servicelive_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	sl "github.com/decnet/servicelive"
)

// scopeDeckies returns n deckies with the services of five registered
// services each ("c" left free for the benchmarks to add).
func scopeDeckies(n int) []sl.Decky {
	deckies := make([]sl.Decky, n)
	for i := range deckies {
		deckies[i] = sl.Decky{
			Name:     fmt.Sprintf("decky%04d", i),
			Image:    "decnet/base",
			IP:       fmt.Sprintf("10.%d.%d.%d", i/65536, i/256%256, i%256),
			Network:  "decnet_lan",
			Services: []string{"ssh", "http", "s1", "s2", "s3"},
			Config:   map[string]sl.Config{"ssh": {"port": 22, "banner": "SSH-2.0-OpenSSH_9.6"}},
		}
	}
	return deckies
}

func benchRegistry(b *testing.B) *sl.Registry {
	reg := testRegistry(b)
	for _, n := range []string{"s1", "s2", "s3"} {
		if err := reg.Register(sl.Service{Name: n, Image: "decnet/" + n}); err != nil {
			b.Fatal(err)
		}
	}
	return reg
}

// nopComposer accepts everything. The benchmarks use it instead of
// servicelivetest.Composer, which keeps every call (and its project) and so
// would make the benchmarks measure its own growing heap.
type nopComposer struct{}

func (nopComposer) Up(context.Context, *types.Project, string) error   { return nil }
func (nopComposer) Down(context.Context, *types.Project, string) error { return nil }

// benchAddRemove measures one AddService + RemoveService pair on one decky.
func benchAddRemove(b *testing.B, store sl.Store, opts ...sl.Option) {
	m, err := sl.New(store, nopComposer{}, benchRegistry(b), append(opts, sl.WithBus(sl.NewLocalBus()))...)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	// A deployed scope: its compose files exist (a first mutation before
	// any Deploy writes them all, once).
	if err := m.Deploy(ctx, ""); err != nil {
		b.Fatal(err)
	}
	ref := sl.FleetDecky("decky0000")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.AddService(ctx, ref, "c"); err != nil {
			b.Fatal(err)
		}
		if _, err := m.RemoveService(ctx, ref, "c"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAddRemove: fakes, a MemoryStore, one decky. Target ≤ 20 µs.
func BenchmarkAddRemove(b *testing.B) {
	benchAddRemove(b, sl.NewMemoryStore(map[string][]sl.Decky{"": scopeDeckies(1)}))
}

// BenchmarkAddRemove1000: 1000 deckies × 5 services in the scope, no
// project dir. Target ≤ 1 ms: the cost must not grow with the scope.
func BenchmarkAddRemove1000(b *testing.B) {
	benchAddRemove(b, sl.NewMemoryStore(map[string][]sl.Decky{"": scopeDeckies(1000)}))
}

// BenchmarkAddRemove1000File: the same scope in a FileStore, compose files
// written to a project dir. Target ≤ 10 ms.
func BenchmarkAddRemove1000File(b *testing.B) {
	dir := b.TempDir()
	fs, err := sl.OpenFileStore(filepath.Join(dir, "state.json"))
	if err != nil {
		b.Fatal(err)
	}
	for _, d := range scopeDeckies(1000) {
		if err := fs.Put(context.Background(), "", d); err != nil {
			b.Fatal(err)
		}
	}
	benchAddRemove(b, fs, sl.WithProjectDir(filepath.Join(dir, "compose")))
}

// BenchmarkProject1000 renders a whole 1000-decky scope, what Deploy needs.
// Target ≤ 20 ms.
func BenchmarkProject1000(b *testing.B) {
	m, err := sl.New(sl.NewMemoryStore(map[string][]sl.Decky{"": scopeDeckies(1000)}), nopComposer{}, benchRegistry(b))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Project(context.Background(), ""); err != nil {
			b.Fatal(err)
		}
	}
}
