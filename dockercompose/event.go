package dockercompose

import (
	"context"
	"strings"
	"sync"

	"github.com/docker/compose/v5/pkg/api"
)

// Event is one progress event of a Composer call, passed to the WithProgress
// hook: a resource (container, image, network) changing state.
type Event struct {
	// Op is the Composer call: "up", "down" or "remove-project".
	Op string
	// Project is the compose project's name.
	Project string
	// Service is the compose service the call addresses; "" for
	// RemoveProject.
	Service string
	// Resource names what changed, the Compose SDK way:
	// "Container decnet.web1-ssh", "Image servicelive-test:0123456789ab",
	// "Network decnet_default".
	Resource string
	// Status is "working", "done", "warning" or "error".
	Status string
	// Text is the state reached or entered: "Creating", "Created",
	// "Starting", "Started", "Running", "Stopping", "Removed", "Building", ...
	Text string
	// Details adds information, e.g. an error message.
	Details string
}

// Statuses of an Event.
const (
	StatusWorking = "working"
	StatusDone    = "done"
	StatusWarning = "warning"
	StatusError   = "error"
)

func statusText(s api.EventStatus) string {
	switch s {
	case api.Working:
		return StatusWorking
	case api.Done:
		return StatusDone
	case api.Warning:
		return StatusWarning
	default:
		return StatusError
	}
}

// attribution says which call a resource belongs to.
type attribution struct {
	op, project, service string
}

// events adapts the Compose SDK's api.EventProcessor to the WithProgress
// hook. The SDK's processor is shared by every call of the Composer and its
// events carry no context, so each call registers the resources it works on
// (its container name, its image) and events are attributed by resource.
type events struct {
	fn func(Event)

	mu    sync.Mutex
	owner map[string][]attribution // resource ID → calls working on it
}

var _ api.EventProcessor = (*events)(nil)

func newEvents(fn func(Event)) *events {
	return &events{fn: fn, owner: map[string][]attribution{}}
}

// enabled reports whether anybody listens.
func (e *events) enabled() bool { return e != nil && e.fn != nil }

// track attributes events about resources to a call until the returned
// function is called.
func (e *events) track(a attribution, resources ...string) func() {
	if !e.enabled() {
		return func() {}
	}
	e.mu.Lock()
	for _, r := range resources {
		e.owner[r] = append(e.owner[r], a)
	}
	e.mu.Unlock()
	return func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, r := range resources {
			list := e.owner[r]
			for i, o := range list {
				if o == a {
					list = append(list[:i:i], list[i+1:]...)
					break
				}
			}
			if len(list) == 0 {
				delete(e.owner, r)
			} else {
				e.owner[r] = list
			}
		}
	}
}

// emit sends one event of the Composer's own.
func (e *events) emit(a attribution, resource, status, text, details string) {
	if !e.enabled() {
		return
	}
	e.fn(Event{Op: a.op, Project: a.project, Service: a.service,
		Resource: resource, Status: status, Text: text, Details: details})
}

// Start implements api.EventProcessor; operations are reported by resource.
func (e *events) Start(context.Context, string) {}

// Done implements api.EventProcessor.
func (e *events) Done(string, bool) {}

// On implements api.EventProcessor: it forwards the SDK's resource events,
// attributed to the call working on the resource when there is one.
func (e *events) On(resources ...api.Resource) {
	if !e.enabled() {
		return
	}
	for _, r := range resources {
		a := e.lookup(r.ID)
		e.fn(Event{Op: a.op, Project: a.project, Service: a.service,
			Resource: r.ID, Status: statusText(r.Status), Text: r.Text, Details: r.Details})
	}
}

func (e *events) lookup(id string) attribution {
	e.mu.Lock()
	defer e.mu.Unlock()
	if list := e.owner[id]; len(list) > 0 {
		return list[0]
	}
	// "Container decnet.web1-ssh" may come as the bare name, and image
	// events as "Image <ref>"; try the part after the kind.
	if _, rest, ok := strings.Cut(id, " "); ok {
		if list := e.owner[rest]; len(list) > 0 {
			return list[0]
		}
	}
	return attribution{}
}
