package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/client"

	sl "github.com/decnet/servicelive"
	"github.com/decnet/servicelive/dockercompose"
	"github.com/decnet/servicelive/internal/testimage"
)

const envBuildRounds = "SERVICELIVE_BENCH_BUILD_ROUNDS" // rounds of BenchmarkBuild (default 10)

// buildDockerfile builds with both builders: a COPY of a file that a cold
// round changes, then a RUN (the test program appending a line: the image
// has no shell).
const buildDockerfile = `FROM %s
COPY stamp.txt /stamp.txt
RUN ["/app", "append", "built", "/built"]
`

// BenchmarkBuild measures the builds of a service with a build section,
// BuildKit (in-process through the Engine API's session endpoint) against
// the classic builder (the Compose SDK's), in $SERVICELIVE_BENCH_BUILD_ROUNDS
// rounds (default 10), the builders in rotating order. Each round, per
// builder: a cold build (the context's stamp.txt changed: the COPY and the
// RUN run again, the container is recreated on the new image), then a warm
// one (nothing changed: every step from cache, the container kept), each
// by dockercompose's Up (what `up --build` does). The build's own time is
// taken from the Composer's progress events (Image … Building → Built);
// the Up's whole time is given too. b.N is ignored.
func BenchmarkBuild(b *testing.B) {
	rounds := envInt(b, envBuildRounds, 10)
	// One decky per builder: both services listen on the same port.
	e := setup(b, map[string][]sl.Decky{"": {{Name: "a"}, {Name: "b"}}})
	ctx := e.ctx

	type builder struct {
		name     string
		decky    string
		service  string
		image    string
		dir      string
		c        *dockercompose.Composer
		m        *sl.Manager
		mu       sync.Mutex
		building time.Time
		built    time.Time
		// per round: cold and warm
		coldUp, warmUp, coldBuild, warmBuild series
	}
	var bs []*builder
	var svcs []sl.Service
	for i, name := range []string{"buildkit", "classic"} {
		bd := &builder{name: name, decky: []string{"a", "b"}[i], service: name + "img", image: fmt.Sprintf("slbench-build-%s-%s:latest", name, randomHex(4)), dir: b.TempDir()}
		if err := os.WriteFile(filepath.Join(bd.dir, "Dockerfile"), fmt.Appendf(nil, buildDockerfile, e.image), 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bd.dir, "stamp.txt"), []byte(randomHex(8)), 0o644); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			_, _ = e.api.ImageRemove(ctx, bd.image, client.ImageRemoveOptions{Force: true, PruneChildren: true})
		})
		svcs = append(svcs, sl.Service{
			Name:  bd.service,
			Image: bd.image,
			Compose: func(_ sl.Decky, _ sl.Config, s *types.ServiceConfig) {
				s.Command = testimage.Command(testimage.ModeBanner)
				// The engine here may lack a default bridge: RUN steps
				// run without a network.
				s.Build = &types.BuildConfig{Context: bd.dir, Network: "none"}
			},
		})
		bs = append(bs, bd)
	}
	reg, err := sl.NewRegistry(svcs...)
	if err != nil {
		b.Fatal(err)
	}
	for _, bd := range bs {
		resource := "Image " + bd.image
		bd.c = e.composer(b, dockercompose.WithBuildKit(bd.name == "buildkit"), dockercompose.WithProgress(func(ev dockercompose.Event) {
			if ev.Resource != resource {
				return
			}
			bd.mu.Lock()
			defer bd.mu.Unlock()
			switch ev.Text {
			case "Building":
				if bd.building.IsZero() {
					bd.building = time.Now()
				}
			case "Built":
				bd.built = time.Now()
			}
		}))
		bd.m, err = sl.New(e.store, bd.c, reg, sl.WithProjectDir(e.dir), sl.WithFleetProject(e.project))
		if err != nil {
			b.Fatal(err)
		}
	}
	if err := bs[0].m.Deploy(ctx, ""); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { purge(b, e.api, e.project) })
	for _, bd := range bs {
		if _, err := bd.m.AddService(ctx, sl.FleetDecky(bd.decky), bd.service); err != nil {
			b.Fatalf("%s: %v", bd.name, err)
		}
	}
	up := func(bd *builder) (upTook, buildTook time.Duration) {
		p, err := bd.m.Project(ctx, "")
		if err != nil {
			b.Fatal(err)
		}
		bd.mu.Lock()
		bd.building, bd.built = time.Time{}, time.Time{}
		bd.mu.Unlock()
		t0 := time.Now()
		if err := bd.c.Up(ctx, p, sl.ServiceKey(bd.decky, bd.service)); err != nil {
			b.Fatalf("%s: %v", bd.name, err)
		}
		upTook = time.Since(t0)
		bd.mu.Lock()
		defer bd.mu.Unlock()
		if !bd.building.IsZero() && !bd.built.IsZero() {
			buildTook = bd.built.Sub(bd.building)
		}
		return upTook, buildTook
	}
	for r := range rounds {
		for i := range bs {
			bd := bs[(r+i)%len(bs)]
			if err := os.WriteFile(filepath.Join(bd.dir, "stamp.txt"), []byte(randomHex(8)), 0o644); err != nil {
				b.Fatal(err)
			}
			u, bt := up(bd)
			bd.coldUp, bd.coldBuild = append(bd.coldUp, u), append(bd.coldBuild, bt)
			u, bt = up(bd)
			bd.warmUp, bd.warmBuild = append(bd.warmUp, u), append(bd.warmBuild, bt)
		}
	}
	b.StopTimer()

	var rep report
	rep.f("## Builds: BuildKit against the classic builder\n\n")
	rep.f("`BenchmarkBuild`: a service with a build section (`FROM` the local test image, a `COPY` of a file, a `RUN` of the test program; `build.network: none`), built by `dockercompose.Composer.Up` (`up --build`) with BuildKit (`WithBuildKit(true)`: in-process, the Engine API's session endpoint, `POST /build?version=2`) and with the classic builder (`WithBuildKit(false)`: the Compose SDK's), %d rounds, the builders in rotating order. Cold: the copied file changed, so the `COPY` and the `RUN` run again and Up recreates the container on the new image; warm: nothing changed, every step comes from the cache and Up keeps the container. Build = from the Composer's `Building` to its `Built` event for the image; Up = the whole call.\n\n", rounds)
	rep.f("| builder | cold build | cold Up | warm build | warm Up |\n|---|---:|---:|---:|---:|\n")
	for _, bd := range bs {
		rep.f("| %s | %s | %s | %s | %s |\n", bd.name, ms(bd.coldBuild.median()), ms(bd.coldUp.median()), ms(bd.warmBuild.median()), ms(bd.warmUp.median()))
	}
	rep.f("\nms, medians over the rounds.\n\n")
	rep.write(b, "build")
}
