package servicelive

import (
	"context"
	"errors"
	"sync"

	"github.com/compose-spec/compose-go/v2/types"
	"golang.org/x/sync/errgroup"
)

// deployParallel bounds how many deckies Deploy brings up at once.
const deployParallel = 8

// Deploy brings up every decky of a scope (topology "" = fleet): for each
// decky its base first, then its services, several deckies at a time. It is
// idempotent: what already runs as rendered is left alone. A decky that
// fails does not stop the others: Deploy returns the failures of every
// decky, joined. Deploy writes the scope's compose files (when a project
// directory is set), each decky's under its lock; it never changes the
// Store.
func (m *Manager) Deploy(ctx context.Context, topology string) error {
	deckies, p, err := m.scope(ctx, "deploy", topology, renderTolerant)
	if err != nil {
		return err
	}
	var (
		g    errgroup.Group // no shared cancellation: one decky's failure is not the others'
		mu   sync.Mutex
		errs []error
	)
	// deployParallel deckies at a time per host (one host without host
	// routing): a slow or unreachable host holds up only its own deckies.
	slots := map[string]chan struct{}{}
	for _, d := range deckies {
		h := m.hostOf(d)
		if slots[h] == nil {
			slots[h] = make(chan struct{}, deployParallel)
		}
		slot := slots[h]
		g.Go(func() error {
			slot <- struct{}{}
			defer func() { <-slot }()
			if err := m.deployDecky(ctx, topology, d); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	if err := m.writeScopeFiles(ctx, "deploy", topology, p.Name, deckies); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// writeScopeFiles brings the scope's compose.yaml up to date and sweeps the
// files of deckies that left it, after a Deploy or Reconcile wrote each
// decky's own file.
func (m *Manager) writeScopeFiles(ctx context.Context, op, topology, project string, listed []Decky) error {
	err := m.files.writeTop(ctx, topology, project)
	if err == nil {
		err = m.files.sweep(ctx, topology, project, listed)
	}
	if err != nil {
		return &Error{Op: op, Ref: Ref{Topology: topology}, Err: err, Msg: "write compose files", Stage: StageFiles}
	}
	return nil
}

// deployDecky writes one decky's compose file and brings up its base and
// services, under its lock.
func (m *Manager) deployDecky(ctx context.Context, topology string, d Decky) error {
	ref := Ref{Topology: topology, Decky: d.Name}
	unlock, err := m.lockDeckies(ctx, ref)
	if err != nil {
		return &Error{Op: "deploy", Ref: ref, Err: err, Stage: StageLock}
	}
	defer unlock()
	// Re-read under the lock: a mutation may have run since the List.
	if d, err = m.store.Get(ctx, ref); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil // left the store meanwhile: nothing to deploy
		}
		return &Error{Op: "deploy", Ref: ref, Err: err, Stage: StageStore}
	}
	if err := m.writeDeckyFileTop(ctx, topology, d, false); err != nil {
		return &Error{Op: "deploy", Ref: ref, Err: err, Msg: "write compose file", Stage: StageFiles}
	}
	p, err := m.deckyProject(topology, d, renderFull, "")
	if err != nil {
		return err
	}
	for _, key := range d.ComposeKeys() {
		if err := m.up(ctx, p, key); err != nil {
			return &Error{Op: "deploy", Ref: ref, Err: err, Msg: "up " + key, Stage: StageEngine}
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
//
// With a Composer that routes by host (dockercompose.Hosts), Teardown clears
// the scope on every host that may hold its containers (those its deckies
// name, those opened before, those of dockercompose.WithKnownHosts), each
// engine once; it clears the hosts it reaches and fails, naming each host
// it could not reach (*HostError), even one that runs no decky of the
// scope: it cannot say the scope is gone from there. A host no decky names
// that was not opened since the Hosts was made, nor is a known host, is not
// contacted.
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
			return &Error{Op: "teardown", Ref: ref, Err: err, Stage: StageEngine}
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
			return &Error{Op: "teardown", Ref: ref, Err: err, Msg: "down " + key, Stage: StageEngine}
		}
	}
	return nil
}

// scope lists and renders a whole scope.
func (m *Manager) scope(ctx context.Context, op, topology string, mode renderMode) ([]Decky, *types.Project, error) {
	ref := Ref{Topology: topology}
	if err := validateScope(topology); err != nil {
		return nil, nil, &Error{Op: op, Kind: ErrInvalidService, Err: err, Stage: StageValidate}
	}
	deckies, err := m.store.List(ctx, topology)
	if err != nil {
		return nil, nil, &Error{Op: op, Ref: ref, Err: err, Stage: StageStore}
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
