package servicelive

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/decnet/servicelive/internal/keylock"
)

// MemoryStore is a Store that keeps every decky in memory: the embedded
// default and the store for tests. Its state is lost with the process and it
// cannot be shared between processes; use FileStore or package sqlstore for
// that. Its decky locks (DeckyLocker) serialise the Managers of one process
// that share it.
//
// A MemoryStore is safe for concurrent use. Get and Update are map lookups,
// so their cost does not grow with the number of deckies. Every Decky goes in
// and comes out as a deep copy: callers never alias the stored slices and maps.
// Create one with NewMemoryStore.
type MemoryStore struct {
	mu     sync.RWMutex
	scopes map[string]map[string]Decky // topology ID ("" = the fleet) -> decky name -> decky
	locks  keylock.Map                 // the decky locks (LockDecky)
}

var (
	_ Store       = (*MemoryStore)(nil)
	_ DeckyLocker = (*MemoryStore)(nil)
)

// LockDecky takes the lock of the decky ref addresses (which need not
// exist), waiting until it is held or ctx is done. The lock is in memory:
// it serialises the Managers of this process that share s.
func (s *MemoryStore) LockDecky(ctx context.Context, ref Ref) (unlock func(), err error) {
	if err := ref.validate(); err != nil {
		return nil, &Error{Op: "lock", Ref: ref, Err: err}
	}
	return s.locks.Lock(ctx, ref.String())
}

// NewMemoryStore returns a MemoryStore holding a deep copy of deckies, keyed
// by topology ID ("" = the fleet). The fleet always exists, even when
// deckies has no "" key; every other key creates that topology, even with no
// deckies. The seed is not validated: use Put to add deckies with checks.
func NewMemoryStore(deckies map[string][]Decky) *MemoryStore {
	s := &MemoryStore{scopes: map[string]map[string]Decky{"": {}}}
	for topology, ds := range deckies {
		scope := s.scopes[topology]
		if scope == nil {
			scope = make(map[string]Decky, len(ds))
			s.scopes[topology] = scope
		}
		for _, d := range ds {
			scope[d.Name] = d.Clone()
		}
	}
	return s
}

// Get returns a deep copy of the decky ref addresses. A missing topology or
// decky is an error matching ErrNotFound; a malformed ref matches
// ErrInvalidService.
func (s *MemoryStore) Get(ctx context.Context, ref Ref) (Decky, error) {
	if err := ctx.Err(); err != nil {
		return Decky{}, err
	}
	if err := ref.validate(); err != nil {
		return Decky{}, &Error{Op: "get", Ref: ref, Err: err}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, err := s.lookup(ref)
	if err != nil {
		return Decky{}, err
	}
	return d.Clone(), nil
}

// List returns deep copies of the deckies of topology ("" = the fleet),
// sorted by name. An empty scope is an empty, non-nil slice; a missing
// topology is an error matching ErrNotFound.
func (s *MemoryStore) List(ctx context.Context, topology string) ([]Decky, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := validateScope(topology); err != nil {
		return nil, &Error{Op: "list", Err: err}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	scope, ok := s.scopes[topology]
	if !ok {
		return nil, TopologyNotFound(topology)
	}
	out := make([]Decky, 0, len(scope))
	for _, d := range scope {
		out = append(out, d.Clone())
	}
	slices.SortFunc(out, func(a, b Decky) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Update runs fn on a deep copy of the decky ref addresses and stores the
// result, atomically with respect to every other call on s. fn runs once,
// with s locked: it must not call s. If fn returns an error nothing is
// written and Update returns that error unchanged. fn may not rename the
// decky, and config values must be string, int, bool or []string; otherwise
// nothing is written and the error matches ErrInvalidService. A missing
// topology or decky matches ErrNotFound and fn is not called. The returned
// Decky is a deep copy of what was stored.
func (s *MemoryStore) Update(ctx context.Context, ref Ref, fn func(*Decky) error) (Decky, error) {
	if err := ctx.Err(); err != nil {
		return Decky{}, err
	}
	if err := ref.validate(); err != nil {
		return Decky{}, &Error{Op: "update", Ref: ref, Err: err}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.lookup(ref)
	if err != nil {
		return Decky{}, err
	}
	d := cur.Clone()
	if err := fn(&d); err != nil {
		return Decky{}, err
	}
	if err := CheckUpdate(ref, d); err != nil {
		return Decky{}, err
	}
	stored := d.Clone() // fn's caller may still hold &d
	s.scopes[ref.Topology][ref.Decky] = stored
	return stored.Clone(), nil
}

// Put stores a deep copy of d in topology ("" = the fleet), replacing any
// decky of the same name and creating the topology if it does not exist.
// A bad topology ID or decky name, or a config value that is not a string,
// int, bool or []string, is an error matching ErrInvalidService.
func (s *MemoryStore) Put(ctx context.Context, topology string, d Decky) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := CheckPut(topology, d); err != nil {
		return err
	}
	d = d.Clone()
	s.mu.Lock()
	defer s.mu.Unlock()
	scope := s.scopes[topology]
	if scope == nil {
		scope = make(map[string]Decky)
		s.scopes[topology] = scope
	}
	scope[d.Name] = d
	return nil
}

// Delete removes the decky ref addresses. A missing topology or decky is an
// error matching ErrNotFound. The topology remains, even when it is left
// with no deckies.
func (s *MemoryStore) Delete(ctx context.Context, ref Ref) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := ref.validate(); err != nil {
		return &Error{Op: "delete", Ref: ref, Err: err}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.lookup(ref); err != nil {
		return err
	}
	delete(s.scopes[ref.Topology], ref.Decky)
	return nil
}

// lookup returns the stored decky (not a copy); s.mu must be held.
func (s *MemoryStore) lookup(ref Ref) (Decky, error) {
	scope, ok := s.scopes[ref.Topology]
	if !ok {
		return Decky{}, TopologyNotFound(ref.Topology)
	}
	d, ok := scope[ref.Decky]
	if !ok {
		return Decky{}, DeckyNotFound(ref)
	}
	return d, nil
}
