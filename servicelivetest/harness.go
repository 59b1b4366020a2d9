package servicelivetest

import (
	"context"
	"maps"
	"slices"
	"testing"

	"github.com/decnet/servicelive"
)

// Harness is a servicelive.Manager over fakes, built by NewHarness for one
// test: a MemoryStore holding the test's deckies, a Registry of its
// services, a strict Composer and a Bus, all wired and ready.
//
// A test drives Manager and asserts on what the fakes saw: Composer.Ops
// for the engine, Bus.Events (with AssertEvents) or Bus.Topics for the
// events, Store (or Decky) for the state.
type Harness struct {
	Manager  *servicelive.Manager
	Store    *servicelive.MemoryStore // the Store the Manager uses, unless WithStore wraps it
	Registry *servicelive.Registry
	Composer *Composer // strict unless Lenient()
	Bus      *Bus      // the Manager's Bus, unless WithManagerOptions sets another
	Dir      string    // the project directory with WithComposeFiles; "" otherwise

	t testing.TB
}

// HarnessOption configures NewHarness.
type HarnessOption func(*harnessConfig)

type harnessConfig struct {
	managerOpts []servicelive.Option
	deployed    bool
	lenient     bool
	files       bool
	wrap        func(*servicelive.MemoryStore) servicelive.Store
}

// WithManagerOptions passes opts to servicelive.New, after the harness's
// own servicelive.WithBus(h.Bus) (and WithProjectDir, with
// WithComposeFiles): a later option of the same kind wins. Several
// WithManagerOptions add up.
func WithManagerOptions(opts ...servicelive.Option) HarnessOption {
	return func(c *harnessConfig) { c.managerOpts = append(c.managerOpts, opts...) }
}

// Deployed makes NewHarness deploy every scope of its deckies (the fleet,
// and each topology the map names) with Manager.Deploy before returning,
// as a running system would be, then forget the calls that made
// (Composer.Reset): a test starts with every base and service running and
// an empty call log. A failed Deploy fails the test.
func Deployed() HarnessOption { return func(c *harnessConfig) { c.deployed = true } }

// Lenient makes the harness's Composer lenient (Composer.Lenient): a
// service comes up on a decky whose base was never deployed, which no
// engine allows. For tests of the Manager's bookkeeping that deliberately
// skip Deploy; prefer Deployed.
func Lenient() HarnessOption { return func(c *harnessConfig) { c.lenient = true } }

// WithComposeFiles makes the Manager write its compose files
// (servicelive.WithProjectDir) to a new directory of t.TempDir, removed at
// the end of the test; Harness.Dir names it.
func WithComposeFiles() HarnessOption { return func(c *harnessConfig) { c.files = true } }

// WithStore makes the Manager use wrap(h.Store) as its Store instead of the
// MemoryStore itself: a wrapper that counts calls, delays them or fails on
// demand. Harness.Store stays the MemoryStore underneath, for seeding and
// checking behind the wrapper's back.
func WithStore(wrap func(*servicelive.MemoryStore) servicelive.Store) HarnessOption {
	return func(c *harnessConfig) { c.wrap = wrap }
}

// NewHarness returns a Manager over fakes for the test t: a MemoryStore
// holding deckies (keyed by topology ID, "" for the fleet; a topology with
// no deckies exists all the same), a Registry of services, a strict
// Composer (see Composer) and a Bus. A decky or service the Store or the
// Registry refuses fails the test at once, as does a failed Deploy with
// Deployed.
//
// Nothing is running until the test deploys (or passes Deployed), so, as
// with a real engine, AddService on an undeployed decky fails with an
// error wrapping ErrBaseNotRunning; Lenient turns that check off.
//
// The harness starts no goroutine and holds nothing outside memory but the
// t.TempDir of WithComposeFiles, which the testing package removes with
// t.Cleanup: there is nothing to close.
func NewHarness(t testing.TB, deckies map[string][]servicelive.Decky, services []servicelive.Service, opts ...HarnessOption) *Harness {
	t.Helper()
	var cfg harnessConfig
	for _, o := range opts {
		o(&cfg)
	}
	reg, err := servicelive.NewRegistry(services...)
	if err != nil {
		t.Fatalf("servicelivetest: harness: %v", err)
	}
	topologies := slices.Sorted(maps.Keys(deckies))
	if !slices.Contains(topologies, "") {
		topologies = slices.Insert(topologies, 0, "") // the fleet always exists
	}
	seed := make(map[string][]servicelive.Decky, len(topologies))
	for _, id := range topologies {
		seed[id] = nil // every scope exists, even with no deckies
	}
	h := &Harness{
		Store:    servicelive.NewMemoryStore(seed),
		Registry: reg,
		Composer: &Composer{Lenient: cfg.lenient},
		Bus:      &Bus{},
		t:        t,
	}
	for _, id := range topologies {
		for _, d := range deckies[id] {
			if err := h.Store.Put(t.Context(), id, d); err != nil {
				t.Fatalf("servicelivetest: harness: seed %s: %v", servicelive.Ref{Topology: id, Decky: d.Name}, err)
			}
		}
	}
	mopts := []servicelive.Option{servicelive.WithBus(h.Bus)}
	if cfg.files {
		h.Dir = t.TempDir()
		mopts = append(mopts, servicelive.WithProjectDir(h.Dir))
	}
	var store servicelive.Store = h.Store
	if cfg.wrap != nil {
		store = cfg.wrap(h.Store)
	}
	h.Manager, err = servicelive.New(store, h.Composer, reg, append(mopts, cfg.managerOpts...)...)
	if err != nil {
		t.Fatalf("servicelivetest: harness: %v", err)
	}
	if cfg.deployed {
		for _, id := range topologies {
			if err := h.Manager.Deploy(t.Context(), id); err != nil {
				scope := "the fleet"
				if id != "" {
					scope = "topology " + id
				}
				t.Fatalf("servicelivetest: harness: deploy %s: %v", scope, err)
			}
		}
		h.Composer.Reset()
	}
	return h
}

// Decky returns the decky ref addresses, as the MemoryStore holds it; a
// missing decky fails the test (through the t given to NewHarness).
func (h *Harness) Decky(ref servicelive.Ref) servicelive.Decky {
	h.t.Helper()
	d, err := h.Store.Get(context.Background(), ref) // also from a t.Cleanup, after t.Context ends
	if err != nil {
		h.t.Fatalf("servicelivetest: harness: %v", err)
	}
	return d
}

// AssertEvents checks the events published on h.Bus against want, as the
// package function AssertEvents does, reporting to the t given to
// NewHarness.
func (h *Harness) AssertEvents(want ...string) bool {
	h.t.Helper()
	return AssertEvents(h.t, h.Bus.Events(), want...)
}
