package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/internal/pgtest"
)

// TestPgRetryable checks which PostgreSQL errors retry classifies as
// transient: by SQLSTATE, through wrapping.
func TestPgRetryable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&pgconn.PgError{Code: "40001"}, true},
		{&pgconn.PgError{Code: "40P01"}, true},
		{fmt.Errorf("commit: %w", &pgconn.PgError{Code: "40P01"}), true},
		{&pgconn.PgError{Code: "23505", Message: "could not serialize access"}, false},
		{errors.New("ERROR: could not serialize access (SQLSTATE 40001)"), false},
		{context.Canceled, false},
	}
	for _, tt := range tests {
		if got := pgRetryable(tt.err); got != tt.want {
			t.Errorf("pgRetryable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// TestRetryGivesUp checks that retry stops at a final error, a permanent
// one, and when ctx ends.
func TestRetryGivesUp(t *testing.T) {
	busy := &pgconn.PgError{Code: "40001"}
	calls := 0
	_, err := retry(context.Background(), postgres, func() (int, error) {
		calls++
		if calls < 3 {
			return 0, busy
		}
		return 0, final{busy}
	})
	if calls != 3 || !errors.As(err, new(final)) {
		t.Errorf("retry ran %d times and returned %v, want 3 runs and the final error", calls, err)
	}
	calls = 0
	perm := errors.New("permanent")
	if _, err := retry(context.Background(), postgres, func() (int, error) { calls++; return 0, perm }); err != perm || calls != 1 {
		t.Errorf("retry of a permanent error: %d runs, %v", calls, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := retry(ctx, postgres, func() (int, error) { return 0, busy }); err != busy {
		t.Errorf("retry until ctx ends returned %v, want the last error", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("retry took %v after ctx's 30ms", d)
	}
}

// TestPgKey pins the advisory lock keys: changing them would let two
// versions of this package running side by side take different locks for
// one decky.
func TestPgKey(t *testing.T) {
	tests := []struct {
		name string
		want int64
	}{
		{"", -3750763034362895579},                         // the FNV-1a offset basis, 0xcbf29ce484222325
		{"a", -5808556873153909620},                        // FNV-1a test vector 0xaf63dc4c8601ec8c
		{pgLockPrefix + "fleet.web1", 5340215616649035017}, // 0x4a1c41cf465bfd09
		{pgMigrateLock, -4319516022946369488},              // 0xc40dff101aac7030
	}
	for _, tt := range tests {
		if got := pgKey(tt.name); got != tt.want {
			t.Errorf("pgKey(%q) = %d, want %d", tt.name, got, tt.want)
		}
	}
	if pgKey(pgLockPrefix+"fleet.web1") == pgKey(pgLockPrefix+"topology.t1.web1") {
		t.Error("two deckies share a key")
	}
	if pgKey(pgMigrateLock) == pgKey(pgLockPrefix+"fleet.web1") {
		t.Error("the migration lock shares a decky's key")
	}
}

// TestParseSQLiteDSN checks the parameters Open adds to an SQLite DSN.
func TestParseSQLiteDSN(t *testing.T) {
	tests := []struct {
		dsn                  string
		wantMemory, wantPath bool
		has, hasNot          []string
	}{
		{dsn: "/x/state.db", wantPath: true,
			has: []string{"_txlock=immediate", "busy_timeout%285000%29", "journal_mode%28WAL%29", "foreign_keys%281%29"}},
		{dsn: "state.db?_txlock=deferred&_pragma=busy_timeout(10)&_journal_mode=DELETE", wantPath: true,
			has: []string{"_txlock=immediate", "busy_timeout%2810%29"}, hasNot: []string{"deferred", "5000", "WAL"}},
		{dsn: ":memory:", wantMemory: true, has: []string{"_txlock=immediate"}, hasNot: []string{"WAL"}},
		{dsn: "file:x?mode=memory&cache=shared", wantMemory: true, has: []string{"mode=memory", "cache=shared"}},
		{dsn: "file:/x/state.db?_fk=0", has: []string{"_fk=0", "WAL"}, hasNot: []string{"foreign_keys"}},
	}
	for _, tt := range tests {
		c, err := parseSQLiteDSN(tt.dsn)
		if err != nil {
			t.Errorf("parseSQLiteDSN(%q): %v", tt.dsn, err)
			continue
		}
		if c.memory != tt.wantMemory || (c.path != "") != tt.wantPath {
			t.Errorf("parseSQLiteDSN(%q) = memory %v, path %q", tt.dsn, c.memory, c.path)
		}
		for _, s := range tt.has {
			if !strings.Contains(c.dsn, s) {
				t.Errorf("parseSQLiteDSN(%q) = %q, want it to hold %q", tt.dsn, c.dsn, s)
			}
		}
		for _, s := range tt.hasNot {
			if strings.Contains(c.dsn, s) {
				t.Errorf("parseSQLiteDSN(%q) = %q, want it without %q", tt.dsn, c.dsn, s)
			}
		}
	}
}

// TestLoadMigrations checks the names and order loadMigrations accepts.
func TestLoadMigrations(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	good := fstest.MapFS{
		"migrations/0002_more.sql": file("two"),
		"migrations/0001_init.sql": file("one"),
		"migrations/README":        file("not a migration"),
	}
	ms, err := loadMigrations(good)
	if err != nil {
		t.Fatal(err)
	}
	want := []migration{{1, "0001_init.sql", "one"}, {2, "0002_more.sql", "two"}}
	if !reflect.DeepEqual(ms, want) {
		t.Errorf("loadMigrations = %+v, want %+v", ms, want)
	}
	for name, fsys := range map[string]fstest.MapFS{
		"gap":       {"migrations/0001_a.sql": file(""), "migrations/0003_c.sql": file("")},
		"no number": {"migrations/init.sql": file("")},
		"twice":     {"migrations/0001_a.sql": file(""), "migrations/01_b.sql": file("")},
		"none":      {},
	} {
		if _, err := loadMigrations(fsys); err == nil {
			t.Errorf("loadMigrations of %s succeeded", name)
		}
	}
	if len(migrations) == 0 || migrations[0].name != "0001_init.sql" {
		t.Errorf("embedded migrations = %+v", migrations)
	}
}

// onEachDatabase runs fn as a subtest on a new SQLite file and on a new
// PostgreSQL database.
func onEachDatabase(t *testing.T, fn func(t *testing.T, driver, dsn string)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, DriverSQLite, filepath.Join(t.TempDir(), "state.db")) })
	t.Run("postgres", func(t *testing.T) { fn(t, DriverPostgres, pgtest.NewDatabase(t, PG.DSN(t))) })
}

// TestMigrationAtomic checks that a failing migration changes nothing: its
// statements are rolled back and the version stays, on both databases; and
// that the next Open with the fixed migration applies it.
func TestMigrationAtomic(t *testing.T) {
	onEachDatabase(t, func(t *testing.T, driver, dsn string) {
		ctx := context.Background()
		s, err := Open(ctx, driver, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		broken := append(migrations[:len(migrations):len(migrations)], migration{
			version: len(migrations) + 1, name: "broken.sql",
			sql: "CREATE TABLE servicelive_half (x INTEGER); INSERT INTO servicelive_nosuch VALUES (1)",
		})
		if _, err := s.migrateOne(ctx, broken); err == nil {
			t.Fatal("a broken migration succeeded")
		}
		var n int
		if err := s.db.QueryRow("SELECT MAX(version) FROM servicelive_schema_migrations").Scan(&n); err != nil || n != len(migrations) {
			t.Errorf("schema version after a failed migration = %d (%v), want %d", n, err, len(migrations))
		}
		if _, err := s.db.Exec("SELECT * FROM servicelive_half"); err == nil {
			t.Error("the failed migration's first statement was kept")
		}
		fixed := broken[:len(broken):len(broken)]
		fixed[len(fixed)-1].sql = "CREATE TABLE servicelive_half (x INTEGER)"
		for {
			done, err := s.migrateOne(ctx, fixed)
			if err != nil {
				t.Fatal(err)
			}
			if done {
				break
			}
		}
		if _, err := s.db.Exec("SELECT * FROM servicelive_half"); err != nil {
			t.Errorf("the fixed migration was not applied: %v", err)
		}
		if err := s.Put(ctx, "", servicelive.Decky{Name: "web1"}); err != nil {
			t.Fatal(err)
		}
	})
}
