package servicelive_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofrs/flock"
	"golang.org/x/sync/errgroup"

	sl "github.com/decnet/servicelive"
)

// lockContenders is how many handles contend for one lock in
// BenchmarkLockWait.
const lockContenders = 16

// lockPollRetry is how often the FileStore of before the change polled a
// lock another handle held.
const lockPollRetry = time.Millisecond

// BenchmarkLockWait: 16 handles (one goroutine each, every handle with its
// own open file description, as 16 processes would have) take one lock in
// turn: how long does each wait for it? Reports the p50, p99 and max wait
// (ms) over the run; ns/op is the wall time per acquisition (the inverse
// of the throughput). hold is what each does with the lock held: "update"
// a FileStore.Update of the decky (a one-decky store), "none" nothing.
//
//   - lock=poll: the FileStore lock before the change, reproduced:
//     flock.New(path).TryLockContext(ctx, 1ms), one new Flock per
//     acquisition, as the old FileStore.lock did. With hold=update the
//     Update runs under it (its own state lock, which it then takes
//     uncontended, costs a few µs more than the old code did).
//   - lock=update: FileStore.Update itself, whose state lock now waits in
//     the kernel. The wait is measured until fn runs, so it includes the
//     read of the (small) file under the lock.
//   - lock=decky: FileStore.LockDecky, the decky lock the Manager takes
//     around a mutation; with hold=update the Update runs under it.
func BenchmarkLockWait(b *testing.B) {
	for _, bc := range []struct {
		name    string
		acquire func(s *sl.FileStore) lockAcquirer
	}{
		{name: "lock=poll/hold=update", acquire: pollLock(true)},
		{name: "lock=update/hold=update", acquire: updateLock},
		{name: "lock=decky/hold=update", acquire: deckyLock(true)},
		{name: "lock=poll/hold=none", acquire: pollLock(false)},
		{name: "lock=decky/hold=none", acquire: deckyLock(false)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "state.json")
			first := openFileStore(b, path)
			if err := first.Put(context.Background(), "", scopeDeckies(1)[0]); err != nil {
				b.Fatal(err)
			}
			contenders := make([]lockAcquirer, lockContenders)
			for i := range contenders {
				contenders[i] = bc.acquire(openFileStore(b, path))
			}
			benchLockWait(b, contenders)
		})
	}
}

// lockAcquirer takes the lock, does what it holds it for, releases it and
// returns how long it waited for it.
type lockAcquirer func(ctx context.Context) (wait time.Duration, err error)

// benchDecky is the decky every contender locks and updates.
var benchDecky = sl.FleetDecky("decky0000")

// flipPort changes the decky's ssh port between 22 and 23.
func flipPort(d *sl.Decky) error {
	cfg := d.Config["ssh"]
	port, _ := cfg["port"].(int)
	cfg["port"] = 22 + (port+1)%2
	return nil
}

// pollLock: the old polling lock on a lock file of its own, then (if
// update) s.Update.
func pollLock(update bool) func(s *sl.FileStore) lockAcquirer {
	return func(s *sl.FileStore) lockAcquirer {
		lockPath := s.Path() + ".oldlock"
		return func(ctx context.Context) (time.Duration, error) {
			start := time.Now()
			fl := flock.New(lockPath)
			ok, err := fl.TryLockContext(ctx, lockPollRetry)
			switch {
			case err != nil:
				return 0, err
			case !ok:
				return 0, errors.New("TryLockContext: not locked and no error")
			}
			wait := time.Since(start)
			if update {
				_, err = s.Update(ctx, benchDecky, flipPort)
			}
			return wait, errors.Join(err, fl.Unlock())
		}
	}
}

// updateLock: s.Update, waited for until fn runs.
func updateLock(s *sl.FileStore) lockAcquirer {
	return func(ctx context.Context) (time.Duration, error) {
		start := time.Now()
		var wait time.Duration
		_, err := s.Update(ctx, benchDecky, func(d *sl.Decky) error {
			wait = time.Since(start)
			return flipPort(d)
		})
		return wait, err
	}
}

// deckyLock: s.LockDecky, then (if update) s.Update.
func deckyLock(update bool) func(s *sl.FileStore) lockAcquirer {
	return func(s *sl.FileStore) lockAcquirer {
		return func(ctx context.Context) (time.Duration, error) {
			start := time.Now()
			unlock, err := s.LockDecky(ctx, benchDecky)
			if err != nil {
				return 0, err
			}
			wait := time.Since(start)
			if update {
				_, err = s.Update(ctx, benchDecky, flipPort)
			}
			unlock()
			return wait, err
		}
	}
}

// benchLockWait runs b.N acquisitions shared out among the contenders, all
// at once, and reports the percentiles of their waits. Each contender
// first takes the lock once, untimed, alone.
func benchLockWait(b *testing.B, contenders []lockAcquirer) {
	ctx := context.Background()
	for _, acquire := range contenders {
		if _, err := acquire(ctx); err != nil {
			b.Fatal(err)
		}
	}
	waits := make([][]time.Duration, len(contenders))
	var next atomic.Int64
	b.ResetTimer()
	var g errgroup.Group
	for i, acquire := range contenders {
		g.Go(func() error {
			for next.Add(1) <= int64(b.N) {
				w, err := acquire(ctx)
				if err != nil {
					return err
				}
				waits[i] = append(waits[i], w)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	all := slices.Concat(waits...)
	slices.Sort(all)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(percentile(all, 50)), "p50-wait-ms")
	b.ReportMetric(ms(percentile(all, 99)), "p99-wait-ms")
	b.ReportMetric(ms(all[len(all)-1]), "max-wait-ms")
}

// percentile returns the p-th percentile of sorted (nearest rank).
func percentile(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100 // ceil(len·p/100), 1-based
	return sorted[max(i, 1)-1]
}
