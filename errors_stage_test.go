package servicelive_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	sl "github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
)

// failingStore fails every Update after the first n with errStoreDown.
type failingStore struct {
	sl.Store
	n int
}

var errStoreDown = errors.New("store down")

func (s *failingStore) Update(ctx context.Context, ref sl.Ref, fn func(*sl.Decky) error) (sl.Decky, error) {
	if s.n <= 0 {
		return sl.Decky{}, errStoreDown
	}
	s.n--
	return s.Store.Update(ctx, ref, fn)
}

// TestErrorStage: a caller tells an engine failure from a Store failure by
// sentinel (ErrEngine, ErrStore) or by Error.Stage, and a refusal matches
// neither.
func TestErrorStage(t *testing.T) {
	engineErr := errors.New("engine down")
	tests := []struct {
		name                  string
		storeUpdates          int // Updates that work before the store fails; -1: never fails
		failUp                bool
		upErr                 error // what the failing Up returns (default engineErr)
		ref                   sl.Ref
		wantEngine, wantStore bool
		wantStage             sl.Stage
		wantSentinel          error
	}{
		{name: "engine", storeUpdates: -1, failUp: true, ref: sl.FleetDecky("web2"), wantEngine: true, wantStage: sl.StageEngine},
		{name: "store", storeUpdates: 0, ref: sl.FleetDecky("web2"), wantStore: true, wantStage: sl.StageStore},
		{name: "engine, then the undo fails", storeUpdates: 1, failUp: true, ref: sl.FleetDecky("web2"), wantEngine: true, wantStore: true},
		{name: "refusal from the engine", storeUpdates: -1, failUp: true, upErr: fmt.Errorf("field x: %w", sl.ErrInvalidService),
			ref: sl.FleetDecky("web2"), wantStage: sl.StageEngine, wantSentinel: sl.ErrInvalidService},
		{name: "refusal from the store", storeUpdates: -1, ref: sl.FleetDecky("web9"), wantStage: sl.StageStore, wantSentinel: sl.ErrNotFound},
		{name: "bad decky name", storeUpdates: -1, ref: sl.FleetDecky("Web2"), wantStage: sl.StageValidate, wantSentinel: sl.ErrInvalidService},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := sl.NewMemoryStore(map[string][]sl.Decky{"": {{Name: "web2", Image: "decnet/base"}}})
			var store sl.Store = mem
			if tt.storeUpdates >= 0 {
				store = &failingStore{Store: mem, n: tt.storeUpdates}
			}
			c := &servicelivetest.Composer{}
			if tt.failUp {
				c.FailNext(servicelivetest.OpUp, cmp.Or(tt.upErr, engineErr))
			}
			m, err := sl.New(store, c, testRegistry(t))
			if err != nil {
				t.Fatal(err)
			}
			_, err = m.AddService(context.Background(), tt.ref, "ssh")
			if err == nil {
				t.Fatal("no error")
			}
			if got := errors.Is(err, sl.ErrEngine); got != tt.wantEngine {
				t.Errorf("errors.Is(err, ErrEngine) = %v: %v", got, err)
			}
			if got := errors.Is(err, sl.ErrStore); got != tt.wantStore {
				t.Errorf("errors.Is(err, ErrStore) = %v: %v", got, err)
			}
			if tt.wantSentinel != nil && !errors.Is(err, tt.wantSentinel) {
				t.Errorf("err = %v, want %v", err, tt.wantSentinel)
			}
			var e *sl.Error
			if tt.wantStage != "" && (!errors.As(err, &e) || e.Stage != tt.wantStage) {
				t.Errorf("stage of %v: want %q", err, tt.wantStage)
			}
		})
	}
}

// TestBadNameMessages: a bad decky or topology name says so, and still
// matches ErrInvalidService.
func TestBadNameMessages(t *testing.T) {
	e := newEnv(t)
	for ref, want := range map[sl.Ref]string{
		sl.FleetDecky("Web1"):           `bad decky name "Web1"`,
		sl.TopologyDecky("a_b", "web1"): `bad topology id "a_b"`,
	} {
		_, err := e.m.AddService(context.Background(), ref, "ssh")
		if !errors.Is(err, sl.ErrInvalidService) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "invalid service") {
			t.Errorf("%v: err = %v, want ErrInvalidService saying %s", ref, err, want)
		}
	}
}
