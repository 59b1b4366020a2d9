package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/stdlib"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Driver names Open accepts.
const (
	// DriverPostgres is the driver name of PostgreSQL, through
	// github.com/jackc/pgx/v5/stdlib.
	DriverPostgres = "pgx"
	// DriverSQLite is the driver name of SQLite, through modernc.org/sqlite
	// (pure Go, no cgo).
	DriverSQLite = "sqlite"
)

// dialect is what differs between the two databases: the SQL text and which
// errors mean "try the transaction again".
type dialect struct {
	get, list, lockRow, topologyExists, update, insertTopology, upsertDecky, deleteDecky string
	createVersionTable, schemaVersion, insertVersion                                     string
	migrateLock                                                                          string // "" when BEGIN already locks

	retryable func(error) bool
}

// The queries, written for PostgreSQL ($n placeholders); sqliteSQL turns
// them into SQLite's numbered ?n.
const (
	qGet = `SELECT d.doc FROM servicelive_topologies t
		LEFT JOIN servicelive_deckies d ON d.topology = t.id AND d.name = $2
		WHERE t.id = $1`
	qList = `SELECT d.doc FROM servicelive_topologies t
		LEFT JOIN servicelive_deckies d ON d.topology = t.id
		WHERE t.id = $1`
	qLockRow        = `SELECT doc FROM servicelive_deckies WHERE topology = $1 AND name = $2`
	qTopologyExists = `SELECT 1 FROM servicelive_topologies WHERE id = $1`
	qUpdate         = `UPDATE servicelive_deckies SET doc = $3 WHERE topology = $1 AND name = $2`
	qInsertTopology = `INSERT INTO servicelive_topologies (id) VALUES ($1) ON CONFLICT (id) DO NOTHING`
	qUpsertDecky    = `INSERT INTO servicelive_deckies (topology, name, doc) VALUES ($1, $2, $3)
		ON CONFLICT (topology, name) DO UPDATE SET doc = excluded.doc`
	qDeleteDecky = `DELETE FROM servicelive_deckies WHERE topology = $1 AND name = $2`

	qCreateVersionTable = `CREATE TABLE IF NOT EXISTS servicelive_schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at TEXT NOT NULL
	)`
	qSchemaVersion = `SELECT COALESCE(MAX(version), 0) FROM servicelive_schema_migrations`
	qInsertVersion = `INSERT INTO servicelive_schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`
)

var postgres = &dialect{
	get:     qGet,
	list:    qList,
	lockRow: qLockRow + " FOR UPDATE",

	topologyExists: qTopologyExists, update: qUpdate, insertTopology: qInsertTopology,
	upsertDecky: qUpsertDecky, deleteDecky: qDeleteDecky,

	createVersionTable: qCreateVersionTable, schemaVersion: qSchemaVersion, insertVersion: qInsertVersion,
	migrateLock: "SELECT pg_advisory_xact_lock($1)",

	retryable: pgRetryable,
}

var sqliteDialect = &dialect{
	get:     sqliteSQL(qGet),
	list:    sqliteSQL(qList),
	lockRow: sqliteSQL(qLockRow), // BEGIN IMMEDIATE already holds the write lock

	topologyExists: sqliteSQL(qTopologyExists), update: sqliteSQL(qUpdate),
	insertTopology: sqliteSQL(qInsertTopology), upsertDecky: sqliteSQL(qUpsertDecky),
	deleteDecky: sqliteSQL(qDeleteDecky),

	createVersionTable: qCreateVersionTable, schemaVersion: qSchemaVersion,
	insertVersion: sqliteSQL(qInsertVersion),

	retryable: sqliteRetryable,
}

// sqliteSQL rewrites PostgreSQL's $n placeholders as SQLite's ?n (the
// queries hold no other "$").
func sqliteSQL(q string) string { return strings.ReplaceAll(q, "$", "?") }

// pgRetryable reports a serialization failure (40001) or a deadlock
// (40P01): the transaction was rolled back and may simply run again.
func pgRetryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}

// sqliteRetryable reports SQLITE_BUSY (another connection held the lock
// past busy_timeout) or SQLITE_LOCKED (a shared-cache table lock), with
// any extended code.
func sqliteRetryable(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return true
	}
	return false
}

// Advisory lock keys (PostgreSQL has one 64-bit key space per database,
// shared with every other user of advisory locks there).
const (
	pgLockPrefix   = "servicelive/decky/"
	pgMigrateLock  = "servicelive/sqlstore/migrate"
	pgUnlockWithin = 30 * time.Second // how long an unlock may take before its session is closed instead
	pgCancelGrace  = 2 * time.Second  // how long a cancelled query may take to end before its connection is closed
)

// pgKey returns the advisory lock key of name: its 64-bit FNV-1a hash.
func pgKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return int64(h.Sum64())
}

// openPostgres opens the pool of a PostgreSQL store.
func openPostgres(dsn string) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	// When ctx ends, ask the server to cancel the running query (so that a
	// lock wait ends on the server too, and the connection stays usable),
	// and close the connection only if the server does not answer.
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: pgCancelGrace}
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxIdleConns(16)
	return db, nil
}

// sqliteBusyTimeout is the busy_timeout Open sets unless the DSN sets one:
// how long one statement waits for another connection's lock before
// SQLITE_BUSY (then the whole transaction is tried again, until ctx ends).
const sqliteBusyTimeout = 5000 // ms

// sqliteConfig is what Open makes of an SQLite DSN.
type sqliteConfig struct {
	dsn    string // with the parameters the store needs
	path   string // the plain file path given, or ""
	memory bool   // an in-memory database
	shared bool   // a shared-cache in-memory database, reachable by name in the process
	name   string // the part before "?"
}

// parseSQLiteDSN adds to dsn (a plain file path or a "file:" URI, with
// modernc.org/sqlite's query parameters) what the store needs:
// _txlock=immediate always (every transaction takes the write lock when it
// begins); busy_timeout, journal_mode(WAL) for a file, and foreign_keys,
// unless dsn sets them.
func parseSQLiteDSN(dsn string) (sqliteConfig, error) {
	if dsn == "" {
		return sqliteConfig{}, errors.New("empty dsn (want a file path, a file: URI or :memory:)")
	}
	name, query, _ := strings.Cut(dsn, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return sqliteConfig{}, fmt.Errorf("dsn: %w", err)
	}
	c := sqliteConfig{name: name}
	c.memory = name == ":memory:" || strings.HasPrefix(name, "file::memory:") || q.Get("mode") == "memory"
	c.shared = c.memory && q.Get("cache") == "shared"
	if !c.memory && !strings.HasPrefix(name, "file:") {
		c.path = name
	}
	pragmas := map[string]bool{}
	for _, p := range q["_pragma"] {
		p = strings.ToLower(strings.TrimSpace(p))
		for _, key := range []string{"busy_timeout", "journal_mode", "foreign_keys"} {
			if strings.HasPrefix(p, key) {
				pragmas[key] = true
			}
		}
	}
	q.Set("_txlock", "immediate")
	if !pragmas["busy_timeout"] && !q.Has("_busy_timeout") && !q.Has("_timeout") {
		q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeout))
	}
	if !c.memory && !pragmas["journal_mode"] && !q.Has("_journal_mode") && !q.Has("_journal") {
		q.Add("_pragma", "journal_mode(WAL)")
	}
	if !pragmas["foreign_keys"] && !q.Has("_foreign_keys") && !q.Has("_fk") {
		q.Add("_pragma", "foreign_keys(1)")
	}
	c.dsn = name + "?" + q.Encode()
	return c, nil
}

// createSQLiteFile creates the file at path (mode 0600: configs may hold
// secrets) and its parent directories, unless it exists.
func createSQLiteFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// sqliteFile returns the path of the main database of db, "" when it is in
// memory (or a temporary database).
func sqliteFile(ctx context.Context, db *sql.DB) (string, error) {
	var file string
	err := db.QueryRowContext(ctx, "SELECT file FROM pragma_database_list WHERE name = 'main'").Scan(&file)
	return file, err
}
