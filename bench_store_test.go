package servicelive_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	sl "github.com/decnet/servicelive"
	"github.com/decnet/servicelive/internal/pgtest"
	"github.com/decnet/servicelive/servicelivetest"
)

// The Manager's cost per store: an AddService + RemoveService pair in
// scopes of 100, 1,000 and 10,000 deckies (5 services each) on MemoryStore,
// FileStore, SQLite and PostgreSQL, and Store.Update throughput with 1 and
// 8 writers. The engine is servicelivetest.Composer (its record of calls
// cleared after every pair, so that it does not grow). PostgreSQL is the
// throwaway cluster of pgtest (fsync off: not a durable server's figures);
// without one its benchmarks skip.
//
//	go test -run='^$' -bench='^BenchmarkStore' -count=6 .

// benchSizes are the scope sizes of BenchmarkStoreAddRemove: 1,000 is the
// issue's scope, 100 and 10,000 show whether the cost grows with it.
var benchSizes = []int{100, 1_000, 10_000}

// benchKind is a store the benchmarks run on.
type benchKind struct {
	name string
	// seeded returns a new handle on a store holding scopeDeckies(n) in
	// the fleet, closed when b ends.
	seeded func(b *testing.B, n int) sl.Store
}

// benchKinds: MemoryStore, then the shareable stores (storeKinds).
func benchKinds() []benchKind {
	ks := []benchKind{{
		name: "memory",
		seeded: func(b *testing.B, n int) sl.Store {
			return sl.NewMemoryStore(map[string][]sl.Decky{"": scopeDeckies(n)})
		},
	}}
	for _, k := range storeKinds {
		ks = append(ks, benchKind{
			name: k.name,
			seeded: func(b *testing.B, n int) sl.Store {
				return openHandle(b, k, benchStores.location(b, k, n))
			},
		})
	}
	return ks
}

// benchStoreCache holds the stores the benchmarks seed, once per process
// and scope size (seeding 10,000 deckies takes longer than a benchmark
// run); TestMain removes them. A benchmark leaves the deckies' services as
// it found them.
type benchStoreCache struct {
	mu      sync.Mutex
	dir     string            // files of FileStore and SQLite stores
	locs    map[string]string // kind/size -> location
	pgDBs   []string          // databases created on pgAdmin
	pgAdmin string
}

var benchStores benchStoreCache

// location returns where the store of kind k seeded with scopeDeckies(n)
// is, seeding it on first use.
func (c *benchStoreCache) location(b *testing.B, k storeKind, n int) string {
	b.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	key := fmt.Sprintf("%s/%d", k.name, n)
	if loc, ok := c.locs[key]; ok {
		return loc
	}
	if c.dir == "" {
		dir, err := os.MkdirTemp("", "servicelive-bench-")
		if err != nil {
			b.Fatal(err)
		}
		c.dir = dir
		c.locs = make(map[string]string)
	}
	start := time.Now()
	var loc string
	switch k.name {
	case "file":
		// Written directly: n Puts would rewrite the whole file n times.
		loc = filepath.Join(c.dir, fmt.Sprintf("state-%d.json", n))
		if err := writeFileStoreSeed(loc, scopeDeckies(n)); err != nil {
			b.Fatal(err)
		}
	case "sqlite":
		loc = filepath.Join(c.dir, fmt.Sprintf("state-%d.db", n))
		c.seed(b, k, loc, n, 1) // one writer at a time anyway
	case "postgres":
		admin := testPG.DSN(b)
		name := fmt.Sprintf("bench_%d_%d", os.Getpid(), n)
		if err := pgExec(admin, "CREATE DATABASE "+name); err != nil {
			b.Fatalf("create database: %v", err)
		}
		c.pgAdmin = admin
		c.pgDBs = append(c.pgDBs, name)
		var err error
		if loc, err = pgtest.WithDatabase(admin, name); err != nil {
			b.Fatal(err)
		}
		c.seed(b, k, loc, n, 8)
	default:
		b.Fatalf("no seeding for store kind %s", k.name)
	}
	b.Logf("seeded %s store with %d deckies in %v", k.name, n, time.Since(start).Round(time.Millisecond))
	c.locs[key] = loc
	return loc
}

// seed Puts scopeDeckies(n) into the store at loc with the given number of
// writers.
func (c *benchStoreCache) seed(b *testing.B, k storeKind, loc string, n, writers int) {
	b.Helper()
	h, err := k.open(context.Background(), loc)
	if err != nil {
		b.Fatal(err)
	}
	defer closeHandle(h)
	ds := scopeDeckies(n)
	var g errgroup.Group
	g.SetLimit(writers)
	for _, d := range ds {
		g.Go(func() error { return h.Put(context.Background(), "", d) })
	}
	if err := g.Wait(); err != nil {
		b.Fatalf("seed %s: %v", loc, err)
	}
}

// removeAll removes every seeded store.
func (c *benchStoreCache) removeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, name := range c.pgDBs {
		if err := pgExec(c.pgAdmin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			fmt.Fprintf(os.Stderr, "benchmarks: drop database %s: %v\n", name, err)
		}
	}
	if c.dir != "" {
		_ = os.RemoveAll(c.dir)
	}
	c.dir, c.locs, c.pgDBs, c.pgAdmin = "", nil, nil, ""
}

// pgExec runs query on the server dsn names.
func pgExec(dsn, query string) error {
	db, err := sql.Open("pgx", dsn) // registered by sqlstore's import of pgx/v5/stdlib
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = db.ExecContext(ctx, query)
	return err
}

// writeFileStoreSeed writes a FileStore file holding ds in the fleet, in
// the documented format (FileStore rewrites it in its own layout on the
// first write).
func writeFileStoreSeed(path string, ds []sl.Decky) error {
	type value struct {
		T string `json:"t"`
		V any    `json:"v"`
	}
	type decky struct {
		Name     string                      `json:"name"`
		IP       string                      `json:"ip,omitempty"`
		Image    string                      `json:"image,omitempty"`
		Services []string                    `json:"services"`
		Config   map[string]map[string]value `json:"config"`
		Network  string                      `json:"network,omitempty"`
	}
	doc := struct {
		Version    int                `json:"version"`
		Fleet      []decky            `json:"fleet"`
		Topologies map[string][]decky `json:"topologies"`
	}{Version: 1, Topologies: map[string][]decky{}}
	for _, d := range ds {
		if d.Hostname != "" || d.Host != "" {
			return fmt.Errorf("decky %s: field not written by writeFileStoreSeed", d.Name)
		}
		w := decky{Name: d.Name, IP: d.IP, Image: d.Image, Services: d.Services, Network: d.Network}
		if d.Config != nil {
			w.Config = make(map[string]map[string]value, len(d.Config))
			for svc, cfg := range d.Config {
				w.Config[svc] = make(map[string]value, len(cfg))
				for key, v := range cfg {
					var t string
					switch v.(type) {
					case string:
						t = "string"
					case int:
						t = "int"
					default:
						return fmt.Errorf("decky %s: config %s: type %T not written by writeFileStoreSeed", d.Name, key, v)
					}
					w.Config[svc][key] = value{T: t, V: v}
				}
			}
		}
		doc.Fleet = append(doc.Fleet, w)
	}
	data, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}

// benchPair measures one AddService + RemoveService pair on decky0000 of
// store, through a Manager with a servicelivetest.Composer; with files, the
// compose files are written to a project dir (each mutation rewrites its
// decky's file atomically: write, fsync, rename, fsync the directory). The
// decky's base container is made to run in the fake engine (as Deploy
// would, without deploying the whole scope). One untimed pair first writes
// the decky's compose file and the scope's compose.yaml, and makes the
// handle read the store: the loop measures the steady state.
func benchPair(b *testing.B, store sl.Store, files bool) {
	b.Helper()
	engine := &servicelivetest.Composer{}
	engine.Inject(sl.DefaultFleetProject, "decky0000", "decky0000")
	opts := []sl.Option{sl.WithBus(sl.NewLocalBus())}
	if files {
		opts = append(opts, sl.WithProjectDir(b.TempDir()))
	}
	m, err := sl.New(store, engine, benchRegistry(b), opts...)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	ref := sl.FleetDecky("decky0000")
	pair := func() {
		if _, err := m.AddService(ctx, ref, "c"); err != nil {
			b.Fatal(err)
		}
		if _, err := m.RemoveService(ctx, ref, "c"); err != nil {
			b.Fatal(err)
		}
		engine.Reset()
	}
	pair()
	b.ReportAllocs()
	for b.Loop() {
		pair()
	}
}

// BenchmarkStoreAddRemove: an AddService + RemoveService pair, per store
// and scope size (deckies × 5 services), without and with compose files
// (files=no|yes). Targets at 1,000 deckies: SQLite and PostgreSQL ≤ 5 ms,
// FileStore ≤ 10 ms; SQL stores flat: 10,000 deckies ≤ 1.2 × 100 deckies.
// FileStore rewrites its whole file on every Update: it grows with the
// scope by design.
func BenchmarkStoreAddRemove(b *testing.B) {
	for _, k := range benchKinds() {
		for _, n := range benchSizes {
			for _, files := range []bool{false, true} {
				b.Run(fmt.Sprintf("store=%s/deckies=%d/files=%s", k.name, n, yesNo(files)), func(b *testing.B) {
					benchPair(b, k.seeded(b, n), files)
				})
			}
		}
	}
}

func yesNo(v bool) string {
	if v {
		return "yes"
	}
	return "no"
}

// BenchmarkStoreUpdate: Store.Update throughput with 1 and 8 writers, each
// on its own handle (a MemoryStore has only one) and its own decky of a
// 1,000-decky scope, changing one config value per call. Reports
// updates/s.
func BenchmarkStoreUpdate(b *testing.B) {
	const n = 1_000
	for _, k := range benchKinds() {
		for _, writers := range []int{1, 8} {
			b.Run(fmt.Sprintf("store=%s/writers=%d", k.name, writers), func(b *testing.B) {
				handles := make([]sl.Store, writers)
				handles[0] = k.seeded(b, n)
				for i := 1; i < writers; i++ {
					if k.name == "memory" {
						handles[i] = handles[0]
					} else {
						handles[i] = k.seeded(b, n)
					}
				}
				benchUpdates(b, handles)
			})
		}
	}
}

// benchUpdates runs b.N Updates, shared out among one writer per handle;
// writer i updates decky i.
func benchUpdates(b *testing.B, handles []sl.Store) {
	ctx := context.Background()
	flip := func(d *sl.Decky) error {
		cfg := d.Config["ssh"]
		port, _ := cfg["port"].(int)
		cfg["port"] = 22 + (port+1)%2
		return nil
	}
	for i, h := range handles { // each handle reads the store once, untimed
		if _, err := h.Update(ctx, sl.FleetDecky(fmt.Sprintf("decky%04d", i)), flip); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var g errgroup.Group
	for i, h := range handles {
		ref := sl.FleetDecky(fmt.Sprintf("decky%04d", i))
		g.Go(func() error {
			for next.Add(1) <= int64(b.N) {
				if _, err := h.Update(ctx, ref, flip); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "updates/s")
}
