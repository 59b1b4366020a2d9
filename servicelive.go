package servicelive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/decnet/servicelive/internal/keylock"
)

// DefaultFleetProject is the compose project name of the fleet.
const DefaultFleetProject = "decnet"

// rollbackTimeout bounds the undo of a failed mutation, which runs even when
// the caller's context is already cancelled.
const rollbackTimeout = 30 * time.Second

// publishTimeout bounds the relay's Bus.Publish (and each Outbox call),
// which run after the change is committed, whatever the caller's context;
// a mutation's own publish gets inlinePublishTimeout.
const publishTimeout = 5 * time.Second

// fleetProjectRE: a compose project name without "_", which is reserved for
// the topology projects derived from it.
var fleetProjectRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Manager adds and removes services on deployed deckies. The Store is the
// source of truth; the Composer applies changes to the engine; the Bus hears
// of each successful change. A Manager is safe for concurrent use: mutations
// of one decky are serialised, mutations of different deckies run in parallel.
type Manager struct {
	store        Store
	composer     Composer
	reg          *Registry
	bus          Bus
	log          *slog.Logger
	projectDir   string
	fleetProject string

	locker DeckyLocker // store's cross-process decky locks, if it has them
	relay  *relay      // redelivers what the Bus refused; nil without a Bus

	redeliveryMin, redeliveryMax time.Duration // see WithRedelivery
	locks                        keylock.Map   // per decky, in this Manager
	files                        fileWriter    // the scopes' compose files
}

// Option configures a Manager.
type Option func(*Manager)

// WithBus sets the Bus events are published on (default: none).
func WithBus(b Bus) Option { return func(m *Manager) { m.bus = b } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(m *Manager) { m.log = l } }

// WithProjectDir sets the directory where each scope's compose files are
// (re)written: <dir>/<project>/compose.yaml includes one file per decky,
// <dir>/<project>/deckies/<decky>.yaml. Default: no file is written.
func WithProjectDir(dir string) Option { return func(m *Manager) { m.projectDir = dir } }

// WithFleetProject sets the fleet's compose project name (default "decnet");
// topology projects are named after it (see Manager.ProjectName).
func WithFleetProject(name string) Option { return func(m *Manager) { m.fleetProject = name } }

// New returns a Manager over store, composer and reg.
func New(store Store, composer Composer, reg *Registry, opts ...Option) (*Manager, error) {
	m := &Manager{store: store, composer: composer, reg: reg, fleetProject: DefaultFleetProject,
		redeliveryMin: defaultRedeliveryMin, redeliveryMax: defaultRedeliveryMax}
	for _, o := range opts {
		o(m)
	}
	switch {
	case store == nil:
		return nil, errors.New("servicelive: new manager: nil store")
	case composer == nil:
		return nil, errors.New("servicelive: new manager: nil composer")
	case reg == nil:
		return nil, errors.New("servicelive: new manager: nil registry")
	case !fleetProjectRE.MatchString(m.fleetProject):
		return nil, fmt.Errorf("servicelive: new manager: bad fleet project name %q (want %s)", m.fleetProject, fleetProjectRE)
	}
	if m.log == nil {
		m.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m.locker, _ = store.(DeckyLocker)
	m.files.m = m
	if m.bus != nil {
		if ob, ok := store.(Outbox); ok {
			m.relay = newRelay(m, ob, false) // unknown until the first round
			m.relay.schedule(0)              // what an earlier process left behind
		} else {
			m.relay = newRelay(m, new(memOutbox), true)
		}
	}
	return m, nil
}

// Close publishes the events the Bus has refused so far, retrying with
// backoff until they are all taken or ctx is done, then stops redelivering
// them; it returns an error when some are left. Those stay in the Store's
// Outbox (its claims released), for the next Manager on it to publish; a
// Store without one (MemoryStore) loses them, as are those only the memory
// held. Close neither closes the Bus nor stops the calls in progress; the
// events of later calls are still published once, straight to the Bus when
// nothing was left, else kept in the Outbox behind the others. A Manager
// without a Bus has nothing to close. A Manager never closed leaves no
// goroutine behind while its Bus takes every event; otherwise a timer
// redelivers them until they are taken. No round of the relay runs after
// Close has returned.
func (m *Manager) Close(ctx context.Context) error {
	if m.relay == nil {
		return nil
	}
	return m.relay.close(ctx)
}

// AddOption configures one AddService call.
type AddOption func(*addOptions)

type addOptions struct {
	cfg Config
}

// WithConfig sets the service's configuration on the decky; it is validated
// against the service's Schema (Service.Validate).
func WithConfig(cfg Config) AddOption { return func(o *addOptions) { o.cfg = cfg } }

// Returned by the Update functions of mutations that find the decky already
// changed (by another process, for errNotOn).
var (
	errAlreadyOn = errors.New("service already on decky")
	errNotOn     = errors.New("service not on decky")
)

// AddService adds service to a deployed decky and starts its container; it returns
// the decky's services after the change.
//
// Refused calls change nothing: a bad name, an unknown or fleet-singleton
// service or a bad config matches ErrInvalidService; a missing decky or
// topology ErrNotFound; a service already on the decky, or whose compose key
// collides with another one in the scope, ErrConflict. When the engine fails
// (or ctx ends) the change is undone — container, Store and compose file —
// and the error wraps the engine's error; a retry then works.
func (m *Manager) AddService(ctx context.Context, ref Ref, service string, opts ...AddOption) ([]string, error) {
	fail := func(stage Stage, kind, err error, msg string) ([]string, error) {
		return nil, &Error{Op: "add", Ref: ref, Service: service, Kind: kind, Err: err, Msg: msg, Stage: stage}
	}
	var o addOptions
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := m.validateCall(ref, service, o.cfg)
	if err != nil {
		return fail(StageValidate, ErrInvalidService, err, "")
	}

	key := ServiceKey(ref.Decky, service)
	// The decky's lock, and those of every decky whose compose keys could
	// equal key: whoever else could make key (say decky a-b adding c, for
	// decky a adding b-c) is serialised with this call, in any process
	// sharing a DeckyLocker store.
	unlock, err := m.lockDeckies(ctx, keyRefs(ref, key)...)
	if err != nil {
		return fail(StageLock, nil, err, "")
	}
	defer unlock()
	if err := m.checkKey(ctx, ref, service, key); err != nil {
		return nil, err
	}

	after, err := m.store.Update(ctx, ref, func(d *Decky) error {
		if d.HasService(service) {
			return errAlreadyOn
		}
		d.Services = append(d.Services, service)
		setConfig(d, service, cfg)
		return nil
	})
	switch {
	case errors.Is(err, errAlreadyOn):
		return fail(StageStore, ErrConflict, nil, errAlreadyOn.Error())
	case err != nil:
		return fail(StageStore, nil, err, "")
	}

	// From here on a failure undoes the Store (and the file, once written).
	undo := func(err error, fileWritten bool) ([]string, error) {
		if rerr := m.undoAdd(ctx, ref, service, fileWritten); rerr != nil {
			return nil, errors.Join(err, rerr)
		}
		return nil, err
	}
	// The engine gets the decky's base and the new service only: rendering
	// the whole scope (or even the whole decky) would make the cost of a
	// mutation grow with it.
	project, err := m.deckyProject(ref.Topology, after, renderFull, service)
	if err != nil {
		return undo(err, false)
	}
	if err := m.writeDeckyFile(ctx, ref.Topology, after); err != nil {
		return undo(&Error{Op: "add", Ref: ref, Service: service, Err: err, Msg: "write compose file", Stage: StageFiles}, false)
	}
	if err := m.up(ctx, project, key); err != nil {
		err = &Error{Op: "add", Ref: ref, Service: service, Err: err, Msg: "engine", Stage: StageEngine}
		// Up may have left a container behind, half made: remove it.
		if derr := m.down(ctx, project, key); derr != nil {
			err = errors.Join(err, derr)
		}
		return undo(err, true)
	}

	m.publish(ctx, Event{Kind: ServiceAdded, Decky: ref.Decky, Service: service, Topology: ref.Topology, Services: after.Services,
		ConfigKeys: slices.Sorted(maps.Keys(cfg)), Applied: true})
	return slices.Clone(after.Services), nil
}

// validateCall checks a call's names, looks service up in the registry (a
// service that is per decky) and validates cfg against its Schema. The
// error matches ErrInvalidService and says what was wrong.
func (m *Manager) validateCall(ref Ref, service string, cfg Config) (Config, error) {
	if err := ref.validate(); err != nil {
		return nil, err
	}
	if !ValidServiceName(service) {
		return nil, fmt.Errorf("bad service name %q", service)
	}
	svc, ok := m.reg.Lookup(service)
	switch {
	case !ok:
		return nil, errors.New("unknown service")
	case svc.FleetSingleton:
		return nil, errors.New("fleet-singleton service: not on any decky")
	}
	return svc.Validate(cfg)
}

// undoAdd takes service (and its config) back off the decky and, when
// rewrite is set, rewrites its compose file — even when ctx is cancelled.
func (m *Manager) undoAdd(ctx context.Context, ref Ref, service string, rewrite bool) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	before, err := m.store.Update(ctx, ref, func(d *Decky) error {
		d.Services = slices.DeleteFunc(d.Services, func(s string) bool { return s == service })
		delete(d.Config, service)
		return nil
	})
	stage := StageStore
	if err == nil && rewrite {
		err, stage = m.writeDeckyFile(ctx, ref.Topology, before), StageFiles
	}
	if err != nil {
		return &Error{Op: "add", Ref: ref, Service: service, Err: err, Msg: "rollback failed (Reconcile repairs it)", Stage: stage}
	}
	return nil
}

// down runs Composer.Down with a context that survives the caller's
// cancellation, for cleanups.
func (m *Manager) down(ctx context.Context, project *types.Project, key string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	if err := m.engineDown(ctx, project, key); err != nil {
		return fmt.Errorf("servicelive: rollback: remove container of %s: %w", key, err)
	}
	return nil
}

// RemoveService stops and removes service's container and drops it (and its config)
// from the decky; it returns the decky's services after the change.
//
// The service need not be registered any more. A missing decky or topology
// matches ErrNotFound, a service not on the decky ErrConflict. The decky's
// compose file is rewritten first, then the container removed, then the
// Store updated: when the engine or the Store fails the file is put back,
// nothing is persisted and the error wraps the cause.
func (m *Manager) RemoveService(ctx context.Context, ref Ref, service string) ([]string, error) {
	fail := func(stage Stage, kind, err error, msg string) ([]string, error) {
		return nil, &Error{Op: "remove", Ref: ref, Service: service, Kind: kind, Err: err, Msg: msg, Stage: stage}
	}
	if err := ref.validate(); err != nil {
		return fail(StageValidate, ErrInvalidService, err, "")
	}
	if !ValidServiceName(service) {
		return fail(StageValidate, ErrInvalidService, nil, "bad service name")
	}
	unlock, err := m.lockDeckies(ctx, ref)
	if err != nil {
		return fail(StageLock, nil, err, "")
	}
	defer unlock()

	before, err := m.store.Get(ctx, ref)
	if err != nil {
		return fail(StageStore, nil, err, "")
	}
	if !before.HasService(service) {
		return fail(StageStore, ErrConflict, nil, errNotOn.Error())
	}
	key := ServiceKey(ref.Decky, service)
	// Identity alone: the container is found and removed whatever the
	// registry or the service's hook does now.
	project, err := m.deckyProject(ref.Topology, before, renderIdentity, service)
	if err != nil {
		return fail(StageRender, nil, err, "")
	}
	afterFile := before.Clone()
	afterFile.Services = slices.DeleteFunc(afterFile.Services, func(s string) bool { return s == service })
	delete(afterFile.Config, service)
	if err := m.writeDeckyFile(ctx, ref.Topology, afterFile); err != nil {
		return fail(StageFiles, nil, err, "write compose file")
	}
	restore := func(err error) ([]string, error) {
		if ferr := m.writeDeckyFile(context.WithoutCancel(ctx), ref.Topology, before); ferr != nil {
			err = errors.Join(err, &Error{Op: "remove", Ref: ref, Service: service, Err: ferr, Msg: "restore compose file (Reconcile repairs it)", Stage: StageFiles})
		}
		return nil, err
	}
	if err := m.engineDown(ctx, project, key); err != nil {
		return restore(&Error{Op: "remove", Ref: ref, Service: service, Err: err, Msg: "engine", Stage: StageEngine})
	}
	after, err := m.store.Update(ctx, ref, func(d *Decky) error {
		if !d.HasService(service) {
			return errNotOn // removed meanwhile by another process
		}
		d.Services = slices.DeleteFunc(d.Services, func(s string) bool { return s == service })
		delete(d.Config, service)
		return nil
	})
	switch {
	case errors.Is(err, errNotOn):
		return fail(StageStore, ErrConflict, nil, errNotOn.Error()) // the file already says so
	case err != nil:
		return restore(&Error{Op: "remove", Ref: ref, Service: service, Err: err, Stage: StageStore})
	}
	m.publish(ctx, Event{Kind: ServiceRemoved, Decky: ref.Decky, Service: service, Topology: ref.Topology, Services: after.Services, Applied: true})
	return slices.Clone(after.Services), nil
}

// keyRefs returns ref and the deckies of its scope whose compose keys could
// equal key (see keyCandidates).
func keyRefs(ref Ref, key string) []Ref {
	refs := []Ref{ref}
	for _, name := range keyCandidates(key) {
		if name != ref.Decky && ValidDeckyName(name) {
			refs = append(refs, Ref{Topology: ref.Topology, Decky: name})
		}
	}
	return refs
}

// checkKey refuses (ErrConflict) a compose key that another decky of the
// scope already uses, as its base name or as one of its service keys. Only
// the few deckies whose names are prefixes of key are looked at; the caller
// holds their locks (keyRefs).
func (m *Manager) checkKey(ctx context.Context, ref Ref, service, key string) error {
	for _, name := range keyCandidates(key) {
		if name == ref.Decky || !ValidDeckyName(name) {
			continue // itself, or a name no decky can have
		}
		d, err := m.store.Get(ctx, Ref{Topology: ref.Topology, Decky: name})
		switch {
		case errors.Is(err, ErrNotFound):
			continue
		case err != nil:
			return &Error{Op: "add", Ref: ref, Service: service, Err: err, Stage: StageStore}
		case name == key:
			return &Error{Op: "add", Ref: ref, Service: service, Kind: ErrConflict, Msg: "compose key " + key + " is the name of another decky", Stage: StageStore}
		case d.HasService(key[len(name)+1:]):
			return &Error{Op: "add", Ref: ref, Service: service, Kind: ErrConflict, Msg: "compose key " + key + " is used by decky " + name, Stage: StageStore}
		}
	}
	return nil
}

// publish gives e an ID and a time and publishes it on the Bus, unless
// older events wait in the outbox (the breaker, see Outbox); when the Bus
// refuses it (error, panic, no answer within inlinePublishTimeout), or
// older events wait, it keeps it in the outbox, for the relay, before
// returning: the event of a call that returns is either taken by the Bus
// or kept, behind the older ones. Failures are logged, never returned.
func (m *Manager) publish(ctx context.Context, e Event) {
	if m.bus == nil {
		return
	}
	e = cloneEvent(e)
	e.ID, e.Time = NewEventID(), time.Now().UTC()
	// The change is committed: the event goes out even if the caller gave
	// up meanwhile, but a Bus or Outbox that hangs cannot hold the call for
	// long.
	ctx = context.WithoutCancel(ctx)
	r := m.relay
	if !r.direct() {
		r.queue(ctx, e, false)
		return
	}
	err := m.sendEvent(ctx, e, inlinePublishTimeout)
	if err == nil {
		return
	}
	m.log.LogAttrs(ctx, slog.LevelWarn, "servicelive: publish failed (kept in the outbox)", slog.String("topic", e.Topic()), slog.String("id", e.ID), slog.Any("error", err))
	r.queue(ctx, e, true)
}

// sendEvent runs Bus.Publish bounded by timeout, turning a panic into an
// error.
func (m *Manager) sendEvent(ctx context.Context, e Event, timeout time.Duration) (err error) {
	defer func() {
		if r := recover(); r != nil {
			m.log.LogAttrs(ctx, slog.LevelError, "servicelive: publish panicked", slog.String("topic", e.Topic()), slog.Any("panic", r))
			err = fmt.Errorf("publish panicked: %v", r)
		}
	}()
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return m.bus.Publish(pctx, cloneEvent(e))
}

// writeDeckyFile renders d and rewrites its compose file (when a project
// directory is set), and compose.yaml if it does not include it yet.
func (m *Manager) writeDeckyFile(ctx context.Context, topology string, d Decky) error {
	return m.writeDeckyFileTop(ctx, topology, d, true)
}

// writeDeckyFileTop is writeDeckyFile, leaving compose.yaml alone unless
// withTop is set.
func (m *Manager) writeDeckyFileTop(ctx context.Context, topology string, d Decky, withTop bool) error {
	if m.projectDir == "" {
		return nil
	}
	p, err := m.deckyProject(topology, d, renderTolerant, "")
	if err != nil {
		return err
	}
	return m.files.writeDecky(ctx, topology, p, d, withTop)
}

// up runs Composer.Up, turning a panic into an error so that the mutation
// is undone like after any engine failure.
func (m *Manager) up(ctx context.Context, p *types.Project, key string) (err error) {
	defer recoverInto(&err, "composer up "+key)
	return m.composer.Up(ctx, p, key)
}

// engineDown runs Composer.Down, turning a panic into an error.
func (m *Manager) engineDown(ctx context.Context, p *types.Project, key string) (err error) {
	defer recoverInto(&err, "composer down "+key)
	return m.composer.Down(ctx, p, key)
}

// recoverInto turns a panic of a user-supplied component into *err.
func recoverInto(err *error, what string) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%s panicked: %v", what, r)
	}
}
