package servicelive

import (
	"fmt"
	"slices"
	"sync"
)

// Registry holds the services that can be added to deckies, by name. It is
// safe for concurrent use; a zero Registry is empty and ready to use.
type Registry struct {
	mu       sync.RWMutex
	services map[string]Service
}

// NewRegistry returns a Registry holding services. An invalid or duplicate
// name is an error matching ErrInvalidService.
func NewRegistry(services ...Service) (*Registry, error) {
	r := &Registry{services: make(map[string]Service, len(services))}
	for _, s := range services {
		if err := r.Register(s); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Register adds s. An invalid name (see ValidServiceName), a name already
// registered, a service with neither or both of Image and Build, a Schema
// with an empty, duplicate or untyped key, or bad hardening fields (an
// unknown or duplicate capability in CapAdd, a Writable path that is not
// absolute and clean or is under /proc, /sys or /dev, a limit out of range,
// a setting both declared and opted out of) is an error matching
// ErrInvalidService.
func (r *Registry) Register(s Service) error {
	if err := checkService(s); err != nil {
		return err
	}
	s = cloneService(s)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.services[s.Name]; dup {
		return fmt.Errorf("servicelive: register %s: %w: already registered", s.Name, ErrInvalidService)
	}
	if r.services == nil {
		r.services = make(map[string]Service)
	}
	r.services[s.Name] = s
	return nil
}

func checkService(s Service) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("servicelive: register %q: %w: "+format, append([]any{s.Name, ErrInvalidService}, args...)...)
	}
	if !ValidServiceName(s.Name) {
		return fail("bad service name")
	}
	if (s.Image == "") == (s.Build == nil) {
		return fail("want exactly one of Image and Build")
	}
	seen := make(map[string]bool, len(s.Schema))
	for _, f := range s.Schema {
		switch {
		case f.Key == "":
			return fail("schema field with an empty key")
		case seen[f.Key]:
			return fail("duplicate schema key %q", f.Key)
		}
		switch f.Type {
		case FieldString, FieldPassword, FieldInt, FieldBool, FieldText:
		case FieldEnum, FieldMultiEnum:
			if len(f.Enum) == 0 {
				return fail("schema key %q: %s without values", f.Key, f.Type)
			}
		default:
			return fail("schema key %q: unknown type %q", f.Key, f.Type)
		}
		seen[f.Key] = true
	}
	if reason := checkHardening(s); reason != "" {
		return fail("%s", reason)
	}
	return nil
}

// Lookup returns the service registered under name.
func (r *Registry) Lookup(name string) (Service, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s, ok := r.services[name]
	if !ok {
		return Service{}, false
	}
	return cloneService(s), true
}

// cloneService copies the slices of s, so that the registry and its callers
// never share them. Build is copied one level deep.
func cloneService(s Service) Service {
	s.Ports = slices.Clone(s.Ports)
	s.CapAdd = slices.Clone(s.CapAdd)
	s.Writable = slices.Clone(s.Writable)
	s.Schema = slices.Clone(s.Schema)
	for i := range s.Schema {
		s.Schema[i].Enum = slices.Clone(s.Schema[i].Enum)
	}
	if s.Build != nil {
		b := *s.Build
		s.Build = &b
	}
	return s
}

// Names returns the registered names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.services))
	for n := range r.services {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
