//go:build linux

package dockercompose_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/moby/moby/client"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/decnet/servicelive/dockercompose"
)

// recorder is a slog.Handler that records what it handles.
type recorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec.Clone())
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) messages(level slog.Level) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.records {
		if rec.Level == level {
			out = append(out, rec.Message)
		}
	}
	return out
}

// captureStdio redirects the process's fds 1 and 2 to a pipe until the
// returned function is called, which restores them and returns what was
// written. Nothing may log through the testing package meanwhile.
func captureStdio(t *testing.T) func() string {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	var saved [3]int
	for _, fd := range []int{1, 2} {
		saved[fd], err = syscall.Dup(fd)
		require.NoError(t, err)
		require.NoError(t, syscall.Dup3(int(w.Fd()), fd, 0))
	}
	var buf bytes.Buffer
	done := make(chan struct{})
	go func() { defer close(done); _, _ = io.Copy(&buf, r) }()
	return func() string {
		for _, fd := range []int{1, 2} {
			_ = syscall.Dup3(saved[fd], fd, 0)
			_ = syscall.Close(saved[fd])
		}
		_ = w.Close()
		<-done
		_ = r.Close()
		return buf.String()
	}
}

// TestSDKLogs brings up a service whose project's default network exists
// without compose's labels, which the Compose SDK warns about through
// logrus' standard logger: the warning goes to the Composer's logger and
// not a byte to the process's stdout or stderr, while another user's
// logrus entries are written as before.
func TestSDKLogs(t *testing.T) {
	// Not parallel: it redirects the process's stdout and stderr.
	api, image := engine(t)
	ctx := t.Context()
	rec := &recorder{}
	c := newComposer(t, dockercompose.WithLogger(slog.New(rec)))
	name := uniqueProject(t, api)

	// The project's default network, made without compose's labels.
	netRes, err := api.NetworkCreate(ctx, name+"_default", client.NetworkCreateOptions{Driver: "bridge"})
	require.NoError(t, err)
	t.Cleanup(func() {
		purgeProject(t, api, name) // its containers first
		_, _ = api.NetworkRemove(context.Background(), netRes.ID, client.NetworkRemoveOptions{})
	})
	p := newProject(name)
	addBase(p, "web1", image, "", "")

	restore := captureStdio(t)
	upErr := c.Up(ctx, p, "web1")
	logrus.Warn("sltest: another user of logrus")
	out := restore()

	require.NoError(t, upErr)
	t.Logf("written to stdout and stderr: %q", out)
	warnings := rec.messages(slog.LevelWarn)
	t.Logf("the Composer's logger got: %q", warnings)
	assert.True(t, slices.ContainsFunc(warnings, func(m string) bool { return strings.Contains(m, "exists but was not created by compose") }),
		"the SDK's warning reached the logger: %q", warnings)
	assert.NotContains(t, out, "not created by compose", "the SDK wrote nothing")
	assert.Contains(t, out, "sltest: another user of logrus", "another user's entry is written as before")
	assert.Equal(t, 1, strings.Count(out, "\n"), "nothing else was written: %q", out)
}
