package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	sl "github.com/decnet/servicelive"
	"github.com/decnet/servicelive/dockercompose"
	"github.com/decnet/servicelive/internal/testimage"
)

// Environment variables of the benchmarks (bench/run.sh sets them).
const (
	envEngine      = "SERVICELIVE_BENCH_ENGINE"       // "1": run the engine benchmarks
	envCompose     = "SERVICELIVE_BENCH_COMPOSE"      // path of a standalone docker-compose v2 binary
	envReportDir   = "SERVICELIVE_BENCH_REPORT_DIR"   // where each benchmark writes its Markdown section
	envRounds      = "SERVICELIVE_BENCH_ROUNDS"       // paired rounds (default 100)
	envConcRounds  = "SERVICELIVE_BENCH_CONC_ROUNDS"  // concurrency rounds (default 5)
	envConcN       = "SERVICELIVE_BENCH_CONC_N"       // concurrent adds per round (default 50)
	envDebug       = "SERVICELIVE_BENCH_DEBUG"        // "1": the Composers log at debug level to stderr
	envScopeN      = "SERVICELIVE_BENCH_SCOPE_N"      // other containers in the large scope (default 500)
	envScopeRounds = "SERVICELIVE_BENCH_SCOPE_ROUNDS" // paired rounds of the large scope (default 20)
)

const (
	projectPrefix = "slbench-" // every project the benchmarks create
	serviceName   = "banner"   // the measured service
	composeLabel  = "com.docker.compose.project"
)

// env is one benchmark's engine, image, store and compose project.
type env struct {
	ctx     context.Context // cancelled on SIGINT/SIGTERM
	api     client.APIClient
	image   string
	project string // the fleet project: slbench-<random>
	dir     string // the Managers' project dir
	store   *sl.MemoryStore
	reg     *sl.Registry
}

// setup skips unless the engine benchmarks are asked for, builds (or finds)
// the test image, and returns an env whose store holds deckies (topology ""
// = the fleet). Everything of the env's projects is removed at the end.
func setup(b *testing.B, deckies map[string][]sl.Decky) *env {
	b.Helper()
	if os.Getenv(envEngine) != "1" {
		b.Skipf("engine benchmark: set %s=1 (bench/run.sh does)", envEngine)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	b.Cleanup(stop)

	api, err := client.New(client.FromEnv)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = api.Close() })
	if _, err := api.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		b.Fatalf("docker engine: %v", err)
	}
	purge(b, api, projectPrefix) // leftovers of an interrupted earlier run
	image, err := testimage.Ensure(ctx, api)
	if err != nil {
		b.Fatal(err)
	}
	e := &env{ctx: ctx, api: api, image: image, project: projectPrefix + randomHex(4), dir: b.TempDir()}
	b.Cleanup(func() { purge(b, api, e.project) })

	for topology, ds := range deckies {
		for i := range ds {
			ds[i].Image = image // base mode is the image's default command
		}
		deckies[topology] = ds
	}
	e.store = sl.NewMemoryStore(deckies)
	e.reg, err = sl.NewRegistry(sl.Service{
		Name:  serviceName,
		Image: image,
		Ports: []int{testimage.DefaultPort},
		Compose: func(_ sl.Decky, _ sl.Config, s *types.ServiceConfig) {
			s.Command = testimage.Command(testimage.ModeBanner)
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// composer returns a dockercompose.Composer closed at the end.
// With SERVICELIVE_BENCH_DEBUG=1 it logs its debug records (durations of
// each create, start and down) to stderr.
func (e *env) composer(b *testing.B, opts ...dockercompose.Option) *dockercompose.Composer {
	b.Helper()
	if os.Getenv(envDebug) == "1" {
		opts = append(opts, dockercompose.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	}
	c, err := dockercompose.New(opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// manager returns a Manager over the env's store and registry, writing the
// compose files to the env's project dir.
func (e *env) manager(b *testing.B, c sl.Composer) *sl.Manager {
	b.Helper()
	m, err := sl.New(e.store, c, e.reg, sl.WithProjectDir(e.dir), sl.WithFleetProject(e.project))
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// composeFile is the scope's top compose file the Managers write.
func (e *env) composeFile(project string) string {
	return filepath.Join(e.dir, project, "compose.yaml")
}

// containerName is the container of service on decky in project, as the
// library renders it.
func containerName(project, decky, service string) string {
	return project + "." + decky + "." + service
}

// inspect returns a container's inspection.
func (e *env) inspect(ctx context.Context, ref string) (container.InspectResponse, error) {
	res, err := e.api.ContainerInspect(ctx, ref, client.ContainerInspectOptions{})
	return res.Container, err
}

// rawSpec is what the floor path creates: the Config and HostConfig of a
// container the library created, under another name.
type rawSpec struct {
	name string
	cfg  *container.Config
	host *container.HostConfig
}

// rawSpecOf copies the configuration of the library's container ref.
func (e *env) rawSpecOf(ctx context.Context, ref, name string) (rawSpec, error) {
	in, err := e.inspect(ctx, ref)
	if err != nil {
		return rawSpec{}, err
	}
	if in.Config == nil || in.HostConfig == nil {
		return rawSpec{}, fmt.Errorf("inspect %s: no config", ref)
	}
	cfg, host := *in.Config, *in.HostConfig
	// A container in another's network namespace takes that container's
	// hostname; the engine refuses one set explicitly with such a mode.
	if host.NetworkMode.IsContainer() {
		cfg.Hostname, cfg.Domainname = "", ""
	}
	return rawSpec{name: name, cfg: &cfg, host: &host}, nil
}

// rawAdd is the floor of an add: ContainerCreate + ContainerStart.
func rawAdd(ctx context.Context, api client.APIClient, s rawSpec) error {
	res, err := api.ContainerCreate(ctx, client.ContainerCreateOptions{Config: s.cfg, HostConfig: s.host, Name: s.name})
	if err != nil {
		return fmt.Errorf("raw create %s: %w", s.name, err)
	}
	if _, err := api.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("raw start %s: %w", s.name, err)
	}
	return nil
}

// rawRemove is the floor of a remove: ContainerStop + ContainerRemove, with
// the engine's default stop timeout as the library's Down uses.
func rawRemove(ctx context.Context, api client.APIClient, s rawSpec) error {
	if _, err := api.ContainerStop(ctx, s.name, client.ContainerStopOptions{}); err != nil {
		return fmt.Errorf("raw stop %s: %w", s.name, err)
	}
	if _, err := api.ContainerRemove(ctx, s.name, client.ContainerRemoveOptions{}); err != nil {
		return fmt.Errorf("raw remove %s: %w", s.name, err)
	}
	return nil
}

// purge force-removes every container and then every network whose compose
// project name starts with prefix. It runs with its own context, so that it
// also cleans up after an interrupt.
func purge(b *testing.B, api client.APIClient, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := make(client.Filters).Add("label", composeLabel)
	res, err := api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		b.Logf("cleanup: list containers: %v", err)
		return
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	n := 0
	for _, c := range res.Items {
		if !strings.HasPrefix(c.Labels[composeLabel], prefix) {
			continue
		}
		n++
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if _, err := api.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
				b.Logf("cleanup: remove container %s: %v", c.ID, err)
			}
		})
	}
	wg.Wait()
	nets, err := api.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		b.Logf("cleanup: list networks: %v", err)
		return
	}
	for _, nw := range nets.Items {
		if !strings.HasPrefix(nw.Labels[composeLabel], prefix) {
			continue
		}
		if _, err := api.NetworkRemove(ctx, nw.ID, client.NetworkRemoveOptions{}); err != nil && !errdefs.IsNotFound(err) {
			b.Logf("cleanup: remove network %s: %v", nw.Name, err)
		}
	}
	if n > 0 {
		b.Logf("cleanup: removed %d containers of projects %s*", n, prefix)
	}
}

func randomHex(n int) string {
	p := make([]byte, n)
	_, _ = rand.Read(p)
	return hex.EncodeToString(p)
}

// nopComposer accepts everything and touches no engine: a Manager over it
// keeps the store and the compose files without running anything.
type nopComposer struct{}

func (nopComposer) Up(context.Context, *types.Project, string) error   { return nil }
func (nopComposer) Down(context.Context, *types.Project, string) error { return nil }
