package dockercompose

import (
	"fmt"
	"strings"
)

// ContainerError reports a container that Up started but that does not run:
// the engine refused to start it, or it had stopped (or was restarting) when
// Up looked right after the start. Up removed the container; the error keeps
// what the engine said and the container's last log lines. Up returns it
// wrapped: use errors.As.
type ContainerError struct {
	Container   string   // the container's name
	State       string   // the engine's state when Up looked: "exited", "dead", "restarting", "created", ...
	ExitCode    int      // the exit code, when it exited
	EngineError string   // the engine's error for the container (State.Error), if any
	Logs        []string // its last log lines, oldest first (stdout and stderr)
	Err         error    // the engine's error when the start itself failed, or the context's
	RemoveErr   error    // set when removing the container failed too
}

// Error describes the container, e.g. "container decnet.web1-ssh exited
// with code 1; last log lines: servicelive-test: fail mode: exiting with
// status 1".
func (e *ContainerError) Error() string {
	var b strings.Builder
	b.WriteString("container ")
	b.WriteString(e.Container)
	switch {
	case e.Err != nil:
		fmt.Fprintf(&b, " did not start: %v", e.Err)
	case e.State == "exited":
		fmt.Fprintf(&b, " exited with code %d", e.ExitCode)
	case e.State != "":
		fmt.Fprintf(&b, " is %s, not running", e.State)
	default:
		b.WriteString(" is not running")
	}
	if e.EngineError != "" && (e.Err == nil || !strings.Contains(e.Err.Error(), e.EngineError)) {
		fmt.Fprintf(&b, " (engine: %s)", e.EngineError)
	}
	if len(e.Logs) > 0 {
		b.WriteString("; last log lines: ")
		b.WriteString(strings.Join(e.Logs, " | "))
	}
	if e.RemoveErr != nil {
		fmt.Fprintf(&b, "; removing it failed too: %v", e.RemoveErr)
	}
	return b.String()
}

// Unwrap returns the engine's or the context's error, if any.
func (e *ContainerError) Unwrap() error { return e.Err }
