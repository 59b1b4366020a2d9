package servicelivetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/decnet/servicelive"
)

// Op names an operation of a Composer, as found in Call.Op and taken by
// Composer.FailNext and Composer.FailOn.
type Op string

// The operations of a Composer.
const (
	OpUp            Op = "up"             // Composer.Up
	OpDown          Op = "down"           // Composer.Down
	OpRemoveProject Op = "remove_project" // Composer.RemoveProject
	OpContainers    Op = "containers"     // Composer.Containers (FailNext and FailOn; not recorded)
)

// ErrNoSuchService is returned (wrapped) by Composer.Up and Composer.Down
// when the service is not in the project they are given, as a container
// engine would.
var ErrNoSuchService = errors.New("no such service")

// ErrBaseNotRunning is returned (wrapped) by a strict Composer's Up of a
// service that shares the network namespace of another one (network_mode
// "service:<base>", as every decky's service does with its decky's base)
// while that base has no running container in the project: a container
// engine cannot start it either. The usual cause is a test that adds a
// service without deploying the decky first (Manager.Deploy).
var ErrBaseNotRunning = errors.New("base not running")

var (
	_ servicelive.Composer        = (*Composer)(nil)
	_ servicelive.ProjectRemover  = (*Composer)(nil)
	_ servicelive.ContainerLister = (*Composer)(nil)
)

// Call is one recorded call to a Composer.
type Call struct {
	Op       Op             // OpUp, OpDown or OpRemoveProject
	Project  string         // the project's name ("" for a nil project)
	Service  string         // the compose service addressed; "" for OpRemoveProject
	Services []string       // the sorted names of the project's services at the time of the call
	Spec     *types.Project // the project passed, as is: not a copy
}

// String returns the call as Composer.Ops lists it: "<op> <project>
// <service>", e.g. "up decnet web1-ssh", or "<op> <project>" for
// OpRemoveProject, e.g. "remove_project decnet".
func (c Call) String() string {
	if c.Op == OpRemoveProject {
		return string(c.Op) + " " + c.Project
	}
	return string(c.Op) + " " + c.Project + " " + c.Service
}

// Composer is a fake servicelive.Composer, servicelive.ProjectRemover and
// servicelive.ContainerLister that records every call, keeps the containers
// it made, and fails on demand. It is safe for concurrent use; the zero
// Composer is ready to use, and strict.
//
// Strict (the default) means it refuses what a container engine refuses: Up
// of a service whose network_mode is "service:<base>" fails, wrapping
// ErrBaseNotRunning, unless <base> has a running (or paused) container in
// the same project. Every service of a decky joins its decky's base that
// way, so a test must bring the base up first (Manager.Deploy, or
// Deployed() with NewHarness), as production must. Set Lenient to skip the
// check.
//
// Each call, in order: is recorded (even if it then fails) and consumes the
// failure queued for it by FailNext, if any; returns ctx.Err() if ctx is
// done, before or during the delay set by SetDelay; runs the hook set by
// SetHook and returns its error, if any; returns the queued failure, then
// the failure set by FailOn, if any; fails, wrapping ErrNoSuchService, for
// Up or Down of a service that is not in project.Services, as a container
// engine would; fails, wrapping ErrBaseNotRunning, for Up of a service
// whose base is not running, unless Lenient; and finally updates the
// containers (see Running). Down of a service of the project that has no
// container, and RemoveProject of a project with none, succeed and change
// nothing, as with an engine.
//
// No lock is held while the delay runs or the hook is called, so a hook may
// block, call the Composer, or panic.
type Composer struct {
	// Lenient lets Up start a service whose base is not running (see
	// ErrBaseNotRunning), which no engine does: for tests that exercise the
	// Manager's bookkeeping without deploying. Set it before the first call.
	Lenient bool

	mu      sync.Mutex
	calls   []Call
	next    map[Op][]error    // op → queued failures, oldest first
	failOn  map[failKey]error // {op, service} → failure
	hook    func(context.Context, Call) error
	delay   time.Duration
	running map[string]map[string]*container // project name → compose service key → its container
	nextID  int
}

// failKey addresses a failure set by FailOn.
type failKey struct {
	op      Op
	service string
}

// container is the fake engine's record of one container.
type container struct {
	id, decky, state, fingerprint string
}

// fingerprint summarises what makes a container diverge from its rendering.
func fingerprint(s types.ServiceConfig) string {
	env := make([]string, 0, len(s.Environment))
	for k, v := range s.Environment {
		if v != nil {
			k += "=" + *v
		}
		env = append(env, k)
	}
	slices.Sort(env)
	nets := make([]string, 0, len(s.Networks))
	for name, n := range s.Networks {
		if n != nil {
			name += "@" + n.Ipv4Address
		}
		nets = append(nets, name)
	}
	slices.Sort(nets)
	return fmt.Sprintf("%s|%s|%v|%v", s.Image, s.NetworkMode, env, nets)
}

// Up records the call and, unless it fails, marks service of project as
// running. service must be in project.Services and, unless c.Lenient, the
// base it shares a network namespace with must be running (see
// ErrBaseNotRunning).
func (c *Composer) Up(ctx context.Context, project *types.Project, service string) error {
	return c.do(ctx, OpUp, project, service)
}

// Down records the call and, unless it fails, marks service of project as
// no longer running. service must be in project.Services; a service that is
// not running is not an error.
func (c *Composer) Down(ctx context.Context, project *types.Project, service string) error {
	return c.do(ctx, OpDown, project, service)
}

// RemoveProject records the call and, unless it fails, marks every service
// of the project (by name) as no longer running. FailOn applies to it with
// service "".
func (c *Composer) RemoveProject(ctx context.Context, project *types.Project) error {
	return c.do(ctx, OpRemoveProject, project, "")
}

func (c *Composer) do(ctx context.Context, op Op, project *types.Project, service string) error {
	call := Call{Op: op, Service: service, Spec: project}
	if project != nil {
		call.Project = project.Name
		call.Services = slices.Sorted(maps.Keys(project.Services))
	}

	c.mu.Lock()
	c.calls = append(c.calls, call)
	var queued error
	if q := c.next[op]; len(q) > 0 {
		queued = q[0]
		c.next[op] = q[1:]
	}
	hook, delay := c.hook, c.delay
	c.mu.Unlock()

	if err := ctx.Err(); err != nil {
		return err
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	if hook != nil {
		hc := call
		hc.Services = slices.Clone(call.Services)
		if err := hook(ctx, hc); err != nil {
			return err
		}
	}
	if queued != nil {
		return queued
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.failOn[failKey{op, service}]; err != nil {
		return err
	}
	if project == nil {
		return fmt.Errorf("servicelivetest: %s: nil project", op)
	}
	if op != OpRemoveProject {
		if _, ok := project.Services[service]; !ok {
			return fmt.Errorf("servicelivetest: %s %s in project %q: %w", op, service, project.Name, ErrNoSuchService)
		}
	}
	switch op {
	case OpUp:
		if c.running == nil {
			c.running = make(map[string]map[string]*container)
		}
		if c.running[project.Name] == nil {
			c.running[project.Name] = make(map[string]*container)
		}
		spec := project.Services[service]
		if err := c.checkBase(project.Name, service, spec); err != nil {
			return err
		}
		fp := fingerprint(spec)
		if ct := c.running[project.Name][service]; ct != nil && ct.fingerprint == fp {
			ct.state = "running" // start what is stopped; unchanged otherwise
			return nil
		}
		c.nextID++
		c.running[project.Name][service] = &container{
			id: fmt.Sprintf("fake%06d", c.nextID), decky: spec.Labels[servicelive.LabelDecky], state: "running", fingerprint: fp,
		}
	case OpDown:
		delete(c.running[project.Name], service)
	case OpRemoveProject:
		delete(c.running, project.Name)
	}
	return nil
}

// checkBase returns an error wrapping ErrBaseNotRunning when c is strict and
// spec joins the network namespace of a service of project that has no
// running container. c.mu is held.
func (c *Composer) checkBase(project, service string, spec types.ServiceConfig) error {
	base, ok := strings.CutPrefix(spec.NetworkMode, "service:")
	if c.Lenient || !ok {
		return nil
	}
	ct := c.running[project][base]
	what := "has no container"
	switch {
	case ct == nil:
	case ct.state == "running" || ct.state == "paused": // a paused container keeps its namespace
		return nil
	default:
		what = "is " + ct.state
	}
	return fmt.Errorf("servicelivetest: up %s in project %q: %w: %s %s (network_mode %s); deploy the decky first",
		service, project, ErrBaseNotRunning, base, what, spec.NetworkMode)
}

// Calls returns a copy of the calls recorded so far, in the order they were
// made (their Spec pointers are shared, not copied).
func (c *Composer) Calls() []Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := slices.Clone(c.calls)
	for i := range out {
		out[i].Services = slices.Clone(out[i].Services)
	}
	return out
}

// Ops returns the calls recorded so far, in order, each as Call.String
// formats it: "up decnet web1-ssh", "down decnet web1-ssh",
// "remove_project decnet" (the op, the project's name, and the compose
// service key but for OpRemoveProject). Failed calls are listed too. The
// strings are comparable with slices.Equal and stable across versions.
func (c *Composer) Ops() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.calls))
	for i, call := range c.calls {
		out[i] = call.String()
	}
	return out
}

// Reset forgets the recorded calls. The running set, the injected failures,
// the hook and the delay are kept.
func (c *Composer) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = nil
}

// Running returns the sorted compose service keys currently up, across all
// projects: Up adds one, Down removes it and RemoveProject removes all of
// its project's. A key up in two projects appears twice.
func (c *Composer) Running() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, keys := range c.running {
		for k, ct := range keys {
			if ct.state == "running" {
				out = append(out, k)
			}
		}
	}
	slices.Sort(out)
	return out
}

// RunningIn returns the sorted compose service keys currently up in the
// project named project.
func (c *Composer) RunningIn(project string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for k, ct := range c.running[project] {
		if ct.state == "running" {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// Containers implements servicelive.ContainerLister over the fake engine's
// containers: every container of project, whatever its state, with Diverged
// set when project renders its service differently from when it was
// created (image, network mode, networks, environment). It is not recorded
// as a call, but honours ctx, FailNext(OpContainers, err) and
// FailOn(OpContainers, "", err).
func (c *Composer) Containers(ctx context.Context, project *types.Project) ([]servicelive.Container, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var queued error
	if q := c.next[OpContainers]; len(q) > 0 {
		queued = q[0]
		c.next[OpContainers] = q[1:]
	}
	if queued != nil {
		return nil, queued
	}
	if err := c.failOn[failKey{OpContainers, ""}]; err != nil {
		return nil, err
	}
	var out []servicelive.Container
	for key, ct := range c.running[project.Name] {
		sc := servicelive.Container{ID: ct.id, Name: project.Name + "." + key, Service: key, Decky: ct.decky, State: ct.state}
		if spec, ok := project.Services[key]; ok {
			sc.Diverged = fingerprint(spec) != ct.fingerprint
		}
		out = append(out, sc)
	}
	slices.SortFunc(out, func(a, b servicelive.Container) int { return strings.Compare(a.Service, b.Service) })
	return out, nil
}

// SetState changes the state of the container of service in project behind
// the Manager's back, as an operator or a crash would: "exited", "paused",
// "created", … or "" to remove the container. It reports whether there was
// such a container.
func (c *Composer) SetState(project, service, state string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ct := c.running[project][service]
	if ct == nil {
		return false
	}
	if state == "" {
		delete(c.running[project], service)
	} else {
		ct.state = state
	}
	return true
}

// Diverge makes the container of service in project differ from every
// rendering, as if it had been created from another configuration.
func (c *Composer) Diverge(project, service string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ct := c.running[project][service]
	if ct != nil {
		ct.fingerprint = "diverged"
	}
	return ct != nil
}

// Inject adds a running container of service in project for decky that no
// Manager created, as a stray would be.
func (c *Composer) Inject(project, service, decky string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running == nil {
		c.running = make(map[string]map[string]*container)
	}
	if c.running[project] == nil {
		c.running[project] = make(map[string]*container)
	}
	c.nextID++
	c.running[project][service] = &container{id: fmt.Sprintf("fake%06d", c.nextID), decky: decky, state: "running", fingerprint: "injected"}
}

// ContainerID returns the ID of the container of service in project, or "".
func (c *Composer) ContainerID(project, service string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ct := c.running[project][service]; ct != nil {
		return ct.id
	}
	return ""
}

// FailNext makes the next call of op (OpUp, OpDown, OpRemoveProject or
// OpContainers) return err. Several calls queue several failures, used in
// order; a nil err clears the queue of op. It panics on an unknown op.
func (c *Composer) FailNext(op Op, err error) {
	checkOp(op)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		delete(c.next, op)
		return
	}
	if c.next == nil {
		c.next = make(map[Op][]error)
	}
	c.next[op] = append(c.next[op], err)
}

// FailOn makes every call of op on service return err, until FailOn is
// called again for that op and service with a nil err. Use service "" for
// OpRemoveProject and OpContainers. It panics on an unknown op.
func (c *Composer) FailOn(op Op, service string, err error) {
	checkOp(op)
	c.mu.Lock()
	defer c.mu.Unlock()
	key := failKey{op, service}
	if err == nil {
		delete(c.failOn, key)
		return
	}
	if c.failOn == nil {
		c.failOn = make(map[failKey]error)
	}
	c.failOn[key] = err
}

// SetHook makes every later call run hook (with the call's context and a
// copy of its record) after the delay; a non-nil error from hook is the
// call's result. A nil hook removes it. The hook may block, panic or call
// the Composer.
func (c *Composer) SetHook(hook func(ctx context.Context, call Call) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hook = hook
}

// SetDelay makes every later call wait d before acting, or return
// ctx.Err() if ctx is done first. Zero removes the delay.
func (c *Composer) SetDelay(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.delay = d
}

func checkOp(op Op) {
	switch op {
	case OpUp, OpDown, OpRemoveProject, OpContainers:
	default:
		panic(fmt.Sprintf("servicelivetest: unknown composer op %q", op))
	}
}
