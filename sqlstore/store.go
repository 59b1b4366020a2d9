package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/internal/filelock"
	"github.com/decnet/servicelive/internal/keylock"
)

// Store is a servicelive.Store and servicelive.DeckyLocker kept in a SQL
// database: PostgreSQL or SQLite. Any number of Stores, in one process or
// in several, may share one database. Create one with Open; see the package
// documentation for the schema and what each database guarantees.
//
// A Store is safe for concurrent use. Every Decky goes in and comes out as a
// deep copy.
type Store struct {
	db    *sql.DB
	d     *dialect
	desc  string // "postgres store" or "sqlite store <file>", for messages
	owner string // this handle's name in the outbox's claims

	// SQLite only.
	wsem    chan struct{} // orders this handle's writers before they reach SQLite's write lock
	lockDir *filelock.Dir // the decky locks of a database file
	memKey  string        // the decky locks of an in-memory database: prefix of its keys in memLocks

	// PostgreSQL only.
	updates keylock.Map // orders this handle's Updates of one decky before they reach the row lock
}

var (
	_ servicelive.Store       = (*Store)(nil)
	_ servicelive.DeckyLocker = (*Store)(nil)
)

// memSeq numbers the private in-memory databases of the process.
var memSeq atomic.Int64

// Open opens the store in the database dsn names and brings its schema up
// to date, waiting for any other process doing the same.
//
// driver is "pgx" (PostgreSQL; dsn is a pgx connection string, a URL or
// keyword/value pairs) or "sqlite" (dsn is a plain file path, created with
// mode 0600 and its parent directories if missing, or a modernc.org/sqlite
// "file:" URI with query parameters, or ":memory:"). ctx bounds the
// connection and the migration, not the Store's life. Close the Store when
// done.
func Open(ctx context.Context, driver, dsn string) (*Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var s *Store
	switch driver {
	case DriverPostgres:
		db, err := openPostgres(dsn)
		if err != nil {
			return nil, fmt.Errorf("servicelive: postgres store: %w", err)
		}
		s = &Store{db: db, d: postgres, desc: "postgres store"}
	case DriverSQLite:
		c, err := parseSQLiteDSN(dsn)
		if err != nil {
			return nil, fmt.Errorf("servicelive: sqlite store: %w", err)
		}
		if c.path != "" {
			if err := createSQLiteFile(c.path); err != nil {
				return nil, fmt.Errorf("servicelive: sqlite store %s: %w", c.path, err)
			}
		}
		db, err := sql.Open(DriverSQLite, c.dsn)
		if err != nil {
			return nil, fmt.Errorf("servicelive: sqlite store %s: %w", c.name, err)
		}
		s = &Store{db: db, d: sqliteDialect, desc: "sqlite store " + c.name, wsem: make(chan struct{}, 1)}
		if c.memory {
			// Each connection to a private in-memory database is a database
			// of its own, gone when it closes: keep exactly one, for ever.
			db.SetMaxOpenConns(1)
			db.SetMaxIdleConns(1)
			db.SetConnMaxLifetime(0)
			db.SetConnMaxIdleTime(0)
		} else {
			db.SetMaxIdleConns(8)
		}
		if err := s.openSQLite(ctx, c); err != nil {
			db.Close()
			return nil, err
		}
	default:
		return nil, fmt.Errorf("servicelive: sql store: unknown driver %q (want %q or %q)", driver, DriverPostgres, DriverSQLite)
	}
	if err := s.migrate(ctx); err != nil {
		s.db.Close()
		return nil, err
	}
	s.owner = servicelive.NewEventID()
	return s, nil
}

// openSQLite finds where the database of s lives and sets up its decky
// locks accordingly.
func (s *Store) openSQLite(ctx context.Context, c sqliteConfig) error {
	file, err := retry(ctx, s.d, func() (string, error) { return sqliteFile(ctx, s.db) })
	if err != nil {
		return s.dbError(ctx, "open", err)
	}
	switch {
	case file != "":
		s.desc = "sqlite store " + file
		if s.lockDir, err = filelock.NewDir(file + ".locks"); err != nil {
			return s.errorf("%w", err)
		}
	case c.shared:
		s.memKey = "shared:" + c.name + "\x00"
	default:
		s.memKey = fmt.Sprintf("private:%d\x00", memSeq.Add(1))
	}
	return nil
}

// Close closes the database handle. Locks taken with LockDecky stay held
// until their unlock is called. A private in-memory SQLite database is gone
// once closed.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return s.errorf("close: %w", err)
	}
	return nil
}

// Get returns the decky ref addresses. A missing topology or decky is an
// error matching ErrNotFound; a malformed ref matches ErrInvalidService.
func (s *Store) Get(ctx context.Context, ref servicelive.Ref) (servicelive.Decky, error) {
	if err := ctx.Err(); err != nil {
		return servicelive.Decky{}, err
	}
	if err := ref.Validate(); err != nil {
		return servicelive.Decky{}, &servicelive.Error{Op: "get", Ref: ref, Err: err}
	}
	rows, err := retry(ctx, s.d, func() ([][]byte, error) {
		return s.queryDocs(ctx, s.d.get, ref.Topology, ref.Decky)
	})
	if err != nil {
		return servicelive.Decky{}, s.dbError(ctx, "get "+ref.String(), err)
	}
	switch {
	case len(rows) == 0 && ref.Topology != "":
		return servicelive.Decky{}, servicelive.TopologyNotFound(ref.Topology)
	case len(rows) == 0 || rows[0] == nil:
		return servicelive.Decky{}, servicelive.DeckyNotFound(ref)
	}
	return s.decode(ref, rows[0])
}

// List returns the deckies of topology ("" = the fleet), sorted by name. An
// empty scope is an empty, non-nil slice; a missing topology is an error
// matching ErrNotFound.
func (s *Store) List(ctx context.Context, topology string) ([]servicelive.Decky, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := servicelive.ValidateScope(topology); err != nil {
		return nil, &servicelive.Error{Op: "list", Err: err}
	}
	rows, err := retry(ctx, s.d, func() ([][]byte, error) { return s.queryDocs(ctx, s.d.list, topology) })
	if err != nil {
		return nil, s.dbError(ctx, "list "+scopeName(topology), err)
	}
	if len(rows) == 0 && topology != "" {
		return nil, servicelive.TopologyNotFound(topology)
	}
	out := make([]servicelive.Decky, 0, len(rows))
	for _, doc := range rows {
		if doc == nil {
			continue // the LEFT JOIN's row of an empty scope
		}
		d, err := servicelive.UnmarshalDecky(doc)
		if err != nil {
			return nil, s.errorf("list %s: %w", scopeName(topology), err)
		}
		out = append(out, d)
	}
	// Sorted here, not by ORDER BY: PostgreSQL would sort by the database's
	// collation, not by bytes as every other Store does.
	slices.SortFunc(out, func(a, b servicelive.Decky) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Update runs fn on a copy of the decky ref addresses and stores the
// result, in one transaction that holds the decky's row (PostgreSQL: SELECT
// ... FOR UPDATE) or the database's write lock (SQLite: BEGIN IMMEDIATE)
// from reading to writing, so no Update from any handle or process is lost.
// fn runs inside that transaction: it must not call s. fn may run more than
// once: when PostgreSQL reports a serialization failure or a deadlock, or
// SQLite stays busy past its busy_timeout, the whole transaction is tried
// again on a fresh copy, until ctx is done.
//
// If fn returns an error nothing is written and Update returns that error
// unchanged. fn may not rename the decky, and config values must be string,
// int, bool or []string; otherwise nothing is written and the error matches
// ErrInvalidService. A missing topology or decky matches ErrNotFound and fn
// is not called. The returned Decky is a deep copy of what was stored.
func (s *Store) Update(ctx context.Context, ref servicelive.Ref, fn func(*servicelive.Decky) error) (servicelive.Decky, error) {
	if err := ctx.Err(); err != nil {
		return servicelive.Decky{}, err
	}
	if err := ref.Validate(); err != nil {
		return servicelive.Decky{}, &servicelive.Error{Op: "update", Ref: ref, Err: err}
	}
	var stored servicelive.Decky
	if s.wsem == nil {
		// PostgreSQL: this handle's Updates of one decky queue here, not
		// on the row in the server (several times faster when they pile up).
		unlock, err := s.updates.Lock(ctx, ref.String())
		if err != nil {
			return servicelive.Decky{}, err
		}
		defer unlock()
	}
	err := s.write(ctx, "update "+ref.String(), func(tx *sql.Tx) error {
		var doc []byte
		err := tx.QueryRowContext(ctx, s.d.lockRow, ref.Topology, ref.Decky).Scan(&doc)
		if errors.Is(err, sql.ErrNoRows) {
			return s.missing(ctx, tx, ref)
		}
		if err != nil {
			return err
		}
		d, err := s.decode(ref, doc)
		if err != nil {
			return final{err}
		}
		if err := fn(&d); err != nil {
			return final{err}
		}
		if err := servicelive.CheckUpdate(ref, d); err != nil {
			return final{err}
		}
		stored = d.Clone() // fn's caller may still hold &d
		enc, err := servicelive.MarshalDecky(stored)
		if err != nil {
			return final{s.errorf("update %s: encode: %w", ref, err)}
		}
		_, err = tx.ExecContext(ctx, s.d.update, ref.Topology, ref.Decky, string(enc))
		return err
	})
	if err != nil {
		return servicelive.Decky{}, err
	}
	return stored, nil
}

// Put stores a copy of d in topology ("" = the fleet), replacing any decky
// of the same name and creating the topology if it does not exist. A bad
// topology ID or decky name, or a config value that is not a string, int,
// bool or []string, is an error matching ErrInvalidService.
func (s *Store) Put(ctx context.Context, topology string, d servicelive.Decky) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := servicelive.CheckPut(topology, d); err != nil {
		return err
	}
	enc, err := servicelive.MarshalDecky(d)
	if err != nil {
		return s.errorf("put %s: encode: %w", servicelive.Ref{Topology: topology, Decky: d.Name}, err)
	}
	return s.write(ctx, "put "+servicelive.Ref{Topology: topology, Decky: d.Name}.String(), func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.d.insertTopology, topology); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, s.d.upsertDecky, topology, d.Name, string(enc))
		return err
	})
}

// Delete removes the decky ref addresses. A missing topology or decky is an
// error matching ErrNotFound. The topology remains, even when it is left
// with no deckies.
func (s *Store) Delete(ctx context.Context, ref servicelive.Ref) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := ref.Validate(); err != nil {
		return &servicelive.Error{Op: "delete", Ref: ref, Err: err}
	}
	return s.write(ctx, "delete "+ref.String(), func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.d.deleteDecky, ref.Topology, ref.Decky)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n > 0 {
			return err
		}
		return s.missing(ctx, tx, ref)
	})
}

// missing returns the error for ref, which has no row: ErrNotFound for the
// topology or the decky (wrapped in final), or the query's failure.
func (s *Store) missing(ctx context.Context, tx *sql.Tx, ref servicelive.Ref) error {
	if ref.Topology == "" {
		return final{servicelive.DeckyNotFound(ref)}
	}
	var one int
	err := tx.QueryRowContext(ctx, s.d.topologyExists, ref.Topology).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return final{servicelive.TopologyNotFound(ref.Topology)}
	case err != nil:
		return err
	}
	return final{servicelive.DeckyNotFound(ref)}
}

// queryDocs runs q, which selects one nullable document column, and
// returns the documents (nil for NULL).
func (s *Store) queryDocs(ctx context.Context, q string, args ...any) ([][]byte, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var doc []byte
		if err := rows.Scan(&doc); err != nil {
			return nil, err
		}
		out = append(out, doc)
	}
	return out, rows.Err()
}

// decode decodes the document of ref.
func (s *Store) decode(ref servicelive.Ref, doc []byte) (servicelive.Decky, error) {
	d, err := servicelive.UnmarshalDecky(doc)
	if err == nil && d.Name != ref.Decky {
		err = fmt.Errorf("the row of %s holds decky %q", ref.Decky, d.Name)
	}
	if err != nil {
		return servicelive.Decky{}, s.errorf("decky %s: %w", ref, err)
	}
	return d, nil
}

// final carries an error that ends a transaction and is returned as it is:
// fn's error, ErrNotFound, a refused value. Any other error from a
// transaction's function is the database's.
type final struct{ err error }

func (f final) Error() string { return f.err.Error() }

// write runs f in a write transaction, committing when f returns nil, and
// tries it again while the database reports a transient conflict. On
// SQLite the writers of this handle queue here first, so that they do not
// poll SQLite's lock against each other.
func (s *Store) write(ctx context.Context, op string, f func(*sql.Tx) error) error {
	if s.wsem != nil {
		select {
		case s.wsem <- struct{}{}:
			defer func() { <-s.wsem }()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	_, err := retry(ctx, s.d, func() (struct{}, error) { return struct{}{}, s.tx(ctx, f) })
	var fe final
	if errors.As(err, &fe) {
		return fe.err
	}
	if err != nil {
		return s.dbError(ctx, op, err)
	}
	return nil
}

// tx runs f in one transaction.
func (s *Store) tx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// retry runs f until it succeeds, fails for good, or ctx is done: a
// failure d calls retryable is tried again after a short, growing,
// jittered pause.
func retry[T any](ctx context.Context, d *dialect, f func() (T, error)) (T, error) {
	pause := time.Millisecond
	for {
		v, err := f()
		var fe final
		if err == nil || errors.As(err, &fe) || !d.retryable(err) || ctx.Err() != nil {
			return v, err
		}
		t := time.NewTimer(pause/2 + rand.N(pause))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return v, err
		}
		pause = min(2*pause, 50*time.Millisecond)
	}
}

// dbError returns the error of a failed database call: ctx's error when
// ctx is done (the driver's own words for it vary), else err naming the
// store and the operation; it matches no sentinel.
func (s *Store) dbError(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return s.errorf("%s: %w", op, err)
}

// errorf returns an error naming the store:
// "servicelive: sqlite store /x/state.db: ...".
func (s *Store) errorf(format string, args ...any) error {
	return fmt.Errorf("servicelive: %s: "+format, append([]any{s.desc}, args...)...)
}

// scopeName names a scope in messages: "fleet" or "topology <id>".
func scopeName(topology string) string {
	if topology == "" {
		return "fleet"
	}
	return "topology " + topology
}
