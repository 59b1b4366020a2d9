package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/internal/pgtest"
	"github.com/decnet/servicelive/sqlstore"
)

// freshPG returns the DSN of a fresh PostgreSQL database and a raw handle
// on it, both gone when t ends.
func freshPG(t *testing.T) (string, *sql.DB) {
	t.Helper()
	dsn := pgtest.NewDatabase(t, sqlstore.PG.DSN(t))
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return dsn, db
}

// TestPostgresSerializationRetry checks that an Update failing with a
// serialization failure (SQLSTATE 40001) is run again, not reported: with
// the database's default isolation SERIALIZABLE, an Update blocked on the
// row another one holds fails so when that one commits.
func TestPostgresSerializationRetry(t *testing.T) {
	dsn, db := freshPG(t)
	if _, err := db.Exec("DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_isolation TO serializable', current_database()); END $$"); err != nil {
		t.Fatal(err)
	}
	a := open(t, sqlstore.DriverPostgres, dsn)
	b := open(t, sqlstore.DriverPostgres, dsn)
	seed(t, a, map[string][]servicelive.Decky{"": {{Name: "web1"}}})
	ctx := context.Background()
	ref := servicelive.FleetDecky("web1")
	fresh, err := sql.Open("pgx", dsn) // ALTER DATABASE ... SET holds for new sessions
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	var isolation string
	if err := fresh.QueryRow("SHOW default_transaction_isolation").Scan(&isolation); err != nil {
		t.Fatal(err)
	}
	if isolation != "serializable" {
		t.Fatalf("default_transaction_isolation = %q, want serializable", isolation)
	}

	inside, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		_, err := a.Update(ctx, ref, func(d *servicelive.Decky) error {
			d.Services = append(d.Services, "a")
			select {
			case inside <- struct{}{}:
				<-release
			default: // a second run, should there be one
			}
			return nil
		})
		first <- err
	}()
	<-inside
	second := make(chan error, 1)
	runs := 0
	go func() {
		_, err := b.Update(ctx, ref, func(d *servicelive.Decky) error {
			runs++
			d.Services = append(d.Services, "b")
			return nil
		})
		second <- err
	}()
	waitBlocked(t, db)
	close(release)
	for _, ch := range []chan error{first, second} {
		if err := <-ch; err != nil {
			t.Fatalf("Update: %v", err)
		}
	}
	d, err := a.Get(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.Services, []string{"a", "b"}) {
		t.Errorf("services = %q, want [a b]: an update was lost", d.Services)
	}
	if runs != 1 {
		t.Errorf("the second fn ran %d times, want once (the failed attempt fails before fn)", runs)
	}
}

// waitBlocked waits until a session of db's database waits for a lock.
func waitBlocked(t *testing.T, db *sql.DB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no session waits for a lock")
}

// TestPostgresLockWaitCancelled checks that a LockDecky giving up because
// of its ctx also ends its wait on the server: no session keeps waiting for
// the advisory lock, and every lock is released after unlock.
func TestPostgresLockWaitCancelled(t *testing.T) {
	dsn, db := freshPG(t)
	a := open(t, sqlstore.DriverPostgres, dsn)
	b := open(t, sqlstore.DriverPostgres, dsn)
	ref := servicelive.FleetDecky("web1")
	unlock := lock(t, a, ref)
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_, err := b.LockDecky(ctx, ref)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("LockDecky error = %v, want DeadlineExceeded", err)
		}
	}
	advisory := func(granted bool) int {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted = $1
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, granted).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitFor(t, "the abandoned waits to end on the server", func() bool { return advisory(false) == 0 })
	if n := advisory(true); n != 1 {
		t.Errorf("%d advisory locks held, want the holder's 1", n)
	}
	unlock()
	waitFor(t, "every advisory lock to be released", func() bool { return advisory(true) == 0 })
	lock(t, b, ref)()
}

// TestPostgresLockSessionLost checks that when the session holding a lock
// dies, the lock is free and unlock neither hangs nor panics.
func TestPostgresLockSessionLost(t *testing.T) {
	dsn, db := freshPG(t)
	a := open(t, sqlstore.DriverPostgres, dsn)
	b := open(t, sqlstore.DriverPostgres, dsn)
	ref := servicelive.FleetDecky("web1")
	unlock := lock(t, a, ref)
	if _, err := db.Exec(`SELECT pg_terminate_backend(pid) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()`); err != nil {
		t.Fatal(err)
	}
	lock(t, b, ref)()
	unlock()
	lock(t, a, ref)() // a's pool still works
}

// waitFor polls cond for up to 10 s, failing t if it never holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
