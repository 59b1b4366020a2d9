package dockercompose

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"
	"golang.org/x/sync/errgroup"
)

const (
	// cleanupTimeout bounds the removal of a failed container, which runs
	// even when the caller's context is done.
	cleanupTimeout = 30 * time.Second
	// createRetryWindow bounds the retries of a create that conflicts with
	// a container of the same name (a leftover, or one still being made).
	createRetryWindow = 5 * time.Second
	// logTail is how many log lines a ContainerError keeps.
	logTail = 20
	// parallelism bounds concurrent Engine API calls of one Down or
	// RemoveProject.
	parallelism = 16
)

// keyedMutex serialises calls per key (project + service), honouring ctx
// while waiting. Entries live only while in use.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	ch   chan struct{} // holds one token while locked
	refs int
}

func (k *keyedMutex) lock(ctx context.Context, key string) (func(), error) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{ch: make(chan struct{}, 1)}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()

	release := func() {
		k.mu.Lock()
		e.refs--
		if e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

// forEach runs fn for every id, at most parallelism at once, and returns the
// first error.
func forEach(ctx context.Context, ids []string, fn func(context.Context, string) error) error {
	if len(ids) == 1 {
		return fn(ctx, ids[0])
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(parallelism)
	for _, id := range ids {
		g.Go(func() error { return fn(ctx, id) })
	}
	return g.Wait()
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// tailLogs returns the container's last n log lines (stdout and stderr,
// interleaved by the engine), or nil when they cannot be had.
func (c *Composer) tailLogs(ctx context.Context, ref string, n int) []string {
	tty := false
	if res, err := c.apiClient.ContainerInspect(ctx, ref, client.ContainerInspectOptions{}); err == nil && res.Container.Config != nil {
		tty = res.Container.Config.Tty
	}
	rc, err := c.apiClient.ContainerLogs(ctx, ref, client.ContainerLogsOptions{
		ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(n),
	})
	if err != nil {
		return nil
	}
	defer rc.Close()
	var buf bytes.Buffer
	r := io.LimitReader(rc, 1<<20)
	if tty {
		_, err = io.Copy(&buf, r)
	} else {
		_, err = stdcopy.StdCopy(&buf, &buf, r)
	}
	if err != nil && buf.Len() == 0 {
		return nil
	}
	var lines []string
	sc := bufio.NewScanner(&buf)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		if l := strings.TrimRight(sc.Text(), "\r"); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}
