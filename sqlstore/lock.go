package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"sync"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/internal/filelock"
)

// LockDecky takes the lock of the decky ref addresses (which need not
// exist), waiting until it is held or ctx is done; then it returns
// ctx.Err(). unlock releases it and must be called once (a second call
// does nothing). The lock is not reentrant. What it excludes depends on the database (see the
// package documentation):
//
//   - PostgreSQL: a session-level advisory lock (pg_advisory_lock) held by
//     a connection set aside from the pool until unlock: every Store on the
//     same database, on any host, is excluded. The key is the 64-bit FNV-1a
//     hash of "servicelive/decky/" and the decky's lock name; two deckies
//     whose keys collide merely share one lock.
//   - SQLite file: an flock(2) on "<database file>.locks/<lock name>.lock":
//     every Store on the file, in any process of the host, is excluded.
//   - SQLite in memory: an in-process lock, shared by the Stores of the
//     process on the same shared-cache database (the only ones that can
//     reach it).
func (s *Store) LockDecky(ctx context.Context, ref servicelive.Ref) (unlock func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := ref.Validate(); err != nil {
		return nil, &servicelive.Error{Op: "lock", Ref: ref, Err: err}
	}
	name := filelock.RefName(ref.Topology, ref.Decky)
	var release func()
	switch {
	case s.lockDir != nil:
		release, err = s.lockDir.Lock(ctx, name)
	case s.memKey != "":
		release, err = memLocks.Lock(ctx, s.memKey+name)
	default:
		release, err = s.pgLock(ctx, pgKey(pgLockPrefix+name))
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, s.errorf("lock %s: %w", ref, err)
	}
	var once sync.Once
	return func() { once.Do(release) }, nil
}

// pgLock takes the session-level advisory lock key on a connection of its
// own, kept out of the pool until the lock is released.
func (s *Store) pgLock(ctx context.Context, key int64) (unlock func(), err error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	var ok bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&ok); err != nil {
		discard(conn)
		return nil, err
	}
	if !ok {
		if err := pgWait(ctx, conn, key); err != nil {
			return nil, err
		}
	}
	return func() { pgUnlock(conn, key) }, nil
}

// pgWait waits on conn for the advisory lock key. The wait runs in a
// goroutine, so that when ctx ends pgWait returns at once while the
// goroutine cancels the wait on the server and closes the connection (which
// releases the lock should it have been granted meanwhile). On error conn is
// taken care of.
func pgWait(ctx context.Context, conn *sql.Conn, key int64) error {
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() {
		_, err := conn.ExecContext(wctx, "SELECT pg_advisory_lock($1)", key)
		done <- err
	}()
	select {
	case err := <-done:
		cancel()
		if err != nil {
			discard(conn)
		}
		return err
	case <-ctx.Done():
		cancel() // pgx asks the server to cancel the wait
		go func() {
			<-done
			// Never back to the pool: PostgreSQL's cancel request names
			// the backend, not the statement, so one that arrives after
			// the wait ended (the lock granted just before it) would
			// cancel the next statement of whoever gets the connection.
			// Closing the session also releases a lock granted meanwhile.
			discard(conn)
		}()
		return ctx.Err()
	}
}

// pgUnlock releases the advisory lock key held by conn's session and
// returns conn to the pool; if that fails it closes conn instead, which
// ends the session and so releases the lock.
func pgUnlock(conn *sql.Conn, key int64) {
	ctx, cancel := context.WithTimeout(context.Background(), pgUnlockWithin)
	defer cancel()
	var released bool
	err := conn.QueryRowContext(ctx, "SELECT pg_advisory_unlock($1)", key).Scan(&released)
	if err != nil || !released {
		discard(conn)
		return
	}
	_ = conn.Close()
}

// discard closes conn's connection instead of returning it to the pool, so
// that its session, and any lock it holds, ends.
func discard(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close() // sql.ErrConnDone after Raw: only returns the *sql.Conn
}
