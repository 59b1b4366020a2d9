package dockercompose

import (
	"errors"
	"testing"
)

func TestContainerErrorMessage(t *testing.T) {
	for _, tt := range []struct {
		e    ContainerError
		want string
	}{
		{ContainerError{Container: "c", State: "exited", ExitCode: 1, Removed: true}, "container c exited with code 1"},
		{ContainerError{Container: "c", State: "restarting", Removed: true}, "container c is restarting, not running"},
		// Up saw it running again, started anew by its restart policy.
		{ContainerError{Container: "c", State: "running", Logs: []string{"boom"}, Removed: true},
			"container c exited and was restarted by its restart policy; last log lines: boom"},
		{ContainerError{Container: "c", Err: errors.New("no such file")}, "container c did not start: no such file; left in place (this up did not create it)"},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got  %q\nwant %q", got, tt.want)
		}
	}
}
