package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/decnet/servicelive"
)

var _ servicelive.Outbox = (*Store)(nil)

// OutboxLease is how long PendingEvents claims the events it returns for
// its Store handle: other handles (other processes) skip them meanwhile, so
// that several relays on one database do not all publish everything. The
// events of a handle that died are taken up by the others once their lease
// has run out.
const OutboxLease = 30 * time.Second

// The outbox's queries, for PostgreSQL; sqliteSQL turns them into SQLite's.
const (
	qAppendEvent = `INSERT INTO servicelive_outbox (id, doc) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`
	qClaimEvents = `UPDATE servicelive_outbox SET owner = $1, lease_until = $2
		WHERE id IN (SELECT id FROM servicelive_outbox WHERE owner = $1 OR lease_until < $3 ORDER BY id LIMIT $4%s)
		RETURNING id, doc`
	qDeleteEvent = `DELETE FROM servicelive_outbox WHERE id = $1`
)

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
// the claim holds the database's write lock.
func (s *Store) PendingEvents(ctx context.Context, limit int) ([]servicelive.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	lock := ""
	if s.d == postgres {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	q := s.query(strings.Replace(qClaimEvents, "%s", lock, 1))
	var out []servicelive.Event
	err := s.write(ctx, "outbox pending", func(tx *sql.Tx) error {
		out = out[:0]
		now := time.Now()
		rows, err := tx.QueryContext(ctx, q, s.owner, now.Add(OutboxLease).UnixMilli(), now.UnixMilli(), limit)
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
				return final{s.errorf("outbox: row %s: not an event of this ID (%v)", id, err)}
			}
			out = append(out, e)
		}
		return rows.Err()
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
