package servicelive

import (
	"errors"
	"fmt"
	"testing"
)

func TestHostFileName(t *testing.T) {
	for host, want := range map[string]string{
		"":                   "compose.yaml",
		"site-b":             "compose.host.site-b.yaml",
		"10.0.0.2":           "compose.host.10.0.0.2.yaml",
		"ssh://ops@10.0.0.3": "compose.host.ssh___ops_10.0.0.3_",
		"Site-B":             "compose.host._ite-_",
	} {
		if got := hostFileName(host); len(got) < len(want) || got[:len(want)] != want {
			t.Errorf("hostFileName(%q) = %q, want prefix %q", host, got, want)
		}
	}
	seen := map[string]string{}
	for _, h := range []string{"a_b", "a-b", "A-b", "unix:///a/b", "unix:///a_b", "ssh://x", "ssh:/x"} {
		f := hostFileName(h)
		if o, dup := seen[f]; dup {
			t.Errorf("%q and %q share %s", h, o, f)
		}
		seen[f] = h
	}
}

func TestFailedHosts(t *testing.T) {
	a := &HostError{Host: "a", Err: errors.New("x")}
	b := &HostError{Host: "", Err: errors.New("y")}
	if hosts, ok := failedHosts(errors.Join(a, fmt.Errorf("wrapped: %w", b))); !ok || len(hosts) != 2 || hosts["a"] == nil || hosts[""] == nil {
		t.Errorf("hosts %v ok %v", hosts, ok)
	}
	if _, ok := failedHosts(errors.Join(a, errors.New("other"))); ok {
		t.Error("a non-host error is partial")
	}
	if _, ok := failedHosts(nil); ok {
		t.Error("nil is partial")
	}
}
