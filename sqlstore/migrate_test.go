package sqlstore_test

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"testing"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/sqlstore"
)

// rawDB opens the database of a backend without the store, closed when t
// ends.
func rawDB(t testing.TB, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestConcurrentOpen checks that 8 Stores opening one fresh database at
// once (as 8 processes starting together would) all succeed, that the
// schema is migrated exactly once, and that they share it.
func TestConcurrentOpen(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		driver, dsn := b.fresh(t)
		const n = 8
		stores := make([]*sqlstore.Store, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				stores[i], errs[i] = sqlstore.Open(context.Background(), driver, dsn)
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("Open %d: %v", i, err)
				continue
			}
			t.Cleanup(func() { stores[i].Close() })
		}
		if t.Failed() {
			return
		}
		db := rawDB(t, driver, dsn)
		rows, err := db.Query("SELECT version, name FROM servicelive_schema_migrations ORDER BY version")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var got []string
		for rows.Next() {
			var v int
			var name string
			if err := rows.Scan(&v, &name); err != nil {
				t.Fatal(err)
			}
			got = append(got, name)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 || got[0] != "0001_init.sql" {
			t.Fatalf("applied migrations = %q, want 0001_init.sql first, each once", got)
		}
		seen := map[string]bool{}
		for _, name := range got {
			if seen[name] {
				t.Errorf("migration %s applied twice", name)
			}
			seen[name] = true
		}
		ctx := context.Background()
		if err := stores[0].Put(ctx, "t1", servicelive.Decky{Name: "web1"}); err != nil {
			t.Fatal(err)
		}
		for i, s := range stores {
			if _, err := s.Get(ctx, servicelive.TopologyDecky("t1", "web1")); err != nil {
				t.Errorf("Get through store %d: %v", i, err)
			}
		}
	})
}

// TestReopenKeepsData checks that a database opened again (the schema
// already there) keeps every decky and topology, an empty one included.
func TestReopenKeepsData(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		driver, dsn := b.fresh(t)
		ctx := context.Background()
		s, err := sqlstore.Open(ctx, driver, dsn)
		if err != nil {
			t.Fatal(err)
		}
		seed(t, s, map[string][]servicelive.Decky{
			"":   {{Name: "web1", Config: map[string]servicelive.Config{"ssh": {"port": 22}}}},
			"t1": {{Name: "gw"}},
		})
		if err := s.Delete(ctx, servicelive.TopologyDecky("t1", "gw")); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = open(t, driver, dsn)
		d, err := s.Get(ctx, servicelive.FleetDecky("web1"))
		if err != nil {
			t.Fatal(err)
		}
		if port, ok := d.Config["ssh"]["port"].(int); !ok || port != 22 {
			t.Errorf("ssh port = %#v, want int 22", d.Config["ssh"]["port"])
		}
		if ds, err := s.List(ctx, "t1"); err != nil || len(ds) != 0 {
			t.Errorf("List(t1) of the emptied topology = %v, %v; want it empty and no error", ds, err)
		}
	})
}

// TestNewerSchemaRefused checks that Open refuses a database migrated by a
// newer program, and writes nothing to it.
func TestNewerSchemaRefused(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		driver, dsn := b.fresh(t)
		open(t, driver, dsn)
		db := rawDB(t, driver, dsn)
		if _, err := db.Exec("INSERT INTO servicelive_schema_migrations (version, name, applied_at) VALUES (999, '0999_future.sql', 'later')"); err != nil {
			t.Fatal(err)
		}
		s, err := sqlstore.Open(context.Background(), driver, dsn)
		if err == nil {
			s.Close()
			t.Fatal("Open of a database with schema version 999 succeeded")
		}
		if !strings.Contains(err.Error(), "newer") {
			t.Errorf("Open error = %v, want one saying the schema is newer", err)
		}
	})
}
