package sqlstore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/sqlstore"
)

// lockPrompt bounds what must happen at once: taking a free lock, giving
// up once ctx is done. It is generous for a loaded 2-core machine.
const lockPrompt = 2 * time.Second

// lock takes the lock of ref through s, failing t unless it has it within
// lockPrompt. It returns unlock.
func lock(t *testing.T, s *sqlstore.Store, ref servicelive.Ref) func() {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), lockPrompt)
	defer cancel()
	unlock, err := s.LockDecky(ctx, ref)
	if err != nil {
		t.Fatalf("LockDecky(%v): %v", ref, err)
	}
	return unlock
}

// TestLockDeckyExcludesHandles checks that goroutines taking one decky's
// lock through two handles on one database never overlap.
func TestLockDeckyExcludesHandles(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		a := openFresh(t, b)
		handles := []*sqlstore.Store{a, reopen(t, a)}
		ref := servicelive.FleetDecky("web1")
		var (
			inside, entries atomic.Int32
			wg              sync.WaitGroup
		)
		for g := range 6 {
			s := handles[g%2]
			wg.Go(func() {
				for range 10 {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					unlock, err := s.LockDecky(ctx, ref)
					cancel()
					if err != nil {
						t.Errorf("LockDecky: %v", err)
						return
					}
					if n := inside.Add(1); n != 1 {
						t.Errorf("%d holders of one decky's lock at once", n)
					}
					entries.Add(1)
					time.Sleep(200 * time.Microsecond)
					inside.Add(-1)
					unlock()
				}
			})
		}
		wg.Wait()
		if n := entries.Load(); n != 60 {
			t.Errorf("%d critical sections, want 60", n)
		}
	})
}

// TestLockDeckyContext checks that a waiter gives up promptly with ctx's
// error, whether ctx ends by deadline or by cancel, while another handle
// holds the lock; and that the abandoned waits leave the lock working.
func TestLockDeckyContext(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		a := openFresh(t, b)
		other := reopen(t, a)
		ref := servicelive.TopologyDecky("t1", "gw")
		unlock := lock(t, a, ref)

		tests := []struct {
			name string
			ctx  func() (context.Context, context.CancelFunc)
			want error
		}{
			{"deadline", func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 100*time.Millisecond)
			}, context.DeadlineExceeded},
			{"cancel", func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(100*time.Millisecond, cancel)
				return ctx, cancel
			}, context.Canceled},
			{"done already", func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx, cancel
			}, context.Canceled},
		}
		for _, s := range []*sqlstore.Store{other, a} { // a: the lock is not reentrant
			for _, tt := range tests {
				ctx, cancel := tt.ctx()
				start := time.Now()
				u, err := s.LockDecky(ctx, ref)
				waited := time.Since(start)
				cancel()
				if err == nil {
					u()
					t.Fatalf("%s: LockDecky succeeded while another holds the lock", tt.name)
				}
				if !errors.Is(err, tt.want) {
					t.Errorf("%s: LockDecky error = %v, want one matching %v", tt.name, err, tt.want)
				}
				if waited > lockPrompt {
					t.Errorf("%s: LockDecky returned %v after ctx ended, want at once", tt.name, waited)
				}
			}
		}
		unlock()
		// The abandoned waits hold nothing: both handles get the lock.
		lock(t, other, ref)()
		lock(t, a, ref)()
	})
}

// TestLockDeckyIndependent checks that the locks of different deckies do
// not block each other.
func TestLockDeckyIndependent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		a := openFresh(t, b)
		other := reopen(t, a)
		held := lock(t, a, servicelive.FleetDecky("web1"))
		defer held()
		for _, ref := range []servicelive.Ref{
			servicelive.FleetDecky("web2"),
			servicelive.TopologyDecky("t1", "web1"),
			servicelive.TopologyDecky("T1", "web1"),
			servicelive.TopologyDecky("t1-web1", "x"),
		} {
			for _, s := range []*sqlstore.Store{a, other} {
				lock(t, s, ref)()
			}
		}
	})
}

// TestLockDeckyWaiterGetsLock checks that unlock wakes a waiter of another
// handle.
func TestLockDeckyWaiterGetsLock(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		a := openFresh(t, b)
		other := reopen(t, a)
		ref := servicelive.FleetDecky("web1")
		unlock := lock(t, a, ref)
		got := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			u, err := other.LockDecky(ctx, ref)
			if err == nil {
				u()
			}
			got <- err
		}()
		select {
		case err := <-got:
			t.Fatalf("LockDecky returned (%v) while another handle holds the lock", err)
		case <-time.After(200 * time.Millisecond):
		}
		unlock()
		select {
		case err := <-got:
			if err != nil {
				t.Fatalf("waiter: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the waiter did not get the lock after unlock")
		}
	})
}

// TestLockDeckyBadRef checks that a malformed ref is refused.
func TestLockDeckyBadRef(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := openFresh(t, b)
		for _, ref := range []servicelive.Ref{
			servicelive.FleetDecky("../x"), servicelive.FleetDecky(""), servicelive.TopologyDecky("a/b", "x"),
		} {
			if _, err := s.LockDecky(context.Background(), ref); !errors.Is(err, servicelive.ErrInvalidService) {
				t.Errorf("LockDecky(%#v) error = %v, want one matching ErrInvalidService", ref, err)
			}
		}
	})
}

// TestLockDeckyInMemory checks the in-process locks of in-memory SQLite
// databases: they exclude within one database, and two private databases
// do not share them, while two handles on one shared-cache database do.
func TestLockDeckyInMemory(t *testing.T) {
	ref := servicelive.FleetDecky("web1")
	a := open(t, sqlstore.DriverSQLite, ":memory:")
	b := open(t, sqlstore.DriverSQLite, ":memory:")
	unlock := lock(t, a, ref)
	lock(t, b, ref)() // another database: another lock
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := a.LockDecky(ctx, ref); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second LockDecky on one database: error = %v, want DeadlineExceeded", err)
	}
	unlock()

	dsn := fmt.Sprintf("file:locktest%d?mode=memory&cache=shared", time.Now().UnixNano())
	c := open(t, sqlstore.DriverSQLite, dsn)
	d := open(t, sqlstore.DriverSQLite, dsn)
	unlock = lock(t, c, ref)
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := d.LockDecky(ctx, ref); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("LockDecky on a second handle of a shared-cache database: error = %v, want DeadlineExceeded", err)
	}
	unlock()
	lock(t, d, ref)()
	if n := sqlstore.MemLocks(); n != 0 {
		t.Errorf("%d in-memory locks remain after every unlock", n)
	}
}

// TestLockDeckyAcrossProcesses checks the lock between this process and a
// helper process (this test binary run again, see sqlstore.TestMain): each
// waits while the other holds the lock, and gets it once it is released.
func TestLockDeckyAcrossProcesses(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		driver, dsn := b.fresh(t)
		s := open(t, driver, dsn)
		ref := servicelive.FleetDecky("web1")

		// The helper holds the lock: this process waits.
		h := startHelper(t, driver, dsn, ref.Decky)
		h.expect(t, "locked", time.Minute)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if _, err := s.LockDecky(ctx, ref); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("LockDecky while another process holds the lock: error = %v, want DeadlineExceeded", err)
		}
		got := make(chan func(), 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			u, err := s.LockDecky(ctx, ref)
			if err != nil {
				t.Errorf("LockDecky after the other process unlocks: %v", err)
				u = func() {}
			}
			got <- u
		}()
		h.release(t)
		var unlock func()
		select {
		case unlock = <-got:
		case <-time.After(time.Minute):
			t.Fatal("no lock a minute after the other process released it")
		}

		// This process holds the lock: a new helper waits.
		h = startHelper(t, driver, dsn, ref.Decky)
		h.expectNothing(t, 500*time.Millisecond)
		unlock()
		h.expect(t, "locked", time.Minute)
		h.release(t)
	})
}

// helper is a running helper process.
type helper struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

// startHelper starts a helper process taking the lock of fleet decky in the
// store driver and dsn name. It is killed if still running when t ends.
func startHelper(t *testing.T, driver, dsn, decky string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), sqlstore.HelperEnv+"="+decky,
		sqlstore.HelperDriverEnv+"="+driver, sqlstore.HelperDSNEnv+"="+dsn)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd: cmd, stdin: stdin, lines: make(chan string, 16)}
	go func() {
		defer close(h.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return h
}

// expect fails t unless the helper prints want within d.
func (h *helper) expect(t *testing.T, want string, d time.Duration) {
	t.Helper()
	select {
	case line, ok := <-h.lines:
		if !ok || line != want {
			t.Fatalf("helper process said %q (open: %v), want %q", line, ok, want)
		}
	case <-time.After(d):
		t.Fatalf("helper process did not say %q within %v", want, d)
	}
}

// expectNothing fails t if the helper prints anything within d.
func (h *helper) expectNothing(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case line := <-h.lines:
		t.Fatalf("helper process said %q while this process holds the lock", line)
	case <-time.After(d):
	}
}

// release makes the helper unlock and exit, and waits for it.
func (h *helper) release(t *testing.T) {
	t.Helper()
	h.stdin.Close()
	h.expect(t, "unlocked", time.Minute)
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("helper process: %v", err)
	}
}

// TestLockDeckyUnlockTwice checks that a second unlock does nothing: it
// neither blocks nor releases a lock taken since by someone else.
func TestLockDeckyUnlockTwice(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		a := openFresh(t, b)
		other := reopen(t, a)
		ref := servicelive.FleetDecky("web1")
		unlock := lock(t, a, ref)
		unlock()
		held := lock(t, other, ref)
		defer held()
		unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if _, err := a.LockDecky(ctx, ref); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("LockDecky after a second unlock of an old lock: error = %v, want DeadlineExceeded (still held by the other handle)", err)
		}
	})
}
