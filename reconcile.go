package servicelive

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/compose-spec/compose-go/v2/types"
	"golang.org/x/sync/errgroup"
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
	Host    string // the host acted on ("" = the default engine); a stray found on several hosts gets an entry per host
	Action  Action
	Err     error // the action's failure, if any
}

// Report lists, per compose service of the scope, what Reconcile found and did.
type Report struct {
	Project    string
	Containers []ContainerReport // sorted by Service
	// HostErrors holds, with a Composer that routes by host, the failures
	// of hosts that no decky of the scope runs on but that were to be
	// listed (hosts opened earlier, or named by
	// dockercompose.WithKnownHosts): each a *HostError naming its host,
	// sorted by host. Their containers of the scope (a moved decky's old
	// ones, strays) were neither listed nor removed. The failures of hosts
	// that deckies run on are in those deckies' ContainerReports.
	HostErrors []error
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

// Err joins the errors of the report's containers and its HostErrors.
func (r Report) Err() error {
	var errs []error
	for _, c := range r.Containers {
		if c.Err != nil {
			errs = append(errs, c.Err)
		}
	}
	return errors.Join(append(errs, r.HostErrors...)...)
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
// failures of single containers, which the Report details, and those of
// hosts that hold no decky of the scope but could not be listed
// (Report.HostErrors).
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
	// With a Composer that routes by host, hosts that could not be listed
	// fail only their own deckies: the others are reconciled.
	down, partial := failedHosts(err)
	if err != nil && (!partial || !m.routesHosts()) {
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
	for host, err := range down {
		if !slices.ContainsFunc(deckies, func(d Decky) bool { return m.hostOf(d) == host }) {
			rep.HostErrors = append(rep.HostErrors, err)
		}
	}
	slices.SortFunc(rep.HostErrors, func(a, b error) int { return cmp.Compare(hostOfErr(a), hostOfErr(b)) })
	var (
		mu   sync.Mutex
		errs []error
		g    errgroup.Group
	)
	run := func(decky string, keys []string) bool {
		r, err := m.reconcileDecky(ctx, topology, decky, byKey, keys, down)
		mu.Lock()
		defer mu.Unlock()
		rep.Containers = append(rep.Containers, r...)
		if err != nil {
			errs = append(errs, err)
			return false
		}
		return true
	}
	// One goroutine per host (hosts in parallel, the deckies of one host
	// one after the other); a single one without host routing.
	byHost := map[string][]Decky{}
	seen := make(map[string]bool, len(deckies))
	for _, d := range deckies {
		seen[d.Name] = true
		byHost[m.hostOf(d)] = append(byHost[m.hostOf(d)], d)
	}
	for _, ds := range byHost {
		g.Go(func() error {
			for _, d := range ds {
				if !run(d.Name, byDecky[d.Name]) {
					break
				}
			}
			return nil
		})
	}
	_ = g.Wait()
	if len(errs) > 0 {
		return rep, errors.Join(append(errs, rep.HostErrors...)...)
	}
	// Containers of deckies that are not in the Store.
	for decky, keys := range byDecky {
		if seen[decky] {
			continue
		}
		if !run(decky, keys) {
			return rep, errors.Join(append(errs, rep.HostErrors...)...)
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
//
// down holds the hosts that could not be listed: a decky on one of them is
// reported failed and left alone. With a Composer that routes by host, a
// container found on another host than its decky's is misplaced (the decky
// moved): once the decky converged on its host, it is removed from the
// host it was found on.
func (m *Manager) reconcileDecky(ctx context.Context, topology, decky string, byKey map[string][]Container, keys []string, down map[string]error) ([]ContainerReport, error) {
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
	host := m.hostOf(d)
	if p != nil && down[host] != nil {
		for _, key := range d.ComposeKeys() {
			out = append(out, ContainerReport{Service: key, Decky: decky, Host: host, Action: ActionNone,
				Err: &Error{Op: "reconcile", Ref: ref, Err: down[host], Msg: "list " + key, Stage: StageEngine}})
		}
	} else if p != nil {
		baseRepaired, failed := false, false
		var misplaced []Container // on another host: removed once d converged on its own
		for _, key := range d.ComposeKeys() {
			var here []Container
			for _, c := range byKey[key] {
				if c.Host == host {
					here = append(here, c)
				} else {
					misplaced = append(misplaced, c)
				}
			}
			r := m.converge(ctx, p, key, decky, here, baseRepaired)
			if key == d.Name && r.Action != ActionNone {
				baseRepaired = true
			}
			failed = failed || r.Err != nil
			out = append(out, r)
		}
		// Services before their base, as Teardown does.
		for _, c := range slices.Backward(misplaced) {
			r := ContainerReport{Service: c.Service, Decky: decky, Host: c.Host, Found: describe([]Container{c}), Action: ActionRemoved}
			if failed {
				r.Action = ActionNone // kept until the decky runs on its new host
			} else if err := m.removeFrom(ctx, topology, c.Host, c.Service); err != nil {
				r.Err = &Error{Op: "reconcile", Ref: ref, Err: err, Msg: "remove " + c.Service + " from its former host", Stage: StageEngine}
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
		for _, h := range foundHosts(byKey[key]) { // one entry per host it was found on
			r := r
			r.Host = h
			r.Found = describe(slices.DeleteFunc(slices.Clone(byKey[key]), func(c Container) bool { return c.Host != h }))
			if err := m.removeFrom(ctx, topology, h, key); err != nil {
				r.Err = &Error{Op: "reconcile", Ref: ref, Err: err, Msg: "remove " + key, Stage: StageEngine}
			}
			out = append(out, r)
		}
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

// removeFrom removes the containers of compose service key of the scope
// from host, whatever the Store says of it.
func (m *Manager) removeFrom(ctx context.Context, topology, host, key string) error {
	stray := m.newProject(topology, 1)
	svc := types.ServiceConfig{Name: key}
	svc.CustomLabels = types.Labels{composeProjectLabel: stray.Name, composeServiceLabel: key, composeOneoffLabel: "False"}
	stray.Services[key] = withHost(svc, host)
	return m.engineDown(ctx, stray, key)
}

// hostOfErr returns the host a HostError names.
func hostOfErr(err error) string {
	var he *HostError
	errors.As(err, &he)
	if he == nil {
		return ""
	}
	return he.Host
}

// foundHosts returns the hosts cs were found on, sorted, each once.
func foundHosts(cs []Container) []string {
	var hosts []string
	for _, c := range cs {
		if !slices.Contains(hosts, c.Host) {
			hosts = append(hosts, c.Host)
		}
	}
	slices.Sort(hosts)
	return hosts
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
	r := ContainerReport{Service: key, Decky: decky, Found: describe(found), Host: ServiceHost(p.Services[key])}
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
