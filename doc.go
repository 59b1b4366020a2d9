// Package servicelive adds or removes one service on a running decky — a
// decoy host made of a base container that holds its network identity and
// one container per emulated service sharing the base's network namespace —
// without redeploying anything else.
//
// A Manager ties together three small interfaces:
//
//   - a Store, the source of truth for the deckies of the fleet and of each
//     topology (MemoryStore, FileStore, package sqlstore for SQLite and
//     PostgreSQL, or your own, checked by servicelivetest.TestStore);
//   - a Composer, which applies one compose service to a container engine
//     (dockercompose.Composer drives the Docker Compose SDK in-process;
//     dockercompose.Hosts runs each decky on the engine its Decky.Host
//     names, see HostRouter; servicelivetest.Composer records calls for
//     tests);
//   - a Bus, which hears of every successful change (LocalBus in-process,
//     natsbus.Bus on NATS, or your own).
//
// Services come from a Registry; their configuration is checked against
// their Schema by Service.Validate.
//
// # Mutations
//
// AddService validates every name and the configuration before any I/O,
// serialises with every other mutation of the same decky (mutations of
// different deckies run in parallel), records the service in the Store,
// rewrites the decky's compose file and brings the service's container up.
// When the engine fails, or ctx ends, it takes the container down again,
// takes the service back out of the Store and the file, and returns the
// engine's error: the call can simply be retried. RemoveService rewrites the
// file, brings the container down, then records the removal; an engine
// failure puts the file back and persists nothing. Each successful call
// publishes exactly one Event, before returning.
//
// UpdateServiceConfig replaces a running service's configuration in place;
// with WithRecreate only that service's container is recreated, and a failure
// brings the old configuration and container back.
//
// Refusals change nothing and match one sentinel, for callers to map to
// status codes: ErrInvalidService (422), ErrNotFound (404), ErrConflict
// (409). Other failures match none of them, wrap their cause and name the
// failing component: ErrEngine or ErrStore, and Error.Stage.
//
// # Several processes
//
// Mutations of one decky are serialised by the Manager in its process and,
// when the Store is a DeckyLocker (MemoryStore within a process; FileStore
// and SQLite across the processes of a host; PostgreSQL across hosts), by
// the Store's decky locks across every Manager sharing it: AddService,
// RemoveService, UpdateServiceConfig and the per-decky work of Deploy and
// Reconcile, compose files included. An AddService also holds the locks of
// the deckies whose compose keys could collide with the new one, so two
// processes never make the same compose key.
//
// # Compose projects and files
//
// Each scope is one compose project: the fleet's is named "decnet"
// (WithFleetProject), a topology's is derived from its ID (ProjectName).
// Every decky renders to a base service named after it and one service per
// decky service named ServiceKey(decky, service), with network_mode
// "service:<decky>". Containers carry the labels LabelDecky, LabelService and
// LabelTopology. With WithProjectDir each scope's files are kept current:
// <dir>/<project>/compose.yaml includes one file per decky, so a mutation
// rewrites only its decky's file, atomically.
//
// # Hardened containers
//
// Every container is rendered hardened, after the registry Compose hook so
// that a hook weakens it only where the Service opts out: restart "unless-stopped"
// (RestartPolicy), security_opt no-new-privileges (NoNewPrivileges),
// cap_drop ALL with cap_add only Service.CapAdd plus NET_BIND_SERVICE for a
// port below 1024, a read-only root filesystem with /tmp and
// Service.Writable as size-limited tmpfs (Service.TmpfsSize,
// DefaultTmpfsSize), and pids and memory limits (Service.PidsLimit,
// Service.MemoryLimit; DefaultPidsLimit, DefaultMemoryLimit). A decky's base
// gets the tightest profile: no capability, a 1 MiB /tmp, the Base limits.
// Privileged is false (post_start and pre_stop hooks too), oom_score_adj
// never below 0, and the bind mounts and volumes a hook adds are read-only
// (its tmpfs volumes become tmpfs of the profile). A service opts out per
// setting with Service.OptOut (Restart, SecurityOpt, Capabilities,
// Privileged, ReadOnly, PidsLimit, MemoryLimit): the hook's value of that
// setting then stands. A hook that shares the host's or another
// container's namespaces, gives devices, or sets sysctls, ulimits, runtime
// or cgroup_parent fails the render with a *ProfileError (ErrInvalidService)
// unless the service opts out of that (OptOut.Namespaces, Devices, Sysctls,
// Ulimits, Runtime, CgroupParent); mounting the Docker socket, volumes_from,
// pre_start, provider and use_api_socket are refused always. README
// "Hardened containers" lists what is not policed. Register refuses bad
// hardening fields with ErrInvalidService. Containers made without the profile are diverged:
// Reconcile recreates them hardened.
//
// # Failure model
//
// The Store is the truth; the compose files and the engine follow it. Every
// step of a mutation is ordered so that a failure is undone at once, or
// leaves a state that a retry of the same call or Manager.Reconcile repairs:
//
//   - AddService: Store.Update, then the decky's file, then Composer.Up. A
//     failure of the render, the file or Up (error, panic, ctx done) takes
//     down whatever Up left and undoes the Store and the file. A failing
//     undo is reported with both errors (errors.Join); the Store then lists
//     the service without its container, which Reconcile creates.
//   - RemoveService: the file, then Composer.Down, then Store.Update. A
//     failure of Down or of the Update puts the file back; after a failed
//     Update the container is gone while the Store still lists it: a retry
//     finishes the removal, Reconcile recreates the container.
//   - A crash between any two steps leaves the Store, the file of one decky
//     and one container disagreeing; Reconcile of the scope rewrites the
//     files from the Store and converges the engine to it.
//   - A Bus failure never fails nor undoes a mutation: it is logged, and the
//     event, kept in an Outbox (the Store's when it has one: FileStore,
//     sqlstore; else in memory) before the call returns, is published again
//     with backoff until the Bus takes it, after a restart too. Events carry
//     a unique, time-ordered ID to deduplicate on. Manager.Close flushes.
//
// The README's "Failure model" section details every step.
//
// # Example
//
//	store := servicelive.NewMemoryStore(map[string][]servicelive.Decky{
//		"": {{Name: "web1", Image: "decnet/base", IP: "192.168.1.10"}},
//	})
//	reg, _ := servicelive.NewRegistry(servicelive.Service{Name: "ssh", Image: "decnet/ssh"})
//	composer, _ := dockercompose.New()
//	m, _ := servicelive.New(store, composer, reg, servicelive.WithBus(servicelive.NewLocalBus()))
//	services, err := m.AddService(ctx, servicelive.FleetDecky("web1"), "ssh")
package servicelive
