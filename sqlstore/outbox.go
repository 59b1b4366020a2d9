package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/decnet/servicelive"
)

var (
	_ servicelive.Outbox         = (*Store)(nil)
	_ servicelive.OutboxReleaser = (*Store)(nil)
)

// OutboxLease is how long PendingEvents claims the events it returns for
// its Store handle: other handles (other processes) skip them meanwhile, so
// that several relays on one database do not all publish everything. The
// events of a handle that died are taken up by the others once their lease
// has run out. Leases are reckoned by the database's clock (PostgreSQL's
// now(), SQLite's julianday('now')), never a client's, so that clients with
// skewed clocks agree.
const OutboxLease = 30 * time.Second

// The outbox's queries, for PostgreSQL; sqliteSQL turns them into SQLite's.
// In qClaimEvents, the first %[1]s is the database's clock in Unix
// milliseconds (nowMillis), and %[2]s the row lock.
const (
	qAppendEvent = `INSERT INTO servicelive_outbox (id, doc) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`
	qClaimEvents = `UPDATE servicelive_outbox SET owner = $1, lease_until = %[1]s + $2
		WHERE id IN (SELECT id FROM servicelive_outbox WHERE owner = $1 OR lease_until < %[1]s ORDER BY id LIMIT $3%[2]s)
		RETURNING id, doc`
	qDeleteEvent    = `DELETE FROM servicelive_outbox WHERE id = $1`
	qReleaseEvents  = `UPDATE servicelive_outbox SET owner = '', lease_until = 0 WHERE owner = $1`
	qQuarantineRow  = `UPDATE servicelive_outbox SET owner = '` + QuarantineOwner + `', lease_until = 9223372036854775807 WHERE id = $1`
	pgNowMillis     = `CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT)`
	sqliteNowMillis = `CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)`
)

// QuarantineOwner is the owner of the outbox rows that PendingEvents found
// undecodable: they are never claimed again, and left for an operator
// (SELECT * FROM servicelive_outbox WHERE owner = '!quarantined').
const QuarantineOwner = "!quarantined"

// query returns q (a PostgreSQL query) for the database of s.
func (s *Store) query(q string) string {
	if s.d == postgres {
		return q
	}
	return sqliteSQL(q)
}

// AppendEvent inserts e into the outbox table, committed before it
// returns; an event already there is left as it is. See servicelive.Outbox.
func (s *Store) AppendEvent(ctx context.Context, e servicelive.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if e.ID == "" {
		return s.errorf("outbox: event without ID")
	}
	doc, err := json.Marshal(e)
	if err != nil {
		return s.errorf("outbox: encode event %s: %w", e.ID, err)
	}
	q := s.query(qAppendEvent)
	return s.write(ctx, "outbox append", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, q, e.ID, string(doc))
		return err
	})
}

// PendingEvents claims up to limit events for this handle, for
// OutboxLease, and returns them by ID: those no handle holds a lease on,
// and those this handle claimed before. On PostgreSQL, rows another
// transaction is claiming are skipped (FOR UPDATE SKIP LOCKED); on SQLite
// the claim holds the database's write lock. A row that is not an event of
// its ID is quarantined (its owner set to QuarantineOwner, in the same
// transaction) and skipped, so that the events after it flow.
func (s *Store) PendingEvents(ctx context.Context, limit int) ([]servicelive.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	q := fmt.Sprintf(qClaimEvents, pgNowMillis, " FOR UPDATE SKIP LOCKED")
	if s.d != postgres {
		q = fmt.Sprintf(qClaimEvents, sqliteNowMillis, "")
	}
	q = s.query(q)
	qq := s.query(qQuarantineRow)
	var out []servicelive.Event
	err := s.write(ctx, "outbox pending", func(tx *sql.Tx) error {
		out = out[:0]
		var bad []string
		err := func() error {
			rows, err := tx.QueryContext(ctx, q, s.owner, OutboxLease.Milliseconds(), limit)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var id, doc string
				if err := rows.Scan(&id, &doc); err != nil {
					return err
				}
				var e servicelive.Event
				if err := json.Unmarshal([]byte(doc), &e); err != nil || e.ID != id {
					bad = append(bad, id)
					continue
				}
				out = append(out, e)
			}
			return rows.Err()
		}()
		if err != nil {
			return err
		}
		for _, id := range bad {
			if _, err := tx.ExecContext(ctx, qq, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b servicelive.Event) int { return strings.Compare(a.ID, b.ID) })
	if out == nil {
		out = []servicelive.Event{}
	}
	return out, nil
}

// ReleaseEvents gives back every claim of this handle (see
// servicelive.OutboxReleaser): the events become free for any handle at
// once.
func (s *Store) ReleaseEvents(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	q := s.query(qReleaseEvents)
	return s.write(ctx, "outbox release", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, q, s.owner)
		return err
	})
}

// DeleteEvents deletes the rows of these events, in one transaction.
func (s *Store) DeleteEvents(ctx context.Context, ids ...string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	q := s.query(qDeleteEvent)
	return s.write(ctx, "outbox delete", func(tx *sql.Tx) error {
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, q, id); err != nil {
				return err
			}
		}
		return nil
	})
}
