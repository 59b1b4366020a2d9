// Package dockercompose implements servicelive.Composer (and
// servicelive.ProjectRemover, servicelive.ContainerLister) on the Docker
// Compose SDK, github.com/docker/compose/v5, in-process: no docker CLI, no
// `docker compose` subprocess.
//
//	c, err := dockercompose.New() // the engine `docker` would use
//	if err != nil { ... }
//	defer c.Close()
//	err = c.Up(ctx, project, "web1-ssh")   // up -d --no-deps --build web1-ssh
//	err = c.Down(ctx, project, "web1-ssh") // stop web1-ssh + rm -f web1-ssh
//
// # Many engines
//
// NewHosts returns a Hosts: a Composer that runs each decky on the engine
// its Decky.Host names, through one Composer per host opened on first use
// (see Hosts and ResolveHost). Every failure of a host is a
// *servicelive.HostError naming it.
//
// # How an Up runs
//
// The project is narrowed to the one service (its dependencies disabled,
// `--no-deps`) and completed with what compose's loader would have set (the
// com.docker.compose.* labels, the default network); the caller's project is
// never modified. The SDK's Create then converges the service's container:
// it creates the container, or recreates it when its configuration or
// image changed, or leaves it alone. A service with a build section is
// built first (see Builds). The Composer then starts the container itself through the
// Engine API — the SDK serialises every container start of the process
// behind one mutex, and its own wait polls every 500 ms — and inspects it at
// once: Up returns when it runs. A container that cannot start, or is not
// running right after its start, is reported as a *ContainerError with the
// engine's message and the container's last log lines, and removed if the
// Up created it; an image that cannot be had is an error too (no container
// is created; a *PullError or a *MissingImageError). The engine may report a process that exits immediately as
// running for ~100 ms after its start: WithStartGrace watches the container
// that much longer.
//
// Up never removes a container it did not create: a running, up-to-date
// container is left alone even when the Up fails or is cancelled, and a
// container holding the service's name without being the service's is a
// *NameConflictError (servicelive.ErrConflict), not a removal.
//
// A service with a field the Composer cannot honour in-process is refused
// before any Engine API request with an *UnsupportedError naming the field
// (it matches servicelive.ErrInvalidService): inline or environment-sourced
// secrets and configs (file-sourced ones are bind mounts and work),
// pre_start, post_start and pre_stop hooks, provider, use_api_socket,
// models.
//
// An Up of a service costs 8 Engine API requests (a raw create and start
// cost 2): the SDK inspects the image and looks up the service's container
// and that of the service it references (its base) and lists the project's
// networks — concurrently — then creates and inspects the container; the
// Composer starts and inspects it. An Up of a running, up-to-date service
// costs 5: the same four, then one inspect. A Down costs 3: inspect, stop,
// remove.
//
// # Cost at fleet scale
//
// A label-filtered container listing costs the engine a pass over every
// container it holds; an inspection by name does not grow with them. A
// service with one container under a container_name (as servicelive
// renders them: "<project>.<decky>[.<service>]") is looked up by that name
// wherever the Compose SDK would list it (the observed state of an Up) and
// by Down, so an add or a remove costs the same in an engine holding
// thousands of containers (BENCHMARKS.md, "Fleet scale"). A container of
// the service under another name (renamed, or left by an interrupted
// recreate) is not seen there: Up creates the service's container beside
// it (which fails to start if the other, running, holds its port), Down
// removes only the named one and lists by label when no container holds the
// name; RemoveProject and Containers, which list by label, see it.
// Services without container_name, or scaled, are listed by label.
//
// # Builds
//
// A service with a build section is (re)built on every Up, from cache, as
// `up --build` does. With BuildKit the Composer builds it itself, in
// process, through the Engine API: a BuildKit session (POST /session,
// upgraded to HTTP/2, github.com/moby/buildkit/session) serves the build
// context and the Dockerfile from the local directories, and POST
// /build?version=2 builds from "client-session" with that session; the
// build's progress stream (BuildKit's status messages, "moby.buildkit.trace")
// is decoded so that a failure is a *BuildError naming the failing step,
// its error and its last output lines. Dockerfile syntax that needs BuildKit
// (RUN --mount, COPY --chmod, heredocs where the engine's frontend has them)
// works; a "# syntax=" directive makes the engine pull that frontend image.
// Without BuildKit the Compose SDK's classic builder builds the image through
// the Engine API. The builder is chosen as the docker CLI chooses it:
// WithBuildKit, else DOCKER_BUILDKIT (a boolean), else the engine: BuildKit
// unless the engine's ping says it is a Windows engine, or older than API
// 1.39, and does not advertise BuildKit (Builder-Version: 2); the engine is
// asked once per Composer. Build secrets, ssh, additional contexts,
// privileged builds, several platforms and cache_to are refused
// (*UnsupportedError). Registry credentials for the images a build pulls
// come from the docker config file's inline "auths", served to BuildKit
// through the session (as the classic builder gets them in its request).
//
// # What never happens
//
// The package never starts a subprocess (the SDK is told BuildKit is
// disabled, so it never runs `docker buildx bake`: BuildKit builds are the
// Composer's own, see Builds; credential helpers are not run, so registry
// credentials come from the docker config file's inline "auths" only; git
// build contexts are refused, and so are provider services and models,
// which the SDK serves through plugins), except the ssh client for an
// ssh:// engine. It never exits the process (an unknown Docker context is
// an error from New) and never writes to the process's stdout or stderr
// (progress goes to the WithProgress hook, logs to the WithLogger logger).
// The SDK itself warns through logrus' standard logger (a declared network
// that exists without compose's labels, a secret file that does not exist,
// ...): New wraps that logger's formatter, once per process, so that the
// entries the SDK makes during a Composer's call go to the WithLogger
// logger (discarded by default) and are not written; every other entry is
// formatted and written as before, and logrus' level and output are left
// alone. See sdklog.go for what stays process-wide.
//
// # Engines
//
// The API version is negotiated with the engine, down to API 1.40 (Docker
// 19.03). On engines before API 1.44 (Docker 25), which do not refuse a
// second network of the same name, the Composer serialises its network
// creations so that concurrent Ups of a new project create its network once.
package dockercompose
