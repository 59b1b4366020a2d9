package servicelivetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/decnet/servicelive"
)

// The timing of the DeckyLocker checks.
const (
	// storeLockWait bounds what must happen at once: taking a free lock,
	// giving up once ctx is done.
	storeLockWait = 2 * time.Second
	// storeLockShort is the life of the contexts that must end a wait.
	storeLockShort = 50 * time.Millisecond
	// storeLockHold is how long a holder stays in its critical section in
	// LockDecky/Exclusive, to give a second holder the time to get in.
	storeLockHold = 200 * time.Microsecond
	// storeLockDeadlock bounds the whole of LockDecky/Exclusive.
	storeLockDeadlock = 20 * time.Second
)

// The shape of LockDecky/Exclusive: storeLockers goroutines (spread over the
// handles) take one decky's lock storeLockRounds times each.
const (
	storeLockers    = 6
	storeLockRounds = 8
)

// storeTestLockDecky runs the DeckyLocker checks, or skips t when the store
// is not a servicelive.DeckyLocker.
func storeTestLockDecky(t *testing.T, c *storeSuite) {
	if s := c.newStore(t, nil); !storeIsLocker(s) {
		t.Skipf("%T is not a servicelive.DeckyLocker", s)
	}
	tests := []struct {
		name string
		run  func(t *testing.T, c *storeSuite)
	}{
		{"Exclusive", storeTestLockExclusive},
		{"Independent", storeTestLockIndependent},
		{"ContextDone", storeTestLockContextDone},
		{"MissingDecky", storeTestLockMissing},
		{"Unlock", storeTestLockUnlock},
		{"StoreWhileLocked", storeTestLockStore},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, c) })
	}
}

func storeIsLocker(s servicelive.Store) bool {
	_, ok := s.(servicelive.DeckyLocker)
	return ok
}

// lockers returns a new store holding seed, and its handles as DeckyLockers
// (two with WithReopen).
func (c *storeSuite) lockers(t *testing.T, seed map[string][]servicelive.Decky) ([]servicelive.Store, []servicelive.DeckyLocker) {
	t.Helper()
	hs := c.handles(t, seed)
	ls := make([]servicelive.DeckyLocker, len(hs))
	for i, h := range hs {
		l, ok := h.(servicelive.DeckyLocker)
		if !ok {
			t.Fatalf("the %s (%T) is not a servicelive.DeckyLocker", storeHandleName(i), h)
		}
		ls[i] = l
	}
	return hs, ls
}

// storeLockCall calls l.LockDecky(ctx, ref) and returns what it returns,
// or returned=false when it has not returned storeLockWait after ctx ended:
// a LockDecky that ignores ctx fails the check instead of hanging it. The
// lock such an abandoned call may still get is released.
func storeLockCall(ctx context.Context, l servicelive.DeckyLocker, ref servicelive.Ref) (unlock func(), err error, returned bool) {
	type result struct {
		unlock func()
		err    error
	}
	done := make(chan result, 1)
	go func() {
		u, err := l.LockDecky(ctx, ref)
		done <- result{u, err}
	}()
	var r result
	select {
	case r = <-done:
		return r.unlock, r.err, true
	case <-ctx.Done():
	}
	select {
	case r = <-done:
		return r.unlock, r.err, true
	case <-time.After(storeLockWait):
		go func() {
			if r := <-done; r.err == nil && r.unlock != nil {
				r.unlock()
			}
		}()
		return nil, nil, false
	}
}

// storeLock takes the lock of ref through l, failing t unless it has it
// within storeLockWait. It returns unlock, made safe to call more than once.
func storeLock(t *testing.T, l servicelive.DeckyLocker, ref servicelive.Ref, what string) (unlock func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), storeLockWait)
	defer cancel()
	start := time.Now()
	unlock, err, returned := storeLockCall(ctx, l, ref)
	switch {
	case !returned:
		t.Fatalf("LockDecky(%v), %s: not had within %v, and still waiting %v after its context ended", ref, what, storeLockWait, storeLockWait)
	case err != nil:
		t.Fatalf("LockDecky(%v), %s: %v (after %v)", ref, what, err, time.Since(start).Round(time.Millisecond))
	case unlock == nil:
		t.Fatalf("LockDecky(%v), %s: nil unlock and no error", ref, what)
	}
	unlock = sync.OnceFunc(unlock)
	t.Cleanup(unlock) // when t fails with the lock held
	return unlock
}

// storeLockRefused fails t unless LockDecky of ref through l, which another
// holder has, gives up with context.DeadlineExceeded, and promptly, once a
// context of storeLockShort ends.
func storeLockRefused(t *testing.T, l servicelive.DeckyLocker, ref servicelive.Ref, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), storeLockShort)
	defer cancel()
	start := time.Now()
	unlock, err, returned := storeLockCall(ctx, l, ref)
	switch {
	case !returned:
		t.Fatalf("LockDecky(%v), %s: still waiting %v after its context ended", ref, what, storeLockWait)
	case err == nil:
		unlock()
		t.Fatalf("LockDecky(%v), %s: got the lock another holder has", ref, what)
	case !errors.Is(err, context.DeadlineExceeded):
		t.Fatalf("LockDecky(%v), %s, with a deadline: error = %v, want one matching context.DeadlineExceeded", ref, what, err)
	}
	if d := time.Since(start); d > storeLockWait {
		t.Fatalf("LockDecky(%v), %s: took %v to give up after a deadline of %v", ref, what, d.Round(time.Millisecond), storeLockShort)
	}
}

func storeTestLockExclusive(t *testing.T, c *storeSuite) {
	_, ls := c.lockers(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), storeLockDeadlock)
	defer cancel()
	refs := []servicelive.Ref{storeWeb1, storeT1Web}
	type tally struct{ holders, most, entries atomic.Int32 }
	tallies := make([]tally, len(refs))
	var wg sync.WaitGroup
	for r, ref := range refs {
		tl := &tallies[r]
		for g := range storeLockers {
			h := g % len(ls)
			wg.Go(func() {
				for range storeLockRounds {
					unlock, err := ls[h].LockDecky(ctx, ref)
					if err != nil {
						t.Errorf("LockDecky(%v) through the %s: %v", ref, storeHandleName(h), err)
						return
					}
					n := tl.holders.Add(1)
					for m := tl.most.Load(); n > m && !tl.most.CompareAndSwap(m, n); m = tl.most.Load() {
					}
					tl.entries.Add(1)
					time.Sleep(storeLockHold)
					tl.holders.Add(-1)
					unlock()
				}
			})
		}
	}
	wg.Wait()
	for r, ref := range refs {
		tl := &tallies[r]
		if most := tl.most.Load(); most > 1 {
			t.Errorf("LockDecky(%v) let %d holders in at once (%d goroutines on %d handle(s))", ref, most, storeLockers, len(ls))
		}
		if n := tl.entries.Load(); n != storeLockers*storeLockRounds && !t.Failed() {
			t.Errorf("LockDecky(%v) was held %d times, want %d", ref, n, storeLockers*storeLockRounds)
		}
	}
}

func storeTestLockIndependent(t *testing.T, c *storeSuite) {
	tests := []struct {
		name        string
		held, other servicelive.Ref
	}{
		{"another decky", storeWeb1, servicelive.FleetDecky("web2")},
		{"same name in a topology", storeWeb1, storeT1Web},
		{"same name in the fleet", storeT1Web, storeWeb1},
		{"same name in another topology", storeT1Web, servicelive.TopologyDecky("t2", "web1")},
		{"topology IDs differing in case", storeT1Web, servicelive.TopologyDecky("T1", "web1")},
		{"topology and decky joined alike", servicelive.TopologyDecky("t1", "a-b"), servicelive.TopologyDecky("t1-a", "b")},
		{"fleet name like a topology decky's", servicelive.FleetDecky("t1-web1"), storeT1Web},
	}
	_, ls := c.lockers(t, nil) // each case releases what it takes
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			unlock := storeLock(t, ls[0], tt.held, "held")
			for h, l := range ls {
				storeLock(t, l, tt.other, fmt.Sprintf("through the %s while %v is held (the locks of different deckies must not block each other)", storeHandleName(h), tt.held))()
			}
			// Both at once, the other way round.
			other := storeLock(t, ls[len(ls)-1], tt.other, "held")
			unlock()
			storeLock(t, ls[0], tt.held, fmt.Sprintf("while %v is held", tt.other))()
			other()
		})
	}
}

func storeTestLockContextDone(t *testing.T, c *storeSuite) {
	_, ls := c.lockers(t, nil)
	unlock := storeLock(t, ls[0], storeWeb1, "holder")
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), storeLockShort)
		}, context.DeadlineExceeded},
		{"cancelled while waiting", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(storeLockShort, cancel)
			return ctx, cancel
		}, context.Canceled},
		{"cancelled before", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, context.Canceled},
	}
	// Three waiters per case and handle at once: waiters queued behind
	// another waiter must give up too.
	const waiters = 3
	var wg sync.WaitGroup
	for h, l := range ls {
		for _, tt := range tests {
			for w := range waiters {
				wg.Go(func() {
					ctx, cancel := tt.ctx()
					defer cancel()
					start := time.Now()
					u, err := l.LockDecky(ctx, storeWeb1)
					d := time.Since(start)
					what := fmt.Sprintf("waiter %d through the %s, context %s", w, storeHandleName(h), tt.name)
					switch {
					case err == nil:
						u()
						if d < storeLockWait {
							t.Errorf("LockDecky(%v), %s: got the lock another holder has", storeWeb1, what)
						} else {
							t.Errorf("LockDecky(%v), %s: did not give up when ctx ended, and got the lock after %v", storeWeb1, what, d.Round(time.Millisecond))
						}
					case !errors.Is(err, tt.want):
						t.Errorf("LockDecky(%v), %s: error = %v, want one matching %v", storeWeb1, what, err, tt.want)
					case d > storeLockWait:
						t.Errorf("LockDecky(%v), %s: took %v to give up", storeWeb1, what, d.Round(time.Millisecond))
					}
				})
			}
		}
	}
	// A LockDecky that ignores ctx would wait for the holder: release it
	// once every waiter should have given up, so that the check ends.
	finished := make(chan struct{})
	go func() {
		wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(storeLockShort + storeLockWait):
		t.Errorf("LockDecky(%v): waiters still waiting %v after their context ended", storeWeb1, storeLockWait)
		unlock()
		<-finished
	}
	unlock()
	// The lock still works: each handle takes it, and excludes the others.
	for h, l := range ls {
		u := storeLock(t, l, storeWeb1, fmt.Sprintf("through the %s once the waiters gave up", storeHandleName(h)))
		for h2, l2 := range ls {
			storeLockRefused(t, l2, storeWeb1, fmt.Sprintf("through the %s while the %s holds it", storeHandleName(h2), storeHandleName(h)))
		}
		u()
	}
}

func storeTestLockMissing(t *testing.T, c *storeSuite) {
	ctx := context.Background()
	hs, ls := c.lockers(t, storeSeed()) // each case releases what it takes
	for _, ref := range []servicelive.Ref{servicelive.FleetDecky("nope"), servicelive.TopologyDecky("t1", "nope"), servicelive.TopologyDecky("t9", "web1")} {
		t.Run(ref.String(), func(t *testing.T) {
			unlock := storeLock(t, ls[0], ref, "a missing decky")
			for h, l := range ls {
				storeLockRefused(t, l, ref, fmt.Sprintf("through the %s while another holds it", storeHandleName(h)))
			}
			unlock()
			storeLock(t, ls[len(ls)-1], ref, "once unlocked")()
			for h, s := range hs {
				if _, err := s.Get(ctx, ref); !errors.Is(err, servicelive.ErrNotFound) {
					t.Errorf("Get(%v) through the %s after locking it: error = %v, want one matching ErrNotFound", ref, storeHandleName(h), err)
				}
				if ref.Topology != "t9" {
					continue
				}
				if _, err := s.List(ctx, ref.Topology); !errors.Is(err, servicelive.ErrNotFound) {
					t.Errorf("List(%q) through the %s after locking a decky of it: error = %v, want one matching ErrNotFound", ref.Topology, storeHandleName(h), err)
				}
			}
		})
	}
}

func storeTestLockUnlock(t *testing.T, c *storeSuite) {
	_, ls := c.lockers(t, nil)
	// Take and release, alternating handles: each LockDecky finds the lock free.
	for i := range 10 {
		h := i % len(ls)
		storeLock(t, ls[h], storeWeb1, fmt.Sprintf("round %d through the %s", i, storeHandleName(h)))()
	}
	// A waiter blocked in LockDecky gets the lock once the holder releases it.
	unlock := storeLock(t, ls[0], storeWeb1, "holder")
	waiter := len(ls) - 1
	type result struct {
		unlock func()
		err    error
	}
	got := make(chan result, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		u, err := ls[waiter].LockDecky(ctx, storeWeb1)
		got <- result{u, err}
	}()
	select {
	case r := <-got:
		if r.err == nil {
			r.unlock()
		}
		t.Fatalf("LockDecky(%v) through the %s returned (error %v) while another holds the lock", storeWeb1, storeHandleName(waiter), r.err)
	case <-time.After(storeLockShort):
	}
	unlock()
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatalf("LockDecky(%v) through the %s, waiting for the holder: %v", storeWeb1, storeHandleName(waiter), r.err)
		}
		r.unlock()
	case <-time.After(storeLockWait):
		cancel()
		if r := <-got; r.err == nil {
			r.unlock()
		}
		t.Fatalf("LockDecky(%v) through the %s still waiting %v after the holder unlocked", storeWeb1, storeHandleName(waiter), storeLockWait)
	}
	storeLock(t, ls[0], storeWeb1, "after the waiter unlocked")()
}

func storeTestLockStore(t *testing.T, c *storeSuite) {
	hs, ls := c.lockers(t, storeSeed())
	unlock := storeLock(t, ls[0], storeWeb1, "holder")
	want := storeSeedDecky(t, "", "web1")
	for h, s := range hs {
		ctx, cancel := context.WithTimeout(context.Background(), storeLockWait)
		svc := fmt.Sprintf("locked%d", h)
		_, err := s.Update(ctx, storeWeb1, func(d *servicelive.Decky) error {
			d.Services = append(d.Services, svc)
			return nil
		})
		cancel()
		if err != nil {
			t.Fatalf("Update(%v) through the %s while its lock is held: %v", storeWeb1, storeHandleName(h), err)
		}
		want.Services = append(want.Services, svc)
		ctx, cancel = context.WithTimeout(context.Background(), storeLockWait)
		got, err := s.Get(ctx, storeWeb1)
		cancel()
		if err != nil {
			t.Fatalf("Get(%v) through the %s while its lock is held: %v", storeWeb1, storeHandleName(h), err)
		}
		storeCheckDecky(t, fmt.Sprintf("Get(%v) through the %s while its lock is held", storeWeb1, storeHandleName(h)), got, want)
		ctx, cancel = context.WithTimeout(context.Background(), storeLockWait)
		_, err = s.List(ctx, "")
		cancel()
		if err != nil {
			t.Fatalf("List through the %s while a lock is held: %v", storeHandleName(h), err)
		}
	}
	unlock()
	storeCheckStored(t, hs[0], storeWeb1, want)
}
