package dockercompose

import (
	"context"
	"log/slog"
	"runtime"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"
)

// The Compose SDK logs its warnings (a declared network that exists without
// compose's labels, a secret file that does not exist, ...) through logrus'
// package-level functions, that is through logrus' standard logger, which
// writes them to the process's stderr. It takes no logger from the context
// (it does not use containerd/log's G(ctx)), so there is nothing to set per
// call. And logrus writes every entry its level enables: a hook may change
// an entry but not cancel its write; only the standard logger's Formatter
// or Out, which are process-wide, decide what is written.
//
// So New wraps the standard logger's Formatter, once per process (again if
// something replaced the wrapper since), in sdkFormatter, which formats
// every entry exactly as the formatter it wraps does, except the entries
// the SDK makes while a call of a Composer is in progress: those go to the
// loggers of the Composers working at that moment (WithLogger) and nothing
// is written. What remains process-wide:
//
//   - an entry is told to be the SDK's by its caller's stack (a frame of
//     github.com/docker/compose/v5), not by the call that caused it: with
//     several Composers of different loggers working at once, each of their
//     loggers gets the SDK's entries of that moment, and an entry the SDK
//     makes for another user of the SDK in the process during a Composer's
//     call goes to the Composer's logger too;
//   - only the entries logrus' level enables are made at all (Info by
//     default: the SDK's debug entries are not seen);
//   - logrus.StandardLogger().Formatter is the wrapper, not the formatter
//     that was set: code that type-asserts it sees sdkFormatter (its next
//     field is the formatter it wraps); a formatter set afterwards (with
//     logrus.SetFormatter) replaces the wrapper until the next New.
var sdkLog = &sdkRouter{active: map[*slog.Logger]int{}}

// sdkRouter routes the SDK's logrus entries to the loggers of the calls in
// progress.
type sdkRouter struct {
	installMu sync.Mutex

	mu     sync.Mutex
	active map[*slog.Logger]int // loggers of the calls in progress, counted
}

// install wraps logrus' standard logger's Formatter, unless it is wrapped.
func (r *sdkRouter) install() {
	r.installMu.Lock()
	defer r.installMu.Unlock()
	std := logrus.StandardLogger()
	if _, ok := std.Formatter.(*sdkFormatter); ok {
		return
	}
	std.SetFormatter(&sdkFormatter{next: std.Formatter, router: r})
}

// enter routes the SDK's entries to l until the returned function is
// called.
func (r *sdkRouter) enter(l *slog.Logger) func() {
	r.mu.Lock()
	r.active[l]++
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.active[l]--; r.active[l] <= 0 {
			delete(r.active, l)
		}
	}
}

// loggers returns the loggers of the calls in progress.
func (r *sdkRouter) loggers() []*slog.Logger {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*slog.Logger, 0, len(r.active))
	for l := range r.active {
		out = append(out, l)
	}
	return out
}

// sdkFormatter is the logrus Formatter that diverts the SDK's entries.
type sdkFormatter struct {
	next   logrus.Formatter
	router *sdkRouter
}

// Format formats entry with the wrapped formatter, or, for an entry of the
// SDK while calls are in progress, logs it to their loggers and returns
// nothing to write.
func (f *sdkFormatter) Format(entry *logrus.Entry) ([]byte, error) {
	if loggers := f.router.loggers(); len(loggers) > 0 && fromSDK() {
		level, attrs := slogLevel(entry.Level), make([]slog.Attr, 0, len(entry.Data)+1)
		attrs = append(attrs, slog.String("from", "compose-sdk"))
		for k, v := range entry.Data {
			attrs = append(attrs, slog.Any(k, v))
		}
		for _, l := range loggers {
			l.LogAttrs(context.Background(), level, "dockercompose: "+entry.Message, attrs...)
		}
		return nil, nil
	}
	return f.next.Format(entry)
}

// sdkPackage prefixes the functions of the Compose SDK.
const sdkPackage = "github.com/docker/compose/v5/"

// fromSDK reports whether the logrus entry being formatted was made by the
// Compose SDK: whether a function of the SDK is on the stack.
func fromSDK() bool {
	var pcs [48]uintptr
	n := runtime.Callers(3, pcs[:])
	frames := runtime.CallersFrames(pcs[:n])
	for {
		fr, more := frames.Next()
		if strings.HasPrefix(fr.Function, sdkPackage) {
			return true
		}
		if !more {
			return false
		}
	}
}

// slogLevel maps a logrus level to slog's.
func slogLevel(l logrus.Level) slog.Level {
	switch {
	case l <= logrus.ErrorLevel:
		return slog.LevelError
	case l == logrus.WarnLevel:
		return slog.LevelWarn
	case l == logrus.InfoLevel:
		return slog.LevelInfo
	default:
		return slog.LevelDebug
	}
}
