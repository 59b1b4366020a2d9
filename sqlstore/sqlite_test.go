package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
	"github.com/decnet/servicelive/sqlstore"
)

// TestStoreSQLiteMemory runs the conformance suite on private in-memory
// databases (no second handle can reach one).
func TestStoreSQLiteMemory(t *testing.T) {
	servicelivetest.TestStore(t, func(t *testing.T, sd map[string][]servicelive.Decky) servicelive.Store {
		s := open(t, sqlstore.DriverSQLite, ":memory:")
		seed(t, s, sd)
		return s
	})
}

// TestSQLiteFile checks what Open makes of a plain path: the file and its
// parent directories are created, the file private to its owner, the
// database in WAL mode, and the decky locks in "<file>.locks".
func TestSQLiteFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "state.db")
	s := open(t, sqlstore.DriverSQLite, path)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o600 {
		t.Errorf("database file mode = %v, want 0600", mode)
	}
	db := rawSQLite(t, path)
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Errorf("journal_mode = %q, want wal", mode)
	}
	lock(t, s, servicelive.TopologyDecky("t1", "web1"))()
	info, err = os.Stat(path + ".locks")
	if err != nil {
		t.Fatalf("lock directory: %v", err)
	}
	if mode := info.Mode().Perm(); !info.IsDir() || mode != 0o700 {
		t.Errorf("lock directory mode = %v, want a directory with 0700", info.Mode())
	}
	if _, err := os.Stat(filepath.Join(path+".locks", "topology.t1.web1.lock")); err != nil {
		t.Errorf("decky lock file: %v", err)
	}
}

// TestSQLiteURI checks that a "file:" URI with its own parameters works and
// shares the database (and the locks) with a plain path to the same file.
func TestSQLiteURI(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	a := open(t, sqlstore.DriverSQLite, path)
	b := open(t, sqlstore.DriverSQLite, "file:"+path+"?_pragma=busy_timeout(1000)&_txlock=deferred")
	ctx := context.Background()
	if err := a.Put(ctx, "", servicelive.Decky{Name: "web1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, servicelive.FleetDecky("web1")); err != nil {
		t.Fatalf("Get through the URI: %v", err)
	}
	unlock := lock(t, a, servicelive.FleetDecky("web1"))
	defer unlock()
	ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := b.LockDecky(ctx, servicelive.FleetDecky("web1")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("LockDecky through the URI while the path's handle holds it: error = %v, want DeadlineExceeded", err)
	}
}

// TestSQLiteBusy checks that an Update meeting another connection's write
// lock past busy_timeout tries again instead of failing, and still gives up
// when ctx ends.
func TestSQLiteBusy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, sqlstore.DriverSQLite, path+"?_pragma=busy_timeout(20)")
	seed(t, s, map[string][]servicelive.Decky{"": {{Name: "web1"}}})
	ctx := context.Background()
	ref := servicelive.FleetDecky("web1")

	// Another connection, as another process would, holds the write lock.
	conn, err := rawSQLite(t, path).Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = s.Update(short, ref, func(d *servicelive.Decky) error { d.Services = append(d.Services, "x"); return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Update while another connection holds the write lock: error = %v, want DeadlineExceeded", err)
	}
	if waited := time.Since(start); waited > lockPrompt {
		t.Errorf("Update gave up %v after it started, want soon after its 150ms", waited)
	}

	done := make(chan error, 1)
	go func() {
		_, err := s.Update(ctx, ref, func(d *servicelive.Decky) error {
			d.Services = append(d.Services, "ssh")
			return nil
		})
		done <- err
	}()
	time.Sleep(300 * time.Millisecond) // many busy_timeouts
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Update after the lock was released: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Update still waiting a minute after the lock was released")
	}
	d, err := s.Get(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.Services, []string{"ssh"}) {
		t.Errorf("services = %q, want [ssh]", d.Services)
	}
}

// TestOpenErrors checks the DSNs and drivers Open refuses.
func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "garbage.db"), []byte("not a database, not at all, no"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, driver, dsn string }{
		{"unknown driver", "mysql", "x"},
		{"empty sqlite dsn", sqlstore.DriverSQLite, ""},
		{"not a database", sqlstore.DriverSQLite, filepath.Join(dir, "garbage.db")},
		{"bad sqlite parameter", sqlstore.DriverSQLite, filepath.Join(dir, "x.db") + "?_txlock=x&_journal_mode=nope"},
		{"bad postgres dsn", sqlstore.DriverPostgres, "postgres://%zz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := sqlstore.Open(context.Background(), tt.driver, tt.dsn)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q, %q) succeeded, want an error", tt.driver, tt.dsn)
			}
			if errors.Is(err, servicelive.ErrNotFound) || errors.Is(err, servicelive.ErrInvalidService) {
				t.Errorf("Open error %v matches a sentinel", err)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := sqlstore.Open(ctx, sqlstore.DriverSQLite, filepath.Join(dir, "y.db")); !errors.Is(err, context.Canceled) {
		t.Errorf("Open with a cancelled ctx: error = %v, want context.Canceled", err)
	}
}

// rawSQLite opens the database at path without the store, closed when t
// ends.
func rawSQLite(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
