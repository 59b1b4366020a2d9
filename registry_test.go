package servicelive_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/decnet/servicelive"
)

// imageService returns a minimal valid service running an image.
func imageService(name string) servicelive.Service {
	return servicelive.Service{Name: name, Image: "decnet/" + name + ":latest"}
}

// checkInvalidService asserts err matches ErrInvalidService and no other
// sentinel, with a "servicelive: " message.
func checkInvalidService(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("want an error matching ErrInvalidService, got nil")
	}
	if !errors.Is(err, servicelive.ErrInvalidService) {
		t.Errorf("error %q does not match ErrInvalidService", err)
	}
	if errors.Is(err, servicelive.ErrNotFound) || errors.Is(err, servicelive.ErrConflict) {
		t.Errorf("error %q matches ErrNotFound or ErrConflict", err)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "servicelive: ") {
		t.Errorf("message %q does not start with %q", msg, "servicelive: ")
	}
}

func TestNewRegistry(t *testing.T) {
	r, err := servicelive.NewRegistry(imageService("ssh"), imageService("http"), imageService("ftp"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Names(), []string{"ftp", "http", "ssh"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
	for _, name := range []string{"ssh", "http", "ftp"} {
		s, ok := r.Lookup(name)
		if !ok || s.Name != name || s.Image != "decnet/"+name+":latest" {
			t.Errorf("Lookup(%q) = %+v, %v", name, s, ok)
		}
	}
}

func TestNewRegistryEmpty(t *testing.T) {
	r, err := servicelive.NewRegistry()
	if err != nil || r == nil {
		t.Fatalf("NewRegistry() = %v, %v", r, err)
	}
	if names := r.Names(); len(names) != 0 {
		t.Errorf("Names() = %v, want empty", names)
	}
	if _, ok := r.Lookup("ssh"); ok {
		t.Error("Lookup on an empty registry found something")
	}
}

func TestNewRegistryErrors(t *testing.T) {
	tests := []struct {
		name     string
		services []servicelive.Service
	}{
		{"duplicate", []servicelive.Service{imageService("ssh"), imageService("ssh")}},
		{"duplicate not adjacent", []servicelive.Service{imageService("ssh"), imageService("http"), imageService("ssh")}},
		{"invalid name", []servicelive.Service{imageService("ssh"), imageService("SSH")}},
		{"no image nor build", []servicelive.Service{{Name: "ssh"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := servicelive.NewRegistry(tt.services...)
			checkInvalidService(t, err)
			if r != nil {
				t.Errorf("NewRegistry returned a registry %v with its error", r)
			}
		})
	}
}

func TestRegisterNames(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"ssh", true},
		{"a", true},
		{"0", true},
		{"http-proxy", true},
		{"smb_v2", true},
		{"ssh-", true},
		{"ssh_", true},
		{"9p", true},
		{strings.Repeat("a", 63), true},
		{"a" + strings.Repeat("_", 62), true},
		{"", false},
		{strings.Repeat("a", 64), false},
		{"SSH", false},
		{"sSh", false},
		{"-ssh", false},
		{"_ssh", false},
		{"ssh.v2", false},
		{".", false},
		{"..", false},
		{"../ssh", false},
		{"ssh/v2", false},
		{"/ssh", false},
		{`ssh\v2`, false},
		{"ssh v2", false},
		{" ssh", false},
		{"ssh ", false},
		{"ssh\n", false},
		{"ssh\t", false},
		{"ssh\x00", false},
		{"ssh*", false},
		{"ssh>", false},
		{"ssh:22", false},
		{"ssh;rm", false},
		{"$(id)", false},
		{"sšh", false},
		{"ssh\u00a0", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.name), func(t *testing.T) {
			var r servicelive.Registry
			err := r.Register(imageService(tt.name))
			if tt.ok {
				if err != nil {
					t.Fatalf("Register(%q): %v", tt.name, err)
				}
				if _, ok := r.Lookup(tt.name); !ok {
					t.Errorf("Lookup(%q) after Register: not found", tt.name)
				}
				return
			}
			checkInvalidService(t, err)
			if names := r.Names(); len(names) != 0 {
				t.Errorf("refused Register left names %q", names)
			}
		})
	}
}

func TestRegisterImageOrBuild(t *testing.T) {
	build := &types.BuildConfig{Context: "./services/ssh"}
	tests := []struct {
		name  string
		image string
		build *types.BuildConfig
		ok    bool
	}{
		{"image", "decnet/ssh", nil, true},
		{"build", "", build, true},
		{"build with empty config", "", &types.BuildConfig{}, true},
		{"neither", "", nil, false},
		{"both", "decnet/ssh", build, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r servicelive.Registry
			err := r.Register(servicelive.Service{Name: "ssh", Image: tt.image, Build: tt.build})
			if tt.ok {
				if err != nil {
					t.Fatalf("Register: %v", err)
				}
				return
			}
			checkInvalidService(t, err)
			if _, ok := r.Lookup("ssh"); ok {
				t.Error("refused service is registered")
			}
		})
	}
}

func TestRegisterSchema(t *testing.T) {
	type F = servicelive.Field
	tests := []struct {
		name   string
		schema []F
		ok     bool
	}{
		{"nil schema", nil, true},
		{"empty schema", []F{}, true},
		{"every type", []F{
			{Key: "a", Type: servicelive.FieldString},
			{Key: "b", Type: servicelive.FieldPassword, Secret: true},
			{Key: "c", Type: servicelive.FieldInt},
			{Key: "d", Type: servicelive.FieldBool},
			{Key: "e", Type: servicelive.FieldText},
			{Key: "f", Type: servicelive.FieldEnum, Enum: []string{"x"}},
			{Key: "g", Type: servicelive.FieldMultiEnum, Enum: []string{"x", "y"}},
		}, true},
		{"keys differing in case", []F{{Key: "port", Type: servicelive.FieldInt}, {Key: "Port", Type: servicelive.FieldInt}}, true},
		{"empty key", []F{{Key: "", Type: servicelive.FieldString}}, false},
		{"empty key after valid", []F{{Key: "a", Type: servicelive.FieldString}, {Key: "", Type: servicelive.FieldInt}}, false},
		{"duplicate key", []F{{Key: "port", Type: servicelive.FieldInt}, {Key: "port", Type: servicelive.FieldInt}}, false},
		{"duplicate key different type", []F{{Key: "port", Type: servicelive.FieldInt}, {Key: "x", Type: servicelive.FieldBool}, {Key: "port", Type: servicelive.FieldString}}, false},
		{"untyped", []F{{Key: "a"}}, false},
		{"unknown type", []F{{Key: "a", Type: "float"}}, false},
		{"type in wrong case", []F{{Key: "a", Type: "String"}}, false},
		{"enum without values", []F{{Key: "a", Type: servicelive.FieldEnum}}, false},
		{"enum with empty values", []F{{Key: "a", Type: servicelive.FieldEnum, Enum: []string{}}}, false},
		{"multi_enum without values", []F{{Key: "a", Type: servicelive.FieldMultiEnum}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r servicelive.Registry
			s := imageService("ssh")
			s.Schema = tt.schema
			err := r.Register(s)
			if tt.ok {
				if err != nil {
					t.Fatalf("Register: %v", err)
				}
				got, _ := r.Lookup("ssh")
				if len(got.Schema) != len(tt.schema) || (len(tt.schema) > 0 && !reflect.DeepEqual(got.Schema, tt.schema)) {
					t.Errorf("registered schema = %+v, want %+v", got.Schema, tt.schema)
				}
				return
			}
			checkInvalidService(t, err)
			if !strings.Contains(err.Error(), "ssh") {
				t.Errorf("error %q does not name the service", err)
			}
		})
	}
}

func TestRegisterDuplicate(t *testing.T) {
	var r servicelive.Registry
	if err := r.Register(imageService("ssh")); err != nil {
		t.Fatal(err)
	}
	second := servicelive.Service{Name: "ssh", Image: "other"}
	err := r.Register(second)
	checkInvalidService(t, err)
	if !strings.Contains(err.Error(), "ssh") {
		t.Errorf("error %q does not name the service", err)
	}
	got, _ := r.Lookup("ssh")
	if got.Image != "decnet/ssh:latest" {
		t.Errorf("duplicate Register replaced the service: image %q", got.Image)
	}
}

func TestRegistryLookup(t *testing.T) {
	ssh := servicelive.Service{
		Name:           "ssh",
		Image:          "decnet/ssh",
		Ports:          []int{22},
		FleetSingleton: false,
		Schema:         []servicelive.Field{{Key: "port", Type: servicelive.FieldInt}},
	}
	logger := servicelive.Service{Name: "syslog_sink", Build: &types.BuildConfig{Context: "."}, FleetSingleton: true}
	r, err := servicelive.NewRegistry(ssh, logger)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want *servicelive.Service
	}{
		{"ssh", &ssh},
		{"syslog_sink", &logger},
		{"SSH", nil},
		{"ssh ", nil},
		{"", nil},
		{"http", nil},
	}
	for _, tt := range tests {
		got, ok := r.Lookup(tt.name)
		if tt.want == nil {
			if ok {
				t.Errorf("Lookup(%q) = %+v, true; want not found", tt.name, got)
			}
			continue
		}
		if !ok {
			t.Errorf("Lookup(%q): not found", tt.name)
			continue
		}
		if got.Name != tt.want.Name || got.Image != tt.want.Image || !reflect.DeepEqual(got.Build, tt.want.Build) ||
			got.FleetSingleton != tt.want.FleetSingleton ||
			!slices.Equal(got.Ports, tt.want.Ports) || !reflect.DeepEqual(got.Schema, tt.want.Schema) {
			t.Errorf("Lookup(%q) = %+v, want %+v", tt.name, got, *tt.want)
		}
	}
}

func TestRegistryNamesSorted(t *testing.T) {
	in := []string{"telnet", "ssh", "http", "a_b", "a-b", "ab", "0day", "z", "ftp", "smb"}
	var r servicelive.Registry
	for _, n := range in {
		if err := r.Register(imageService(n)); err != nil {
			t.Fatal(err)
		}
	}
	got := r.Names()
	want := slices.Sorted(slices.Values(in))
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
	// The result is the caller's.
	got[0] = "mutated"
	if again := r.Names(); !reflect.DeepEqual(again, want) {
		t.Errorf("mutating Names()'s result changed the registry: %v", again)
	}
}

func TestRegistryZeroValue(t *testing.T) {
	var r servicelive.Registry
	if names := r.Names(); len(names) != 0 {
		t.Errorf("zero Registry Names() = %v", names)
	}
	if _, ok := r.Lookup("ssh"); ok {
		t.Error("zero Registry Lookup found something")
	}
	if err := r.Register(imageService("ssh")); err != nil {
		t.Fatalf("zero Registry Register: %v", err)
	}
	if got := r.Names(); !reflect.DeepEqual(got, []string{"ssh"}) {
		t.Errorf("Names() = %v, want [ssh]", got)
	}
	if _, ok := r.Lookup("ssh"); !ok {
		t.Error("Lookup(ssh) after Register: not found")
	}
	// Also through a pointer to a zero value.
	p := new(servicelive.Registry)
	if err := p.Register(imageService("http")); err != nil {
		t.Fatal(err)
	}
}

func TestRegisterCopiesSchemaAndPorts(t *testing.T) {
	schema := []servicelive.Field{
		{Key: "port", Type: servicelive.FieldInt},
		{Key: "level", Type: servicelive.FieldEnum, Enum: []string{"low", "high"}},
	}
	ports := []int{22, 2222}
	var r servicelive.Registry
	if err := r.Register(servicelive.Service{Name: "ssh", Image: "ssh", Schema: schema, Ports: ports}); err != nil {
		t.Fatal(err)
	}
	schema[0] = servicelive.Field{Key: "", Type: "bogus"}
	schema[1].Key = "renamed"
	ports[0] = 0
	got, _ := r.Lookup("ssh")
	if got.Schema[0].Key != "port" || got.Schema[0].Type != servicelive.FieldInt || got.Schema[1].Key != "level" {
		t.Errorf("mutating the caller's schema changed the registered one: %+v", got.Schema)
	}
	if !slices.Equal(got.Ports, []int{22, 2222}) {
		t.Errorf("mutating the caller's ports changed the registered ones: %v", got.Ports)
	}
}

// TestRegisterCopiesEnum: Register clones Schema, but each Field's Enum slice
// still aliases the caller's.
func TestRegisterCopiesEnum(t *testing.T) {

	enum := []string{"low", "high"}
	var r servicelive.Registry
	if err := r.Register(servicelive.Service{Name: "ssh", Image: "ssh",
		Schema: []servicelive.Field{{Key: "level", Type: servicelive.FieldEnum, Enum: enum}}}); err != nil {
		t.Fatal(err)
	}
	enum[0] = "mutated"
	got, _ := r.Lookup("ssh")
	if !slices.Equal(got.Schema[0].Enum, []string{"low", "high"}) {
		t.Errorf("mutating the caller's Enum changed the registered one: %v", got.Schema[0].Enum)
	}
}

// TestLookupReturnsCopy: what Lookup returns must not alias the registry's
// copy, or a caller could change (or race with) every later Lookup.
func TestLookupReturnsCopy(t *testing.T) {

	var r servicelive.Registry
	if err := r.Register(servicelive.Service{Name: "ssh", Image: "ssh", Ports: []int{22},
		Schema: []servicelive.Field{{Key: "level", Type: servicelive.FieldEnum, Enum: []string{"low"}}}}); err != nil {
		t.Fatal(err)
	}
	got, _ := r.Lookup("ssh")
	got.Schema[0].Key = "mutated"
	got.Schema[0].Enum[0] = "mutated"
	got.Ports[0] = 0
	again, _ := r.Lookup("ssh")
	if again.Schema[0].Key != "level" || again.Schema[0].Enum[0] != "low" || again.Ports[0] != 22 {
		t.Errorf("mutating Lookup's result changed the registry: %+v", again)
	}
}

// TestRegistryConcurrent runs Register, Lookup and Names from 32 goroutines;
// run it with -race.
func TestRegistryConcurrent(t *testing.T) {
	const goroutines, perG = 32, 20
	var r servicelive.Registry
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*perG)
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				name := fmt.Sprintf("svc-%d-%d", g, i)
				if err := r.Register(imageService(name)); err != nil {
					errs <- err
				}
				// Everyone also races on one shared name: exactly one wins.
				if err := r.Register(imageService("shared")); err != nil && !errors.Is(err, servicelive.ErrInvalidService) {
					errs <- err
				}
				if _, ok := r.Lookup(name); !ok {
					errs <- fmt.Errorf("Lookup(%q) right after Register: not found", name)
				}
				r.Lookup(fmt.Sprintf("svc-%d-%d", (g+1)%goroutines, i))
				if names := r.Names(); !slices.IsSorted(names) {
					errs <- fmt.Errorf("Names() not sorted: %v", names)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got, want := len(r.Names()), goroutines*perG+1; got != want {
		t.Errorf("len(Names()) = %d, want %d", got, want)
	}
}

// TestRegistryConcurrentValidate validates configs against looked-up
// services while others register; run it with -race.
func TestRegistryConcurrentValidate(t *testing.T) {
	r, err := servicelive.NewRegistry(validateService)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 50 {
				s, ok := r.Lookup("ssh")
				if !ok {
					t.Error("Lookup(ssh): not found")
					return
				}
				got, err := s.Validate(servicelive.Config{"port": "22", "ciphers": []any{"aes128", "aes128"}})
				if err != nil || got["port"] != 22 {
					t.Errorf("Validate = %v, %v", got, err)
					return
				}
				_ = r.Register(imageService(fmt.Sprintf("extra-%d-%d", g, i)))
			}
		})
	}
	wg.Wait()
}
