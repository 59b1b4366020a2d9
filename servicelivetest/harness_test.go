package servicelivetest_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
)

func harnessDeckies() map[string][]servicelive.Decky {
	return map[string][]servicelive.Decky{
		"":      {{Name: "web1", Image: "decnet/base", Services: []string{"http"}}, {Name: "web2", Image: "decnet/base"}},
		"lab":   {{Name: "web1", Image: "decnet/base"}},
		"empty": nil,
	}
}

func harnessServices() []servicelive.Service {
	return []servicelive.Service{
		{Name: "ssh", Image: "decnet/ssh", Schema: []servicelive.Field{{Key: "banner", Type: servicelive.FieldString}}},
		{Name: "http", Image: "decnet/http"},
	}
}

func TestHarnessStrictByDefault(t *testing.T) {
	h := servicelivetest.NewHarness(t, harnessDeckies(), harnessServices())
	ctx := context.Background()
	if h.Composer.Lenient {
		t.Fatal("the harness's Composer is lenient by default")
	}
	// Nothing deployed: the service cannot join its base, as on an engine,
	// and the Manager undoes the add.
	_, err := h.Manager.AddService(ctx, servicelive.FleetDecky("web2"), "ssh")
	if !errors.Is(err, servicelivetest.ErrBaseNotRunning) {
		t.Fatalf("AddService before Deploy = %v, want ErrBaseNotRunning", err)
	}
	if d := h.Decky(servicelive.FleetDecky("web2")); len(d.Services) != 0 {
		t.Fatalf("store not rolled back: %v", d.Services)
	}
	h.AssertEvents()

	// Deploy, then the same add works.
	if err := h.Manager.Deploy(ctx, ""); err != nil {
		t.Fatal(err)
	}
	h.Composer.Reset()
	if _, err := h.Manager.AddService(ctx, servicelive.FleetDecky("web2"), "ssh", servicelive.WithConfig(servicelive.Config{"banner": "hi"})); err != nil {
		t.Fatal(err)
	}
	if got, want := h.Composer.Ops(), []string{"up decnet web2-ssh"}; !slices.Equal(got, want) {
		t.Errorf("Ops() = %q, want %q", got, want)
	}
	h.AssertEvents("decky.web2.service_added service=ssh services=ssh config=banner applied=true")
}

func TestHarnessDeployed(t *testing.T) {
	h := servicelivetest.NewHarness(t, harnessDeckies(), harnessServices(), servicelivetest.Deployed())
	if got := h.Composer.Ops(); len(got) != 0 {
		t.Errorf("Ops() after Deployed = %q, want the log reset", got)
	}
	if got, want := h.Composer.RunningIn("decnet"), []string{"web1", "web1-http", "web2"}; !slices.Equal(got, want) {
		t.Errorf("fleet running %q, want %q", got, want)
	}
	if got, want := h.Composer.RunningIn(h.Manager.ProjectName("lab")), []string{"web1"}; !slices.Equal(got, want) {
		t.Errorf("lab running %q, want %q", got, want)
	}
	ctx := context.Background()
	for _, ref := range []servicelive.Ref{servicelive.FleetDecky("web2"), servicelive.TopologyDecky("lab", "web1")} {
		if _, err := h.Manager.AddService(ctx, ref, "ssh"); err != nil {
			t.Fatal(err)
		}
		if _, err := h.Manager.RemoveService(ctx, ref, "ssh"); err != nil {
			t.Fatal(err)
		}
	}
	h.AssertEvents(
		"decky.web2.service_added service=ssh services=ssh",
		"decky.web2.service_removed service=ssh services=",
		"decky.web1.service_added topology=lab service=ssh",
		"decky.web1.service_removed topology=lab service=ssh",
	)
	// A topology without deckies exists.
	if ds, err := h.Store.List(ctx, "empty"); err != nil || len(ds) != 0 {
		t.Errorf("List(empty) = %v, %v", ds, err)
	}
}

func TestHarnessLenient(t *testing.T) {
	h := servicelivetest.NewHarness(t, harnessDeckies(), harnessServices(), servicelivetest.Lenient())
	if !h.Composer.Lenient {
		t.Fatal("Lenient() left the Composer strict")
	}
	if _, err := h.Manager.AddService(context.Background(), servicelive.FleetDecky("web2"), "ssh"); err != nil {
		t.Fatalf("lenient AddService without Deploy = %v", err)
	}
}

func TestHarnessOptions(t *testing.T) {
	var calls atomic.Int64
	h := servicelivetest.NewHarness(t, harnessDeckies(), harnessServices(),
		servicelivetest.Deployed(),
		servicelivetest.WithComposeFiles(),
		servicelivetest.WithManagerOptions(servicelive.WithFleetProject("fleet")),
		servicelivetest.WithStore(func(m *servicelive.MemoryStore) servicelive.Store {
			return &countedStore{Store: m, calls: &calls}
		}),
	)
	if calls.Load() == 0 {
		t.Error("the Manager did not use the wrapped Store for Deploy")
	}
	if h.Dir == "" {
		t.Fatal("Dir not set by WithComposeFiles")
	}
	if _, err := os.Stat(filepath.Join(h.Dir, "fleet", "deckies", "web1.yaml")); err != nil {
		t.Errorf("compose file of the deployed fleet: %v", err)
	}
	if got := h.Composer.RunningIn("fleet"); !slices.Equal(got, []string{"web1", "web1-http", "web2"}) {
		t.Errorf("WithFleetProject ignored: running in fleet %q", got)
	}

	// A Bus passed through WithManagerOptions wins over h.Bus.
	var other servicelivetest.Bus
	h2 := servicelivetest.NewHarness(t, harnessDeckies(), harnessServices(), servicelivetest.Deployed(),
		servicelivetest.WithManagerOptions(servicelive.WithBus(&other)))
	if _, err := h2.Manager.AddService(context.Background(), servicelive.FleetDecky("web2"), "ssh"); err != nil {
		t.Fatal(err)
	}
	if len(h2.Bus.Events()) != 0 || len(other.Events()) != 1 {
		t.Errorf("events: %d on h.Bus, %d on the option's bus", len(h2.Bus.Events()), len(other.Events()))
	}
	if h2.Dir != "" {
		t.Errorf("Dir = %q without WithComposeFiles", h2.Dir)
	}
}

type countedStore struct {
	servicelive.Store
	calls *atomic.Int64
}

func (s *countedStore) List(ctx context.Context, topology string) ([]servicelive.Decky, error) {
	s.calls.Add(1)
	return s.Store.List(ctx, topology)
}

func TestHarnessFailsTheTest(t *testing.T) {
	for _, tt := range []struct {
		name     string
		deckies  map[string][]servicelive.Decky
		services []servicelive.Service
		opts     []servicelivetest.HarnessOption
		want     string
	}{
		{"bad decky name", map[string][]servicelive.Decky{"": {{Name: "Web_1", Image: "x"}}}, nil, nil, "seed fleet/Web_1"},
		{"bad topology", map[string][]servicelive.Decky{"a/b": {{Name: "web1", Image: "x"}}}, nil, nil, "seed"},
		{"bad service", nil, []servicelive.Service{{Name: "ssh"}}, nil, "register"},
		{"duplicate service", nil, []servicelive.Service{{Name: "ssh", Image: "x"}, {Name: "ssh", Image: "y"}}, nil, "already registered"},
		{"bad manager option", nil, nil, []servicelivetest.HarnessOption{servicelivetest.WithManagerOptions(servicelive.WithFleetProject("Bad_Name"))}, "fleet project"},
		{"deploy fails", map[string][]servicelive.Decky{"": {{Name: "web1", Image: "x", Services: []string{"gone"}}}}, nil,
			[]servicelivetest.HarnessOption{servicelivetest.Deployed()}, "deploy"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var h *servicelivetest.Harness
			tb := runTB(t, func(tb testing.TB) { h = servicelivetest.NewHarness(tb, tt.deckies, tt.services, tt.opts...) })
			if !tb.fatal || h != nil {
				t.Fatalf("NewHarness returned %v, reports %q: want the test failed at once", h, tb.logs)
			}
			if out := strings.Join(tb.logs, "\n"); !strings.Contains(out, tt.want) || !strings.HasPrefix(out, "servicelivetest: harness: ") {
				t.Errorf("report %q lacks %q", out, tt.want)
			}
		})
	}
}

func TestHarnessDecky(t *testing.T) {
	h := servicelivetest.NewHarness(t, harnessDeckies(), nil)
	if d := h.Decky(servicelive.FleetDecky("web1")); d.Name != "web1" || !slices.Equal(d.Services, []string{"http"}) {
		t.Errorf("Decky(web1) = %+v", d)
	}
	// A missing decky fails the test given to NewHarness.
	tb := runTB(t, func(tb testing.TB) {
		h := servicelivetest.NewHarness(tb, nil, nil)
		h.Decky(servicelive.FleetDecky("nope"))
	})
	if !tb.fatal || !strings.Contains(strings.Join(tb.logs, ""), "not found") {
		t.Errorf("Decky of a missing decky: fatal %v, %q", tb.fatal, tb.logs)
	}
	// The harness's AssertEvents reports there too.
	tb = runTB(t, func(tb testing.TB) {
		servicelivetest.NewHarness(tb, nil, nil).AssertEvents("decky.web1.service_added")
	})
	if tb.fatal || len(tb.logs) != 1 {
		t.Errorf("AssertEvents with a missing event: fatal %v, %q", tb.fatal, tb.logs)
	}
}
