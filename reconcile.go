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
func (m *Manager) reconcileDecky(ctx context.Context, topology, decky string, byKey map[string][]Container, keys []string) ([]ContainerReport, error) {
	ref := Ref{Topology: topology, Decky: decky}
	var unlock func()
	var err error
	if ValidDeckyName(decky) {
		unlock, err = m.lockDeckies(ctx, ref)
	} else {
		// A stray's decky label no decky can have: nothing to serialise with.
		unlock, err = m.locks.Lock(ctx, ref.String())
	}
	if err != nil {
		return nil, &Error{Op: "reconcile", Ref: ref, Err: err, Stage: StageLock}
	}
	defer unlock()

	// Re-read under the lock: a mutation may have run since the listing.
	// A container whose decky label is no decky name (missing, or set by
	// hand) belongs to no decky: it is a stray.
	var d Decky
	if ValidDeckyName(decky) {
		d, err = m.store.Get(ctx, ref)
		switch {
		case errors.Is(err, ErrNotFound):
			d = Decky{} // left the store: everything found is stray
		case err != nil:
			return nil, &Error{Op: "reconcile", Ref: ref, Err: err, Stage: StageStore}
		}
	}
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
	wanted := map[string]bool{}
	if p != nil {
		baseRepaired := false
		for _, key := range d.ComposeKeys() {
			wanted[key] = true
			r := m.converge(ctx, p, key, decky, byKey[key], baseRepaired)
			if key == d.Name && r.Action != ActionNone {
				baseRepaired = true
			}
			out = append(out, r)
		}
	}
	for _, key := range keys {
		if wanted[key] {
			continue
		}
		r := ContainerReport{Service: key, Decky: decky, Found: describe(byKey[key]), Action: ActionRemoved}
		if key == "" {
			r.Err = &Error{Op: "reconcile", Ref: ref, Msg: "container " + byKey[key][0].Name + " of the project has no compose service label: remove it by hand"}
			out = append(out, r)
			continue
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
