package filelock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestLockExcludes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	var holders, maxHolders atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				unlock, err := Lock(context.Background(), path, false)
				if err != nil {
					t.Error(err)
					return
				}
				n := holders.Add(1)
				for {
					m := maxHolders.Load()
					if n <= m || maxHolders.CompareAndSwap(m, n) {
						break
					}
				}
				time.Sleep(50 * time.Microsecond)
				holders.Add(-1)
				unlock()
			}
		}()
	}
	wg.Wait()
	if m := maxHolders.Load(); m != 1 {
		t.Fatalf("%d holders at once, want 1", m)
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("lock file: %v %v", info, err)
	}
}

func TestSharedLocks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	r1, err := Lock(context.Background(), path, true)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Lock(context.Background(), path, true)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := Lock(ctx, path, false); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("exclusive lock beside two shared ones: %v", err)
	}
	r1()
	r2()
	w, err := Lock(context.Background(), path, false)
	if err != nil {
		t.Fatal(err)
	}
	w()
}

// TestLockHonoursContext: a waiter gives up when its ctx ends, and its
// abandoned wait does not keep the lock once the holder lets go.
func TestLockHonoursContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	unlock, err := Lock(context.Background(), path, false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := Lock(ctx, path, false); done <- err }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a cancelled waiter did not return")
	}
	unlock()
	// The abandoned wait is granted, then released at once.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	again, err := Lock(ctx2, path, false)
	if err != nil {
		t.Fatalf("lock after an abandoned wait: %v", err)
	}
	again()
	if _, err := Lock(ctx, path, false); !errors.Is(err, context.Canceled) {
		t.Fatalf("lock with a done ctx: %v", err)
	}
}

func TestDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "locks")
	d1, err := NewDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := NewDir(dir) // another handle: as another process would
	if err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("lock dir: %v %v", info, err)
	}
	a := RefName("", "web1")
	unlock, err := d1.Lock(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	// Same name, other handle: waits. Other names: free.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := d2.Lock(ctx, a); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("same name through another Dir: %v", err)
	}
	if _, err := d1.Lock(ctx, a); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("same name through the same Dir: %v", err)
	}
	for _, name := range []string{RefName("", "web2"), RefName("web1", "web1"), RefName("T", "web1")} {
		u, err := d2.Lock(context.Background(), name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		u()
	}
	unlock()
	u, err := d2.Lock(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	u()
	if n := d1.local.Len(); n != 0 {
		t.Fatalf("%d names still tracked after every lock was released", n)
	}
	for _, bad := range []string{"", ".", "..", "a/b"} {
		if _, err := d1.Lock(context.Background(), bad); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
}

func TestRefNameDistinct(t *testing.T) {
	if RefName("", "a") == RefName("a", "") || RefName("a", "b") == RefName("", "a.b") {
		t.Fatal("RefName collides")
	}
}
