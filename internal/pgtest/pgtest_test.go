package pgtest_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/decnet/servicelive/internal/pgtest"
)

var pg pgtest.Server

func TestMain(m *testing.M) {
	code := m.Run()
	pg.Stop()
	os.Exit(code)
}

// TestNewDatabase checks that two databases of one server are apart and
// that a database is dropped when its test ends.
func TestNewDatabase(t *testing.T) {
	dsn := pg.DSN(t)
	var names [2]string
	t.Run("create", func(t *testing.T) {
		for i := range names {
			db := open(t, pgtest.NewDatabase(t, dsn))
			if err := db.QueryRow("SELECT current_database()").Scan(&names[i]); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec("CREATE TABLE x (i int)"); err != nil {
				t.Fatalf("database %d: %v", i, err)
			}
		}
		if names[0] == names[1] {
			t.Fatalf("two NewDatabase calls gave the same database %q", names[0])
		}
	})
	db := open(t, dsn)
	for _, name := range names {
		var n int
		if err := db.QueryRow("SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("database %s still exists after its test", name)
		}
	}
}

// TestUnixSocketOnly checks that a throwaway cluster opens no TCP port.
func TestUnixSocketOnly(t *testing.T) {
	if os.Getenv(pgtest.EnvDSN) != "" {
		t.Skip(pgtest.EnvDSN + " is set: no throwaway cluster")
	}
	db := open(t, pg.DSN(t))
	var addrs string
	if err := db.QueryRow("SHOW listen_addresses").Scan(&addrs); err != nil {
		t.Fatal(err)
	}
	if addrs != "" {
		t.Errorf("listen_addresses = %q, want none", addrs)
	}
}

// TestStartStop checks that Start's cluster is gone, directory included,
// after its test.
func TestStartStop(t *testing.T) {
	if os.Getenv(pgtest.EnvDSN) != "" {
		t.Skip(pgtest.EnvDSN + " is set: no throwaway cluster")
	}
	var dsn string
	t.Run("start", func(t *testing.T) {
		dsn = pgtest.Start(t)
		if err := open(t, dsn).Ping(); err != nil {
			t.Fatal(err)
		}
	})
	if t.Failed() || dsn == "" {
		return
	}
	host := strings.Fields(strings.TrimPrefix(dsn, "host="))[0]
	if _, err := os.Stat(filepath.Dir(host)); !os.IsNotExist(err) {
		t.Errorf("cluster directory %s remains after its test (stat: %v)", filepath.Dir(host), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.PingContext(ctx); err == nil {
		t.Error("cluster still answers after its test")
	}
}

// TestWithDatabase checks both forms of connection string.
func TestWithDatabase(t *testing.T) {
	tests := []struct{ dsn, want string }{
		{"host=/tmp port=5 dbname=postgres", "host=/tmp port=5 dbname=postgres dbname=x"},
		{"postgres://u@h:5/postgres?sslmode=disable", "postgres://u@h:5/x?sslmode=disable"},
		{"postgresql:///postgres?host=/tmp", "postgresql:///x?host=/tmp"},
	}
	for _, tt := range tests {
		got, err := pgtest.WithDatabase(tt.dsn, "x")
		if err != nil || got != tt.want {
			t.Errorf("WithDatabase(%q, x) = %q, %v; want %q", tt.dsn, got, err, tt.want)
		}
	}
}

func open(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
