package servicelive

import (
	"context"
	"errors"
	"maps"
	"slices"

	"github.com/compose-spec/compose-go/v2/types"
)

// UpdateOption configures one UpdateServiceConfig call.
type UpdateOption func(*updateOptions)

type updateOptions struct {
	recreate bool
}

// WithRecreate makes UpdateServiceConfig apply the new configuration at
// once: the service's container is recreated with it (and only that
// container: its decky's base, its other services and the rest of the scope
// keep running untouched). Without it the change is stored and written to
// the compose file, and the container keeps its old configuration until it
// is recreated (Reconcile finds it diverged and recreates it).
func WithRecreate() UpdateOption { return func(o *updateOptions) { o.recreate = true } }

// UpdateServiceConfig replaces the configuration of service on a decky,
// where it already runs, without removing it.
//
// cfg is validated against the service's Schema as by AddService (a bad
// value matches ErrInvalidService, with a *ConfigError); a service not on
// the decky matches ErrConflict, a missing decky or topology ErrNotFound.
// The new configuration is stored, then the decky's compose file rewritten;
// with WithRecreate the service's container is then recreated. When any of
// these fails (or ctx ends) the change is undone: the old configuration is
// stored and written back and, if the engine had begun, the container is
// brought back as it was (with a context detached from ctx, bounded to 30 s).
//
// A successful call publishes a ServiceConfigChanged event naming the new
// configuration's keys (never its values) and whether it was applied.
func (m *Manager) UpdateServiceConfig(ctx context.Context, ref Ref, service string, cfg Config, opts ...UpdateOption) error {
	fail := func(stage Stage, kind, err error, msg string) error {
		return &Error{Op: "configure", Ref: ref, Service: service, Kind: kind, Err: err, Msg: msg, Stage: stage}
	}
	cfg, err := m.validateCall(ref, service, cfg)
	if err != nil {
		return fail(StageValidate, ErrInvalidService, err, "")
	}
	var o updateOptions
	for _, opt := range opts {
		opt(&o)
	}

	unlock, err := m.lockDeckies(ctx, ref)
	if err != nil {
		return fail(StageLock, nil, err, "")
	}
	defer unlock()

	var before Decky
	after, err := m.store.Update(ctx, ref, func(d *Decky) error {
		if !d.HasService(service) {
			return errNotOn
		}
		before = d.Clone()
		setConfig(d, service, cfg)
		return nil
	})
	switch {
	case errors.Is(err, errNotOn):
		return fail(StageStore, ErrConflict, nil, errNotOn.Error())
	case err != nil:
		return fail(StageStore, nil, err, "")
	}
	old := before.Config[service]

	// From here on a failure puts the old configuration back.
	undo := func(err error, fileWritten, engine bool) error {
		if rerr := m.undoConfigure(ctx, ref, service, old, before, fileWritten, engine); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	key := ServiceKey(ref.Decky, service)
	var project *types.Project
	if o.recreate {
		if project, err = m.deckyProject(ref.Topology, after, renderFull, service); err != nil {
			return undo(err, false, false)
		}
	}
	if err := m.writeDeckyFile(ctx, ref.Topology, after); err != nil {
		return undo(fail(StageFiles, nil, err, "write compose file"), false, false)
	}
	if o.recreate {
		if err := m.up(ctx, project, key); err != nil {
			return undo(fail(StageEngine, nil, err, "engine"), true, true)
		}
	}
	m.publish(ctx, Event{
		Kind: ServiceConfigChanged, Decky: ref.Decky, Service: service, Topology: ref.Topology,
		Services: after.Services, ConfigKeys: slices.Sorted(maps.Keys(cfg)), Applied: o.recreate,
	})
	return nil
}

// setConfig sets (or, when cfg is empty, drops) the configuration of
// service on d.
func setConfig(d *Decky, service string, cfg Config) {
	if len(cfg) == 0 {
		delete(d.Config, service)
		return
	}
	if d.Config == nil {
		d.Config = make(map[string]Config)
	}
	d.Config[service] = cfg.Clone()
}

// undoConfigure stores old as service's configuration again, rewrites the
// compose file when it was written, and, when the engine was asked to
// recreate the container, brings the old one back — even when ctx is
// cancelled. Each step is tried whatever the others did (a decoy running
// its old configuration beats no decoy while the Store or the disk is
// broken); the error joins the failures.
func (m *Manager) undoConfigure(ctx context.Context, ref Ref, service string, old Config, before Decky, rewrite, engine bool) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	failed := func(stage Stage, err error) error {
		return &Error{Op: "configure", Ref: ref, Service: service, Err: err, Msg: "rollback failed (Reconcile repairs it)", Stage: stage}
	}
	var errs []error
	restored, err := m.store.Update(ctx, ref, func(d *Decky) error {
		setConfig(d, service, old)
		return nil
	})
	if err != nil {
		errs = append(errs, failed(StageStore, err))
	} else if rewrite {
		if err := m.writeDeckyFile(ctx, ref.Topology, restored); err != nil {
			errs = append(errs, failed(StageFiles, err))
		}
	}
	if engine {
		// The engine may have removed the old container before failing to
		// start the new one: bring it back (a no-op if it never left).
		p, err := m.deckyProject(ref.Topology, before, renderFull, service)
		if err == nil {
			err = m.up(ctx, p, ServiceKey(ref.Decky, service))
		}
		if err != nil {
			errs = append(errs, failed(StageEngine, err))
		}
	}
	return errors.Join(errs...)
}
