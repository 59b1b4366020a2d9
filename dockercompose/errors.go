package dockercompose

import (
	"fmt"
	"strings"

	"github.com/decnet/servicelive"
)

// ContainerError reports a container that Up started but that does not run:
// the engine refused to start it, or it had stopped (or was restarting) when
// Up looked right after the start. Up removed the container if it had
// created it (Removed); a container Up found and kept is left in place. The
// error keeps what the engine said and the container's last log lines. Up
// returns it wrapped: use errors.As.
type ContainerError struct {
	Container   string   // the container's name
	State       string   // the engine's state when Up looked: "exited", "dead", "restarting", "created", ...; "running" when it had exited and was restarted
	ExitCode    int      // the exit code, when it exited
	EngineError string   // the engine's error for the container (State.Error), if any
	Logs        []string // its last log lines, oldest first (stdout and stderr)
	Err         error    // the engine's error when the start itself failed, or the context's
	Removed     bool     // Up removed the container, which it had created (or recreated)
	RemoveErr   error    // set when removing the container failed too
}

// Error describes the container, e.g. "container decnet.web1-ssh exited
// with code 1; last log lines: servicelive-test: fail mode: exiting with
// status 1".
func (e *ContainerError) Error() string {
	var b strings.Builder
	b.WriteString("container ")
	b.WriteString(e.Container)
	switch {
	case e.Err != nil:
		fmt.Fprintf(&b, " did not start: %v", e.Err)
	case e.State == "exited":
		fmt.Fprintf(&b, " exited with code %d", e.ExitCode)
	case e.State == "running":
		// Running again, but not the process Up started: it exited and
		// the engine restarted it (its restart policy).
		b.WriteString(" exited and was restarted by its restart policy")
	case e.State != "":
		fmt.Fprintf(&b, " is %s, not running", e.State)
	default:
		b.WriteString(" is not running")
	}
	if e.EngineError != "" && (e.Err == nil || !strings.Contains(e.Err.Error(), e.EngineError)) {
		fmt.Fprintf(&b, " (engine: %s)", e.EngineError)
	}
	if len(e.Logs) > 0 {
		b.WriteString("; last log lines: ")
		b.WriteString(strings.Join(e.Logs, " | "))
	}
	switch {
	case e.RemoveErr != nil:
		fmt.Fprintf(&b, "; removing it failed too: %v", e.RemoveErr)
	case !e.Removed:
		b.WriteString("; left in place (this up did not create it)")
	}
	return b.String()
}

// Unwrap returns the engine's or the context's error, if any.
func (e *ContainerError) Unwrap() error { return e.Err }

// NameConflictError reports a container that holds a name Up needs for the
// service's container but is not the service's: it has no compose labels
// (an operator's own container), or those of another project or service, or
// is a one-off (or hook) container of the service. Up then removes nothing
// and fails, as `docker compose up` does on a name conflict. It matches
// servicelive.ErrConflict with errors.Is. Up returns it wrapped: use
// errors.As.
type NameConflictError struct {
	Name          string // the container name
	Project       string // the project of the Up
	Service       string // the service of the Up
	HolderID      string // the ID of the container holding Name
	HolderProject string // its compose project label ("" when it has none)
	HolderService string // its compose service label ("" when it has none)
	Err           error  // the engine's conflict error
}

// Error names the container and its holder, e.g. "container name
// decnet.web1.ssh for service web1-ssh of project decnet is held by
// container 0123456789ab, which has no compose labels".
func (e *NameConflictError) Error() string {
	var holder string
	switch {
	case e.HolderProject == "":
		holder = "which has no compose labels"
	case e.HolderProject == e.Project && e.HolderService == e.Service:
		holder = "a one-off or hook container of the service"
	default:
		holder = fmt.Sprintf("which is service %s of project %s", e.HolderService, e.HolderProject)
	}
	return fmt.Sprintf("container name %s for service %s of project %s is held by container %s, %s",
		e.Name, e.Service, e.Project, shortID(e.HolderID), holder)
}

// Unwrap returns servicelive.ErrConflict and the engine's error.
func (e *NameConflictError) Unwrap() []error {
	if e.Err == nil {
		return []error{servicelive.ErrConflict}
	}
	return []error{servicelive.ErrConflict, e.Err}
}

// UnsupportedError reports a compose field of a service that the Composer
// cannot honour in-process: Up refuses the service before any Engine API
// request, creating nothing, rather than run it without the field (or run
// a subprocess for it). It matches servicelive.ErrInvalidService with
// errors.Is: the caller's service is what is wrong. Up returns it as is:
// use errors.As.
//
// The fields refused are, by Field:
//
//   - "secrets", "configs": one whose content is inline (content) or taken
//     from the environment (environment): the Compose SDK copies such
//     content into the container in its start phase, which Up replaces by
//     its own start; one that is external, or has a driver or template
//     driver (Swarm's). A file-sourced one is a bind mount, made at create
//     time, and supported;
//   - "pre_start": the SDK creates its runner containers at create time and
//     runs them in its start phase: they would be left behind, never run;
//   - "post_start", "pre_stop": run by the SDK's start and stop, which Up
//     and Down replace by their own: never run;
//   - "provider": the SDK runs a provider plugin, a subprocess;
//   - "use_api_socket": it mounts the engine's socket into the container
//     (and the SDK's support for it panics on a project without configs);
//   - "models": the SDK runs the `docker model` plugin, a subprocess.
type UnsupportedError struct {
	Service string // the service
	Field   string // the compose field: "secrets", "configs", "pre_start", "post_start", ...
	Reason  string // why, naming the entry (secret, config, hook) concerned
}

// Error names the service and the field, e.g. "dockercompose: service
// web1-ssh: secrets is not supported: secret \"db\" has inline content (only
// file secrets are)".
func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("dockercompose: service %s: %s is not supported: %s", e.Service, e.Field, e.Reason)
}

// Unwrap returns servicelive.ErrInvalidService.
func (e *UnsupportedError) Unwrap() error { return servicelive.ErrInvalidService }

// PullError reports that the engine could not pull the image of the
// service Up converges (it was not present, and the pull policy asked for
// it). Err is the engine's error, typed by the Engine API's status where the
// engine gives one (use errdefs.IsNotFound, errdefs.IsUnauthorized, ...),
// whether the engine refused the pull or reported its failure in the pull's
// progress stream.
// Docker Engine 20.10 answers 500 (errdefs.IsInternal) both for a registry
// out of reach and for one that does not know the image. Up creates no
// container and does not retry. Up returns it wrapped: use
// errors.As.
type PullError struct {
	Image string // the image reference
	Err   error  // the engine's error
}

// Error names the image, e.g. "pull image servicelive-missing:latest:
// Error response from daemon: ...".
func (e *PullError) Error() string { return fmt.Sprintf("pull image %s: %v", e.Image, e.Err) }

// Unwrap returns the engine's error.
func (e *PullError) Unwrap() error { return e.Err }

// MissingImageError reports that the engine refused to create the
// service's container because it has no such image: the pull policy did
// not allow a pull ("never"), or the image was removed after the Compose SDK
// checked for it. Up creates no container and does not retry. It matches
// errdefs.ErrNotFound, as the engine's error does. Up returns it wrapped:
// use errors.As.
type MissingImageError struct {
	Image string // the image reference
	Err   error  // the engine's error
}

// Error names the image, e.g. "no such image servicelive-missing:latest:
// Error response from daemon: No such image: servicelive-missing:latest".
func (e *MissingImageError) Error() string {
	return fmt.Sprintf("no such image %s: %v", e.Image, e.Err)
}

// Unwrap returns the engine's error.
func (e *MissingImageError) Unwrap() error { return e.Err }

// BuildError reports that the image of a service with a build section
// could not be built with BuildKit: a step of the Dockerfile failed (a RUN
// that exited non-zero, a COPY of a missing file, a FROM of an image that
// cannot be had), the Dockerfile is invalid, or the build could not run.
// Step is the failing step as BuildKit names it (e.g. "[2/3] RUN
// [\"/app\", \"fail\"]"), Message its error, Logs its last output lines,
// all decoded from the build's progress stream. Up creates no container.
// Up returns it wrapped: use errors.As.
type BuildError struct {
	Service string   // the service
	Image   string   // the image being built
	Step    string   // the failing step, "" when the failure is not a step's
	Message string   // what failed, as the engine or BuildKit says
	Logs    []string // the failing step's last output lines, oldest first
	Err     error    // the engine's error (a *jsonstream.Error from the stream), or the client's
}

// Error names the image and the step, e.g. "build image web1-built of
// service web1-built: step [2/2] RUN [\"/app\", \"fail\"]: executor
// failed running [/app fail]: exit code: 1; last log lines: ...".
func (e *BuildError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "build image %s of service %s", e.Image, e.Service)
	if e.Step != "" {
		fmt.Fprintf(&b, ": step %s", e.Step)
	}
	fmt.Fprintf(&b, ": %s", e.Message)
	if len(e.Logs) > 0 {
		b.WriteString("; last log lines: ")
		b.WriteString(strings.Join(e.Logs, " | "))
	}
	return b.String()
}

// Unwrap returns the engine's or the client's error.
func (e *BuildError) Unwrap() error { return e.Err }

// shortID is a container ID as the docker CLI shows it.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
