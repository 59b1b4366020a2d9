// Package filelock takes flock(2) locks that wait without polling and still
// honour a context.
//
// A lock is held by an open file description: two Lock calls conflict even
// in one process, which is what lets every handle of a store, in this
// process or another, queue on one file. The kernel drops the lock when the
// process dies, so a crash never leaves a lock behind.
package filelock

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Lock opens (creating it with mode 0600 if needed) the file at path and
// takes an exclusive flock on it, or a shared one when shared is set,
// waiting in the kernel until it is granted or ctx is done. On success it
// returns the function that releases the lock.
//
// When ctx ends first Lock returns ctx.Err() at once; the blocked flock is
// left to a goroutine that releases the lock as soon as the kernel grants
// it, so an abandoned wait never holds the lock for longer than that.
func Lock(ctx context.Context, path string, shared bool) (unlock func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	how := unix.LOCK_EX
	if shared {
		how = unix.LOCK_SH
	}
	fd := int(f.Fd())
	// The uncontended case needs no goroutine.
	if err := flock(fd, how|unix.LOCK_NB); err == nil {
		return release(f), nil
	} else if err != unix.EWOULDBLOCK {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	done := make(chan error, 1)
	go func() { done <- flock(fd, how) }()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		return release(f), nil
	case <-ctx.Done():
		go func() {
			<-done // granted (or failed): closing f releases it
			f.Close()
		}()
		return nil, ctx.Err()
	}
}

// release returns the function that drops the lock held by f.
func release(f *os.File) func() {
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close() // closing drops the lock anyway, even if LOCK_UN failed
	}
}

// flock calls flock(2), retrying when a signal interrupts it.
func flock(fd, how int) error {
	for {
		err := unix.Flock(fd, how)
		if err != unix.EINTR {
			return err
		}
	}
}
