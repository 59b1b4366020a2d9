package servicelive_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	sl "github.com/decnet/servicelive"
	"github.com/decnet/servicelive/internal/pgtest"
	"github.com/decnet/servicelive/sqlstore"
)

// The shareable Store implementations the load test (and the store
// benchmarks) run on: FileStore, and sqlstore on SQLite and on PostgreSQL.

// testPG is the PostgreSQL server of this package's tests and benchmarks: a
// throwaway cluster started by the first one that needs it (or PG_DSN's
// server), stopped by TestMain. Without one they skip, or fail when CI=true.
var testPG pgtest.Server

func TestMain(m *testing.M) {
	code := m.Run()
	benchStores.removeAll()
	testPG.Stop()
	os.Exit(code)
}

// storeHandle is one handle on a shared store.
type storeHandle interface {
	sl.Store
	Put(ctx context.Context, topology string, d sl.Decky) error
}

// storeKind is a Store implementation that several handles, in this
// process or in others, can share.
type storeKind struct {
	name string
	// fresh returns the location (a file path or a DSN) of a new, empty
	// store, removed when tb ends.
	fresh func(tb testing.TB) string
	// open opens a handle on the store at loc; close it with closeHandle.
	open func(ctx context.Context, loc string) (storeHandle, error)
}

var storeKinds = []storeKind{
	{
		name:  "file",
		fresh: func(tb testing.TB) string { return filepath.Join(tb.TempDir(), "state.json") },
		open: func(_ context.Context, loc string) (storeHandle, error) {
			s, err := sl.OpenFileStore(loc)
			if err != nil {
				return nil, err
			}
			return s, nil
		},
	},
	{
		name:  "sqlite",
		fresh: func(tb testing.TB) string { return filepath.Join(tb.TempDir(), "state.db") },
		open:  openSQL(sqlstore.DriverSQLite),
	},
	{
		name:  "postgres",
		fresh: func(tb testing.TB) string { return pgtest.NewDatabase(tb, testPG.DSN(tb)) },
		open:  openSQL(sqlstore.DriverPostgres),
	},
}

func openSQL(driver string) func(ctx context.Context, loc string) (storeHandle, error) {
	return func(ctx context.Context, loc string) (storeHandle, error) {
		s, err := sqlstore.Open(ctx, driver, loc)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
}

// kindNamed returns the store kind called name.
func kindNamed(name string) (storeKind, error) {
	for _, k := range storeKinds {
		if k.name == name {
			return k, nil
		}
	}
	return storeKind{}, fmt.Errorf("no store kind %q", name)
}

// openHandle opens a handle on the store of kind k at loc, closed when tb
// ends (closing it earlier with closeHandle is fine).
func openHandle(tb testing.TB, k storeKind, loc string) storeHandle {
	tb.Helper()
	h, err := k.open(context.Background(), loc)
	if err != nil {
		tb.Fatalf("open %s store %s: %v", k.name, loc, err)
	}
	tb.Cleanup(func() { _ = closeHandle(h) })
	return h
}

// closeHandle closes h if it has anything to close (a FileStore has not).
// Closing twice is harmless.
func closeHandle(h storeHandle) error {
	if c, ok := h.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// putDeckies writes ds into topology of h with Put.
func putDeckies(tb testing.TB, h storeHandle, topology string, ds []sl.Decky) {
	tb.Helper()
	for _, d := range ds {
		if err := h.Put(context.Background(), topology, d); err != nil {
			tb.Fatalf("Put(%q, %s): %v", topology, d.Name, err)
		}
	}
}
