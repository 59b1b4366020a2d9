package sqlstore_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/internal/pgtest"
	"github.com/decnet/servicelive/sqlstore"
)

// backend is one database the tests run on.
type backend struct {
	name string
	// fresh returns the driver and DSN of a fresh, empty database, removed
	// when t ends.
	fresh func(t testing.TB) (driver, dsn string)
}

var backends = []backend{
	{"sqlite", func(t testing.TB) (string, string) {
		return sqlstore.DriverSQLite, filepath.Join(t.TempDir(), "state.db")
	}},
	{"postgres", func(t testing.TB) (string, string) {
		return sqlstore.DriverPostgres, pgtest.NewDatabase(t, sqlstore.PG.DSN(t))
	}},
}

// forEachBackend runs f in a subtest per backend.
func forEachBackend(t *testing.T, f func(t *testing.T, b backend)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

// dsns remembers the driver and DSN each Store of the tests was opened
// with, so that a test can open another handle on its database.
var dsns sync.Map // *sqlstore.Store -> [2]string

// open opens a Store on driver and dsn, closed when t ends.
func open(t testing.TB, driver, dsn string) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.Open(context.Background(), driver, dsn)
	if err != nil {
		t.Fatalf("Open(%s, %s): %v", driver, dsn, err)
	}
	dsns.Store(s, [2]string{driver, dsn})
	t.Cleanup(func() {
		dsns.Delete(s)
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// openFresh opens a Store on a fresh database of b.
func openFresh(t testing.TB, b backend) *sqlstore.Store {
	t.Helper()
	driver, dsn := b.fresh(t)
	return open(t, driver, dsn)
}

// reopen opens another handle on the database of s.
func reopen(t testing.TB, s *sqlstore.Store) *sqlstore.Store {
	t.Helper()
	v, ok := dsns.Load(s)
	if !ok {
		t.Fatal("reopen: a Store not made by open")
	}
	d := v.([2]string)
	return open(t, d[0], d[1])
}

// seed puts every decky of sd into s.
func seed(t testing.TB, s *sqlstore.Store, sd map[string][]servicelive.Decky) {
	t.Helper()
	for topology, ds := range sd {
		for _, d := range ds {
			if err := s.Put(context.Background(), topology, d); err != nil {
				t.Fatalf("Put(%q, %s): %v", topology, d.Name, err)
			}
		}
	}
}
