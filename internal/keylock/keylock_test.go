package keylock

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestKeyLock(t *testing.T) {
	var l Map
	ctx := context.Background()
	unlock, err := l.Lock(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	// Another key does not wait.
	unlockB, err := l.Lock(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	unlockB()
	// The same key waits, honouring ctx.
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if _, err := l.Lock(short, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	unlock()
	// Entries are freed when nobody holds or awaits them.
	if n := l.Len(); n != 0 {
		t.Fatalf("%d entries left", n)
	}
	// Mutual exclusion under contention.
	var wg sync.WaitGroup
	counter := 0
	for range 32 {
		wg.Go(func() {
			for range 100 {
				u, err := l.Lock(ctx, "k")
				if err != nil {
					t.Error(err)
					return
				}
				counter++
				u()
			}
		})
	}
	wg.Wait()
	if counter != 3200 || l.Len() != 0 {
		t.Fatalf("counter %d, entries %d", counter, l.Len())
	}
}
