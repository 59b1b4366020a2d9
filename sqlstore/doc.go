// Package sqlstore is a servicelive.Store kept in a SQL database, through
// database/sql: PostgreSQL (driver "pgx", github.com/jackc/pgx/v5/stdlib)
// or SQLite (driver "sqlite", modernc.org/sqlite: pure Go, no cgo). A Store
// is also a servicelive.DeckyLocker, so Managers in several processes (and,
// on PostgreSQL, on several hosts) sharing one database serialise their
// mutations of each decky.
//
// # Opening
//
//	s, err := sqlstore.Open(ctx, "sqlite", "/var/lib/decnet/state.db")
//	s, err := sqlstore.Open(ctx, "sqlite", "file:/var/lib/decnet/state.db?_pragma=busy_timeout(10000)")
//	s, err := sqlstore.Open(ctx, "sqlite", ":memory:") // tests: gone on Close
//	s, err := sqlstore.Open(ctx, "pgx", "postgres://decnet@db.internal/decnet?sslmode=verify-full")
//	s, err := sqlstore.Open(ctx, "pgx", "host=/var/run/postgresql dbname=decnet")
//	defer s.Close()
//
// An SQLite DSN is a plain file path (created with mode 0600, and its
// parent directories, when missing) or a "file:" URI with
// modernc.org/sqlite's query parameters. Open adds _txlock=immediate
// (always) and, unless the DSN sets them, busy_timeout(5000),
// journal_mode(WAL) for a file, and foreign_keys(1). A PostgreSQL DSN is
// anything pgx.ParseConfig accepts; the role needs to create tables in the
// first schema of its search_path on the first Open (and on an Open after
// an upgrade that brings a new migration).
//
// # Schema
//
// Four tables, prefixed so that the database can be shared with others:
//
//	servicelive_schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at TEXT)
//	servicelive_topologies        (id TEXT PRIMARY KEY)            -- '' = the fleet, always there
//	servicelive_deckies           (topology TEXT REFERENCES servicelive_topologies,
//	                               name TEXT, doc TEXT, PRIMARY KEY (topology, name))
//	servicelive_outbox            (id TEXT PRIMARY KEY, doc TEXT,  -- schema version 2: servicelive.Outbox
//	                               owner TEXT, lease_until BIGINT)
//
// A topology exists from the first Put into it and is never removed: it
// outlives its last decky, as in every servicelive Store. doc is the decky
// as servicelive.MarshalDecky writes it (each config value with its Go
// type), the same form as a decky of a servicelive.FileStore file:
//
//	{"name":"web1","image":"alpine","services":["ssh"],"config":{"ssh":{"port":{"t":"int","v":22},"users":{"t":"[]string","v":["root"]}}}}
//
// so values come back as the string, int, bool or []string they were.
//
// The outbox holds the events a Bus has not taken yet (see
// servicelive.Outbox and Store.PendingEvents), doc each event as JSON; a
// relay claims rows for its handle (owner, lease_until in Unix
// milliseconds) so that several processes relaying from one database do
// not all publish everything.
//
// The schema is versioned: the files of migrations/ (embedded in the
// program, "0001_init.sql", ...) are applied in order by Open, each in a
// transaction of its own that also records it in
// servicelive_schema_migrations. That transaction first takes a lock every
// Open takes — pg_advisory_xact_lock on a fixed key on PostgreSQL, the write
// lock of BEGIN IMMEDIATE on SQLite — and only then reads the version, so
// any number of processes may Open a fresh database at once: one applies
// each migration, the others wait and find it done. A database whose
// version is newer than the program's is refused.
//
// # Guarantees
//
// Get and List each read with one statement, so what they return is one
// committed state. List sorts by name (bytewise, whatever the database's
// collation).
//
// Update is one transaction from reading the decky to writing it:
//
//   - PostgreSQL: SELECT ... FOR UPDATE on the decky's row, fn, UPDATE,
//     COMMIT, at the database's default isolation level. Updates of one
//     decky wait for each other at the row; Updates of different deckies run
//     in parallel. A serialization failure (SQLSTATE 40001, e.g. under
//     SERIALIZABLE) or a deadlock (40P01), recognised by the
//     *pgconn.PgError's code, rolls back and runs the whole transaction
//     again — fn included, on a fresh copy. The Updates of one handle on one
//     decky also queue in the process first.
//   - SQLite: BEGIN IMMEDIATE takes the database's write lock before the
//     read, so Updates (of any decky, from any connection or process) run
//     one at a time while readers go on (WAL). A connection that meets the
//     lock waits up to busy_timeout; SQLITE_BUSY or SQLITE_LOCKED after that,
//     recognised by the *sqlite.Error's code, runs the whole transaction
//     again. The writers of one handle also queue in the process first.
//
// Either way no Update is lost, whichever handle or process makes it; fn may
// run more than once (the Store contract allows it), runs inside the
// transaction, and must not call the Store. Retrying goes on, with short
// growing pauses, until it succeeds or ctx is done: every method honours
// ctx (waiting for a connection, a lock, a query, a retry) and returns
// ctx.Err() once it has ended. Put and Delete are transactions too, retried
// alike.
//
// Durability is the database's: SQLite's default synchronous=FULL syncs
// each commit; PostgreSQL's follows its fsync and synchronous_commit.
//
// # Decky locks
//
// LockDecky(ctx, ref) waits until the caller holds ref's lock or ctx is
// done (then it returns ctx.Err() at once). The decky need not exist; the
// lock is not reentrant; unlock must be called once.
//
//   - PostgreSQL: a session-level pg_advisory_lock, held by a connection
//     taken from the pool for the purpose and set aside until unlock. It
//     excludes every holder on the same database, from any Store, process
//     or host. The key is the 64-bit FNV-1a hash of "servicelive/decky/"
//     followed by the decky's lock name ("fleet.<decky>" or
//     "topology.<id>.<decky>"); two deckies whose keys collide (odds about
//     n²/2⁶⁵ for n deckies) merely share one lock, and another application
//     using advisory locks on the database could, as unlikely, share one
//     with a decky. When ctx ends during the wait LockDecky returns at once
//     and the wait is cancelled on the server (a cancel request); a lock
//     granted in that instant is released. unlock runs pg_advisory_unlock
//     and returns the connection to the pool; if that fails (the server
//     gone, say) the connection is closed instead, which ends the session
//     and so the lock. A session that dies (server restart, network
//     failure, the process killed) loses its locks: PostgreSQL cannot keep
//     a lock for a client it no longer hears from, so a holder that outlives
//     its connection is no longer exclusive. Each lock held or waited for
//     uses one connection (the pool is unbounded): mind max_connections. A
//     pooler in transaction mode (PgBouncer's) breaks session locks: connect
//     directly or in session mode.
//   - SQLite file: an flock(2) on "<database file>.locks/<lock name>.lock"
//     (directory mode 0700, one empty file per decky ever locked, never
//     removed), through internal/filelock: it excludes every holder on the
//     same file in any process of the host, and the kernel releases it when
//     the process dies. Processes on different hosts sharing the file over
//     a network file system are not excluded (nor should SQLite be used
//     so).
//   - SQLite in memory (":memory:", mode=memory): a lock in the process,
//     which is the only one that can reach the database; handles on one
//     shared-cache database (cache=shared) share it.
package sqlstore
