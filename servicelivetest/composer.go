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

// The operations a Composer records, as found in Call.Op.
const (
	OpUp            = "up"             // Composer.Up
	OpDown          = "down"           // Composer.Down
	OpRemoveProject = "remove_project" // Composer.RemoveProject
	OpContainers    = "containers"     // Composer.Containers (FailOn only; not recorded)
)

// ErrNoSuchService is returned (wrapped) by Composer.Up and Composer.Down
// when the service is not in the project they are given, as a container
// engine would.
var ErrNoSuchService = errors.New("no such service")

var (
	_ servicelive.Composer        = (*Composer)(nil)
	_ servicelive.ProjectRemover  = (*Composer)(nil)
	_ servicelive.ContainerLister = (*Composer)(nil)
)

// Call is one recorded call to a Composer.
type Call struct {
	Op       string         // OpUp, OpDown or OpRemoveProject
	Project  string         // the project's name ("" for a nil project)
	Service  string         // the compose service addressed; "" for OpRemoveProject
	Services []string       // the sorted names of the project's services at the time of the call
	Spec     *types.Project // the project passed, as is: not a copy
}

// Composer is a fake servicelive.Composer and servicelive.ProjectRemover
// that records every call, keeps a set of running services, and fails on
// demand. It is safe for concurrent use; the zero Composer is ready to use.
//
// Each call, in order: is recorded (even if it then fails) and consumes the
// failure queued for it by FailNext, if any; returns ctx.Err() if ctx is
// done, before or during the delay set by SetDelay; runs the hook set by
// SetHook and returns its error, if any; returns the queued failure, then
// the failure set by FailOn, if any; fails, wrapping ErrNoSuchService, for
// Up or Down of a service that is not in project.Services, as a container
// engine would; and finally updates the running set (see Running).
//
// No lock is held while the delay runs or the hook is called, so a hook may
// block, call the Composer, or panic.
type Composer struct {
	mu      sync.Mutex
	calls   []Call
	next    map[string][]error  // op → queued failures, oldest first
	failOn  map[[2]string]error // {op, service} → failure
	hook    func(context.Context, Call) error
	delay   time.Duration
	running map[string]map[string]*container // project name → compose service key → its container
	nextID  int
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
// running. service must be in project.Services.
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

func (c *Composer) do(ctx context.Context, op string, project *types.Project, service string) error {
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
	if err := c.failOn[[2]string{op, service}]; err != nil {
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
// as a call, but honours ctx and FailOn(OpContainers, "", err).
func (c *Composer) Containers(ctx context.Context, project *types.Project) ([]servicelive.Container, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.failOn[[2]string{OpContainers, ""}]; err != nil {
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

// FailNext makes the next call of op (OpUp, OpDown or OpRemoveProject)
// return err. Several calls queue several failures, used in order; a nil err
// clears the queue of op. It panics on an unknown op.
func (c *Composer) FailNext(op string, err error) {
	checkOp(op)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		delete(c.next, op)
		return
	}
	if c.next == nil {
		c.next = make(map[string][]error)
	}
	c.next[op] = append(c.next[op], err)
}

// FailOn makes every call of op on service return err, until FailOn is
// called again for that op and service with a nil err. Use service "" for
// OpRemoveProject. It panics on an unknown op.
func (c *Composer) FailOn(op, service string, err error) {
	checkOp(op)
	c.mu.Lock()
	defer c.mu.Unlock()
	key := [2]string{op, service}
	if err == nil {
		delete(c.failOn, key)
		return
	}
	if c.failOn == nil {
		c.failOn = make(map[[2]string]error)
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

func checkOp(op string) {
	switch op {
	case OpUp, OpDown, OpRemoveProject, OpContainers:
	default:
		panic(fmt.Sprintf("servicelivetest: unknown composer op %q", op))
	}
}
