package servicelive_test

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"github.com/decnet/servicelive"
)

var sentinels = []struct {
	name string
	err  error
}{
	{"ErrNotFound", servicelive.ErrNotFound},
	{"ErrConflict", servicelive.ErrConflict},
	{"ErrInvalidService", servicelive.ErrInvalidService},
}

func TestSentinelsDistinct(t *testing.T) {
	for i, a := range sentinels {
		if a.err == nil || a.err.Error() == "" {
			t.Errorf("%s is nil or has no message", a.name)
			continue
		}
		for j, b := range sentinels {
			if i != j && errors.Is(a.err, b.err) {
				t.Errorf("%s matches %s", a.name, b.name)
			}
		}
	}
}

func TestErrorMessage(t *testing.T) {
	engine := errors.New("container exited with code 1")
	tests := []struct {
		name string
		err  *servicelive.Error
		want string
	}{
		{"add conflict",
			&servicelive.Error{Op: "add", Ref: servicelive.FleetDecky("web1"), Service: "ssh", Kind: servicelive.ErrConflict, Msg: "service already on decky"},
			"servicelive: add ssh to fleet/web1: service already on decky"},
		{"remove conflict",
			&servicelive.Error{Op: "remove", Ref: servicelive.FleetDecky("web1"), Service: "ssh", Kind: servicelive.ErrConflict, Msg: "service not on decky"},
			"servicelive: remove ssh from fleet/web1: service not on decky"},
		{"other op with service and ref",
			&servicelive.Error{Op: "deploy", Ref: servicelive.TopologyDecky("lab", "web1"), Service: "ssh", Kind: servicelive.ErrNotFound, Msg: "decky not found"},
			"servicelive: deploy ssh on topology/lab/web1: decky not found"},
		{"topology ref",
			&servicelive.Error{Op: "add", Ref: servicelive.TopologyDecky("lab", "db"), Service: "ftp", Kind: servicelive.ErrNotFound, Msg: "topology not found"},
			"servicelive: add ftp to topology/lab/db: topology not found"},
		{"service only",
			&servicelive.Error{Op: "add", Service: "nope", Kind: servicelive.ErrInvalidService, Msg: "unknown service"},
			"servicelive: add nope: unknown service"},
		{"ref only",
			&servicelive.Error{Op: "deploy", Ref: servicelive.FleetDecky("web1"), Kind: servicelive.ErrNotFound, Msg: "decky not found"},
			"servicelive: deploy fleet/web1: decky not found"},
		{"kind without msg",
			&servicelive.Error{Op: "add", Ref: servicelive.FleetDecky("web1"), Service: "ssh", Kind: servicelive.ErrConflict},
			"servicelive: add ssh to fleet/web1: conflict"},
		{"engine error",
			&servicelive.Error{Op: "add", Ref: servicelive.FleetDecky("web1"), Service: "ssh", Err: engine},
			"servicelive: add ssh to fleet/web1: container exited with code 1"},
		{"msg and engine error",
			&servicelive.Error{Op: "remove", Ref: servicelive.FleetDecky("web1"), Service: "ssh", Msg: "compose down", Err: engine},
			"servicelive: remove ssh from fleet/web1: compose down: container exited with code 1"},
		{"kind and err: the cause is shown, not the kind",
			&servicelive.Error{Op: "add", Ref: servicelive.FleetDecky("web1"), Service: "ssh", Kind: servicelive.ErrInvalidService, Err: &servicelive.ConfigError{Service: "ssh", Key: "port", Reason: "bad"}},
			"servicelive: add ssh to fleet/web1: service ssh: config port: bad"},
		{"op only",
			&servicelive.Error{Op: "deploy"},
			"servicelive: deploy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q,\nwant      %q", got, tt.want)
			}
		})
	}
}

func TestErrorIs(t *testing.T) {
	engine := errors.New("engine: no such container")
	wrappedEngine := fmt.Errorf("compose up: %w", engine)
	tests := []struct {
		name string
		err  error
		kind error // the one sentinel it matches, or nil for none
		also []error
	}{
		{"not found", &servicelive.Error{Op: "add", Kind: servicelive.ErrNotFound}, servicelive.ErrNotFound, nil},
		{"conflict", &servicelive.Error{Op: "add", Kind: servicelive.ErrConflict, Msg: "x"}, servicelive.ErrConflict, nil},
		{"invalid", &servicelive.Error{Op: "add", Kind: servicelive.ErrInvalidService}, servicelive.ErrInvalidService, nil},
		{"engine only", &servicelive.Error{Op: "add", Err: engine}, nil, []error{engine}},
		{"engine wrapped twice", &servicelive.Error{Op: "add", Err: wrappedEngine}, nil, []error{engine, wrappedEngine}},
		{"kind and cause", &servicelive.Error{Op: "add", Kind: servicelive.ErrNotFound, Err: fs.ErrNotExist}, servicelive.ErrNotFound, []error{fs.ErrNotExist}},
		{"in a wrapper", fmt.Errorf("api: %w", &servicelive.Error{Op: "remove", Kind: servicelive.ErrConflict}), servicelive.ErrConflict, nil},
		{"engine in a wrapper", fmt.Errorf("api: %w", &servicelive.Error{Op: "remove", Err: engine}), nil, []error{engine}},
		{"no kind, no cause", &servicelive.Error{Op: "add", Msg: "odd"}, nil, nil},
		{"config error", &servicelive.ConfigError{Service: "ssh", Key: "port", Reason: "bad"}, servicelive.ErrInvalidService, nil},
		{"config error in Error", &servicelive.Error{Op: "add", Kind: servicelive.ErrInvalidService, Err: &servicelive.ConfigError{Service: "ssh"}}, servicelive.ErrInvalidService, nil},
		{"config error in Error without kind", &servicelive.Error{Op: "add", Err: &servicelive.ConfigError{Service: "ssh"}}, servicelive.ErrInvalidService, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, s := range sentinels {
				if got, want := errors.Is(tt.err, s.err), s.err == tt.kind; got != want {
					t.Errorf("errors.Is(%q, %s) = %v, want %v", tt.err, s.name, got, want)
				}
			}
			for _, target := range tt.also {
				if !errors.Is(tt.err, target) {
					t.Errorf("errors.Is(%q, %q) = false, want true", tt.err, target)
				}
			}
			if errors.Is(tt.err, errors.New("unrelated")) {
				t.Errorf("%q matches an unrelated error", tt.err)
			}
			var e *servicelive.Error
			if _, isErr := tt.err.(*servicelive.ConfigError); !isErr && !errors.As(tt.err, &e) {
				t.Errorf("errors.As(%q, *Error) = false", tt.err)
			}
		})
	}
}

func TestErrorUnwrap(t *testing.T) {
	engine := errors.New("boom")
	tests := []struct {
		name string
		err  *servicelive.Error
		want []error
	}{
		{"neither", &servicelive.Error{}, nil},
		{"kind", &servicelive.Error{Kind: servicelive.ErrConflict}, []error{servicelive.ErrConflict}},
		{"err", &servicelive.Error{Err: engine}, []error{engine}},
		{"both, kind first", &servicelive.Error{Kind: servicelive.ErrNotFound, Err: engine}, []error{servicelive.ErrNotFound, engine}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.err.Unwrap()
			if len(got) != len(tt.want) {
				t.Fatalf("Unwrap() = %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("Unwrap()[%d] = %v, want %v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestErrorAsCause(t *testing.T) {
	var pathErr *fs.PathError
	err := error(&servicelive.Error{Op: "deploy", Err: &fs.PathError{Op: "open", Path: "/x", Err: fs.ErrPermission}})
	if !errors.As(err, &pathErr) || pathErr.Path != "/x" {
		t.Fatalf("errors.As(*fs.PathError) failed on %q", err)
	}
	if !errors.Is(err, fs.ErrPermission) {
		t.Errorf("errors.Is(fs.ErrPermission) failed on %q", err)
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			t.Errorf("an I/O failure matches %s", s.name)
		}
	}
}

func TestConfigErrorMessage(t *testing.T) {
	tests := []struct {
		err  *servicelive.ConfigError
		want string
	}{
		{&servicelive.ConfigError{Service: "ssh", Key: "port", Reason: `"eighty" is not an integer`},
			`servicelive: service ssh: config port: "eighty" is not an integer`},
		{&servicelive.ConfigError{Service: "ssh", Reason: "fleet singleton"},
			"servicelive: service ssh: fleet singleton"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestConfigErrorAs(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", &servicelive.ConfigError{Service: "ssh", Key: "port", Reason: "bad"})
	var ce *servicelive.ConfigError
	if !errors.As(err, &ce) || ce.Service != "ssh" || ce.Key != "port" {
		t.Fatalf("errors.As(*ConfigError) on %q = %+v", err, ce)
	}
	var e *servicelive.Error
	if errors.As(err, &e) {
		t.Errorf("a bare ConfigError is an *Error")
	}
}
