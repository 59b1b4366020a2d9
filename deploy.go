package servicelive

import (
	"context"
	"errors"

	"github.com/compose-spec/compose-go/v2/types"
	"golang.org/x/sync/errgroup"
)

// deployParallel bounds how many deckies Deploy brings up at once.
const deployParallel = 8

// Deploy brings up every decky of a scope (topology "" = fleet): for each
// decky its base first, then its services, several deckies at a time. It is
// idempotent: what already runs as rendered is left alone. Deploy writes the
// scope's compose files (when a project directory is set); it never changes
// the Store.
func (m *Manager) Deploy(ctx context.Context, topology string) error {
	deckies, p, err := m.scope(ctx, "deploy", topology, renderTolerant)
	if err != nil {
		return err
	}
	if err := m.files.writeScope(ctx, p, deckies); err != nil {
		return &Error{Op: "deploy", Ref: Ref{Topology: topology}, Err: err, Msg: "write compose files"}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(deployParallel)
	for _, d := range deckies {
		g.Go(func() error { return m.deployDecky(gctx, topology, d) })
	}
	return g.Wait()
}

// deployDecky brings up one decky's base and services under its lock.
func (m *Manager) deployDecky(ctx context.Context, topology string, d Decky) error {
	ref := Ref{Topology: topology, Decky: d.Name}
	unlock, err := m.locks.Lock(ctx, ref.String())
	if err != nil {
		return &Error{Op: "deploy", Ref: ref, Err: err}
	}
	defer unlock()
	// Re-read under the lock: a mutation may have run since the List.
	if d, err = m.store.Get(ctx, ref); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil // left the store meanwhile: nothing to deploy
		}
		return &Error{Op: "deploy", Ref: ref, Err: err}
	}
	p, err := m.deckyProject(topology, d, renderFull, "")
	if err != nil {
		return err
	}
	for _, key := range d.ComposeKeys() {
		if err := m.up(ctx, p, key); err != nil {
			return &Error{Op: "deploy", Ref: ref, Err: err, Msg: "up " + key}
		}
	}
	return nil
}

// Teardown removes every container of a scope (topology "" = fleet) and the
// networks its project created — never external networks, never anything of
// another scope. With a Composer that is a ProjectRemover, containers are
// found by the project's labels (strays included); otherwise each rendered
// service is brought down, services before bases. The Store and the compose
// files are left as they are.
func (m *Manager) Teardown(ctx context.Context, topology string) error {
	deckies, p, err := m.scope(ctx, "teardown", topology, renderIdentity)
	if err != nil {
		return err
	}
	ref := Ref{Topology: topology}
	if r, ok := m.composer.(ProjectRemover); ok {
		err := func() (err error) {
			defer recoverInto(&err, "composer remove project")
			return r.RemoveProject(ctx, p)
		}()
		if err != nil {
			return &Error{Op: "teardown", Ref: ref, Err: err}
		}
		return nil
	}
	var keys, bases []string
	for _, d := range deckies {
		keys = append(keys, d.ComposeKeys()[1:]...)
		bases = append(bases, d.Name)
	}
	for _, key := range append(keys, bases...) {
		if err := m.engineDown(ctx, p, key); err != nil {
			return &Error{Op: "teardown", Ref: ref, Err: err, Msg: "down " + key}
		}
	}
	return nil
}

// scope lists and renders a whole scope.
func (m *Manager) scope(ctx context.Context, op, topology string, mode renderMode) ([]Decky, *types.Project, error) {
	ref := Ref{Topology: topology}
	if err := validateScope(topology); err != nil {
		return nil, nil, &Error{Op: op, Kind: ErrInvalidService, Err: err}
	}
	deckies, err := m.store.List(ctx, topology)
	if err != nil {
		return nil, nil, &Error{Op: op, Ref: ref, Err: err}
	}
	n := len(deckies)
	for _, d := range deckies {
		n += len(d.Services)
	}
	p := m.newProject(topology, n)
	for _, d := range deckies {
		if err := m.addDecky(p, topology, d, mode); err != nil {
			return nil, nil, err
		}
	}
	return deckies, p, nil
}
