package servicelive

import (
	"context"

	"github.com/compose-spec/compose-go/v2/types"
)

// Composer applies a rendered compose project to a container engine, one
// compose service at a time. dockercompose.Composer is the Docker Compose SDK
// implementation; servicelivetest.Composer records calls for tests.
type Composer interface {
	// Up creates (building if the service has a build context) and starts exactly the
	// compose service named service of project, leaving every other service, its
	// dependencies included, untouched: `up -d --no-deps --build <service>`.
	Up(ctx context.Context, project *types.Project, service string) error
	// Down stops and removes that service's containers: `stop <service>` + `rm -f <service>`.
	// project still lists service. Nothing to remove is not an error.
	Down(ctx context.Context, project *types.Project, service string) error
}

// ProjectRemover is implemented by composers that can remove a whole project:
// every container labelled with the project's name and the networks the
// project created (never external ones). Manager.Teardown uses it when the
// Composer has it, and falls back to Down for each service otherwise.
type ProjectRemover interface {
	RemoveProject(ctx context.Context, project *types.Project) error
}

// ServiceKey is the compose service name of service on decky: "<decky>-<service>".
func ServiceKey(decky, service string) string { return decky + "-" + service }

// Labels servicelive puts on every container it renders, beside the
// com.docker.compose.* labels the Compose SDK needs. Reconcile and Teardown
// find containers by these labels, never by name.
const (
	LabelDecky    = "servicelive.decky"    // the decky's name
	LabelService  = "servicelive.service"  // the service's name; "" on a decky's base
	LabelTopology = "servicelive.topology" // the topology ID; "" in the fleet
)

// Container is one container of a compose project as the engine reports it.
type Container struct {
	ID       string
	Name     string
	Service  string // its compose service key (com.docker.compose.service)
	Decky    string // LabelDecky
	State    string // the engine's state: "running", "exited", "paused", "created", "restarting", "dead"
	Diverged bool   // its configuration differs from the project's rendering of its service, or it runs in a stale namespace of its base
	Host     string // the host it was found on ("" = the default engine), set by composers that route by host
}

// ContainerLister is implemented by composers that can list the containers
// of a project. Manager.Reconcile needs it.
type ContainerLister interface {
	// Containers returns every container labelled with project's name,
	// stopped ones included, in any order. Diverged is set by comparing
	// each container with project's rendering of its service (a service
	// that project does not list is not diverged: it is a stray). A
	// running container that shares the network namespace of a container
	// started again since it started (a base restarted by its restart
	// policy) is diverged too: only recreating it rejoins the namespace.
	Containers(ctx context.Context, project *types.Project) ([]Container, error)
}
