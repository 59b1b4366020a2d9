package servicelive

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/compose-spec/compose-go/v2/types"
)

// Action is what Reconcile did to one container.
type Action string

// The actions of a Report.
const (
	ActionNone      Action = "none"      // found as rendered, running: left alone
	ActionCreated   Action = "created"   // missing: created and started
	ActionStarted   Action = "started"   // stopped: started again
	ActionRecreated Action = "recreated" // paused, diverged, or its base was repaired: recreated
	ActionRemoved   Action = "removed"   // not described by the Store: removed
)

// ContainerReport is what Reconcile found and did for one compose service.
type ContainerReport struct {
	Service string // compose service key
	Decky   string
	Found   string // the engine's state before ("" = missing), plus " (diverged)" when it was
	Action  Action
	Err     error // the action's failure, if any
}

// Report lists, per compose service of the scope, what Reconcile found and did.
type Report struct {
	Project    string
	Containers []ContainerReport // sorted by Service
}

// Changed reports how many containers Reconcile acted on.
func (r Report) Changed() int {
	n := 0
	for _, c := range r.Containers {
		if c.Action != ActionNone {
			n++
		}
	}
	return n
}

// Err joins the errors of the report's containers.
func (r Report) Err() error {
	var errs []error
	for _, c := range r.Containers {
		if c.Err != nil {
			errs = append(errs, c.Err)
		}
	}
	return errors.Join(errs...)
}

// Reconcile makes the engine match the Store for one scope (topology "" =
// fleet), by the containers' labels: it creates what is missing, starts what
// is stopped, recreates what is paused or diverged (and the services of a
// base it had to repair, since they share its network namespace), and
// removes every container of the scope's project that the Store does not
// describe. Everything correct is left alone. Reconcile of an empty engine is
// a full deploy. It takes each decky's lock, so it is safe to run
// periodically and concurrently with mutations.
//
// The Composer must be a ContainerLister; otherwise Reconcile returns an
// error matching errors.ErrUnsupported. The returned error joins the
// failures of single containers, which the Report details.
func (m *Manager) Reconcile(ctx context.Context, topology string) (Report, error) {
	lister, ok := m.composer.(ContainerLister)
	if !ok {
		return Report{}, &Error{Op: "reconcile", Err: fmt.Errorf("composer %T cannot list containers: %w", m.composer, errors.ErrUnsupported)}
	}
	deckies, p, err := m.scope(ctx, "reconcile", topology, renderTolerant)
	if err != nil {
		return Report{}, err
	}
	found, err := func() (cs []Container, err error) {
		defer recoverInto(&err, "composer containers")
		return lister.Containers(ctx, p)
	}()
	if err != nil {
		return Report{}, &Error{Op: "reconcile", Ref: Ref{Topology: topology}, Err: err, Stage: StageEngine}
	}
	byKey := make(map[string][]Container, len(found))
	byDecky := make(map[string][]string) // decky → keys found, for strays
	for _, c := range found {
		if len(byKey[c.Service]) == 0 {
			byDecky[c.Decky] = append(byDecky[c.Decky], c.Service)
		}
		byKey[c.Service] = append(byKey[c.Service], c)
	}

	rep := Report{Project: p.Name}
	seen := make(map[string]bool, len(deckies))
	for _, d := range deckies {
		seen[d.Name] = true
		r, err := m.reconcileDecky(ctx, topology, d.Name, byKey, byDecky[d.Name])
		rep.Containers = append(rep.Containers, r...)
		if err != nil {
			return rep, err
		}
	}
	// Containers of deckies that are not in the Store.
	for decky, keys := range byDecky {
		if seen[decky] {
			continue
		}
		r, err := m.reconcileDecky(ctx, topology, decky, byKey, keys)
		rep.Containers = append(rep.Containers, r...)
		if err != nil {
			return rep, err
		}
	}
	slices.SortFunc(rep.Containers, func(a, b ContainerReport) int { return cmp.Compare(a.Service, b.Service) })
	if err := m.writeScopeFiles(ctx, "reconcile", topology, p.Name, deckies); err != nil {
		return rep, errors.Join(rep.Err(), err)
	}
	return rep, rep.Err()
}

// reconcileDecky converges one decky under its lock. found holds the
// containers listed before the lock was taken, by compose key; keys are the
// keys found for this decky.
//
// The listing may be stale by the time the lock is held: a key this decky
// dropped may since have been made by another decky (decky a removing b-c,
// then decky a-b adding c, both key a-b-c). So a key to remove as a stray
// is removed under the locks of every decky that could make it, and only if
// none of them has it now.
func (m *Manager) reconcileDecky(ctx context.Context, topology, decky string, byKey map[string][]Container, keys []string) ([]ContainerReport, error) {
	ref := Ref{Topology: topology, Decky: decky}
	unlock, d, err := m.lockAndGet(ctx, ref, nil)
	if err != nil {
		return nil, err
	}
	if owners := strayOwners(ref, strayKeys(d, keys)); len(owners) > 0 {
		// Start over holding the owners' locks too (sorted with this
		// decky's, so no deadlock with an AddService locking the same set).
		unlock()
		if unlock, d, err = m.lockAndGet(ctx, ref, owners); err != nil {
			return nil, err
		}
	}
	defer unlock()

	var p *types.Project
	if d.Name != "" {
		if err := m.writeDeckyFileTop(ctx, topology, d, false); err != nil {
			return nil, &Error{Op: "reconcile", Ref: ref, Err: err, Msg: "write compose file", Stage: StageFiles}
		}
		if p, err = m.deckyProject(topology, d, renderTolerant, ""); err != nil {
			return nil, err
		}
	}
	var out []ContainerReport
	if p != nil {
		baseRepaired := false
		for _, key := range d.ComposeKeys() {
			r := m.converge(ctx, p, key, decky, byKey[key], baseRepaired)
			if key == d.Name && r.Action != ActionNone {
				baseRepaired = true
			}
			out = append(out, r)
		}
	}
	for _, key := range strayKeys(d, keys) {
		r := ContainerReport{Service: key, Decky: decky, Found: describe(byKey[key]), Action: ActionRemoved}
		if key == "" {
			r.Err = &Error{Op: "reconcile", Ref: ref, Msg: "container " + byKey[key][0].Name + " of the project has no compose service label: remove it by hand"}
			out = append(out, r)
			continue
		}
		owner, err := m.keyOwner(ctx, ref, key)
		switch {
		case err != nil:
			r.Action, r.Err = ActionNone, &Error{Op: "reconcile", Ref: ref, Err: err, Msg: "owner of " + key, Stage: StageStore}
			out = append(out, r)
			continue
		case owner != "":
			continue // made since by another decky: its own pass converges it
		}
		stray := m.newProject(topology, 1)
		svc := types.ServiceConfig{Name: key}
		svc.CustomLabels = types.Labels{composeProjectLabel: stray.Name, composeServiceLabel: key, composeOneoffLabel: "False"}
		stray.Services[key] = svc
		if err := m.engineDown(ctx, stray, key); err != nil {
			r.Err = &Error{Op: "reconcile", Ref: ref, Err: err, Msg: "remove " + key, Stage: StageEngine}
		}
		out = append(out, r)
	}
	return out, ctx.Err()
}

// lockAndGet takes the locks of ref (when it is a decky name at all) and of
// extra, and reads ref's decky. A container whose decky label is no decky
// name (missing, or set by hand) belongs to no decky: its Decky is the zero
// value, as is that of a decky that left the Store.
func (m *Manager) lockAndGet(ctx context.Context, ref Ref, extra []Ref) (func(), Decky, error) {
	var unlock func()
	var err error
	if ValidDeckyName(ref.Decky) {
		unlock, err = m.lockDeckies(ctx, append([]Ref{ref}, extra...)...)
	} else {
		unlock, err = m.lockDeckies(ctx, extra...)
	}
	if err != nil {
		return nil, Decky{}, &Error{Op: "reconcile", Ref: ref, Err: err, Stage: StageLock}
	}
	if !ValidDeckyName(ref.Decky) {
		return unlock, Decky{}, nil
	}
	d, err := m.store.Get(ctx, ref)
	switch {
	case errors.Is(err, ErrNotFound):
		return unlock, Decky{}, nil
	case err != nil:
		unlock()
		return nil, Decky{}, &Error{Op: "reconcile", Ref: ref, Err: err, Stage: StageStore}
	}
	return unlock, d, nil
}

// strayKeys returns the keys found for decky d that it does not want.
func strayKeys(d Decky, found []string) []string {
	wanted := d.ComposeKeys()
	if d.Name == "" {
		wanted = nil
	}
	var out []string
	for _, key := range found {
		if !slices.Contains(wanted, key) {
			out = append(out, key)
		}
	}
	return out
}

// strayOwners returns the other deckies of ref's scope that could make one
// of keys.
func strayOwners(ref Ref, keys []string) []Ref {
	var refs []Ref
	for _, key := range keys {
		for _, r := range keyRefs(ref, key)[1:] {
			if !slices.Contains(refs, r) {
				refs = append(refs, r)
			}
		}
	}
	return refs
}

// keyOwner returns the decky of ref's scope, other than ref's, that has key
// as a compose key now ("" for none). The caller holds the locks of
// strayOwners.
func (m *Manager) keyOwner(ctx context.Context, ref Ref, key string) (string, error) {
	for _, r := range keyRefs(ref, key)[1:] {
		d, err := m.store.Get(ctx, r)
		switch {
		case errors.Is(err, ErrNotFound):
			continue
		case err != nil:
			return "", err
		case r.Decky == key || d.HasService(key[len(r.Decky)+1:]):
			return r.Decky, nil
		}
	}
	return "", nil
}

// converge brings one wanted compose service to running as rendered.
func (m *Manager) converge(ctx context.Context, p *types.Project, key, decky string, found []Container, force bool) ContainerReport {
	r := ContainerReport{Service: key, Decky: decky, Found: describe(found)}
	var c *Container
	if len(found) > 0 {
		c = &found[0]
	}
	switch {
	case c == nil:
		r.Action = ActionCreated
	case force || c.Diverged || c.State == "paused" || len(found) > 1:
		r.Action = ActionRecreated
	case c.State != "running":
		r.Action = ActionStarted
	default:
		r.Action = ActionNone
		return r
	}
	var err error
	if r.Action == ActionRecreated {
		err = m.engineDown(ctx, p, key)
	}
	if err == nil {
		err = m.up(ctx, p, key)
	}
	if err != nil {
		r.Err = &Error{Op: "reconcile", Ref: Ref{Topology: p.Services[key].Labels[LabelTopology], Decky: decky}, Err: err, Msg: string(r.Action) + " " + key, Stage: StageEngine}
	}
	return r
}

// describe summarises what was found of one compose service.
func describe(found []Container) string {
	if len(found) == 0 {
		return ""
	}
	s := found[0].State
	if found[0].Diverged {
		s += " (diverged)"
	}
	if len(found) > 1 {
		s += fmt.Sprintf(" (+%d duplicates)", len(found)-1)
	}
	return s
}
