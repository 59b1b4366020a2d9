package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"
)

// migrationFiles holds the schema's migrations, "<version>_<name>.sql",
// versions 1, 2, 3, ... with no gap. A migration is never edited once
// released: a change to the schema is a new file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one step of the schema.
type migration struct {
	version int
	name    string // the file name
	sql     string
}

// migrations is the schema, in order; loadMigrations checks it. Its length
// is the schema version this package creates and works with: Open migrates
// an older database up to it and refuses a newer one.
var migrations = mustLoadMigrations(migrationFiles)

func mustLoadMigrations(fsys fs.FS) []migration {
	ms, err := loadMigrations(fsys)
	if err != nil {
		panic("sqlstore: " + err.Error()) // a broken build, caught by every test
	}
	return ms
}

// loadMigrations reads the migrations of fsys ("migrations/*.sql") and
// checks that their versions run 1, 2, 3, ... in file name order.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql") // sorted
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, name := range names {
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v != len(ms)+1 {
			return nil, fmt.Errorf("migration %s: want a name like %04d_what.sql", base, len(ms)+1)
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: base, sql: string(b)})
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("no migrations")
	}
	return ms, nil
}

// migrate applies the migrations the database lacks, each in a transaction
// of its own that also records it in servicelive_schema_migrations. Each
// transaction first takes a lock that every Open on the database takes (on
// PostgreSQL pg_advisory_xact_lock on a fixed key, on SQLite the write lock
// of BEGIN IMMEDIATE), then reads the version: so of several processes
// opening a fresh database at once, one applies each migration and the
// others wait, then find it applied.
func (s *Store) migrate(ctx context.Context) error {
	for {
		done, err := s.migrateOne(ctx, migrations)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// migrateOne applies the first migration of ms the database lacks and
// reports whether there was none left.
func (s *Store) migrateOne(ctx context.Context, ms []migration) (done bool, err error) {
	err = s.write(ctx, "migrate", func(tx *sql.Tx) error {
		if s.d.migrateLock != "" {
			if _, err := tx.ExecContext(ctx, s.d.migrateLock, pgKey(pgMigrateLock)); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, s.d.createVersionTable); err != nil {
			return err
		}
		var v int
		if err := tx.QueryRowContext(ctx, s.d.schemaVersion).Scan(&v); err != nil {
			return err
		}
		switch {
		case v > len(ms):
			return final{s.errorf("schema version %d is newer than this program's %d", v, len(ms))}
		case v == len(ms):
			done = true
			return nil
		}
		m := ms[v]
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
		_, err := tx.ExecContext(ctx, s.d.insertVersion, m.version, m.name, time.Now().UTC().Format(time.RFC3339))
		return err
	})
	return done, err
}
