package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"

	"github.com/decnet/servicelive/dockercompose"
	"github.com/decnet/servicelive/internal/testimage"
)

// engineOptions are the flags that replace the stand-in Composer with a real
// Docker Engine, driven in-process through package dockercompose.
type engineOptions struct {
	engine     bool
	dockerHost string
}

func (e *engineOptions) register(fs *flag.FlagSet) {
	fs.BoolVar(&e.engine, "engine", false, "drive a real Docker Engine through dockercompose: builds the demo image locally, deploys the demo deckies at start; with in-memory state, tears them down at exit")
	fs.StringVar(&e.dockerHost, "docker-host", "", "with -engine: the Docker Engine to use (unix://, tcp://, ssh://); default: DOCKER_HOST, else the docker CLI's context")
}

func (e engineOptions) check() error {
	if e.dockerHost != "" && !e.engine {
		return errors.New("-docker-host needs -engine")
	}
	return nil
}

// newEngine returns the backend of -engine: a dockercompose.Composer, and the
// demo image (internal/testimage: a static Go program in a FROM scratch
// image, built through the Engine API since nothing can be pulled) for the
// deckies' bases and, in banner mode, their services. Building it runs the
// go toolchain once, so -engine needs the module's source at hand, as with
// `go run ./examples/httpapi`. A -state file keeps the image its deckies
// were created with: one seeded without -engine names the stand-in image,
// which no engine has, so give -engine a state file of its own.
func newEngine(ctx context.Context, e engineOptions, log *slog.Logger) (backend, error) {
	opts := []dockercompose.Option{dockercompose.WithLogger(log)}
	if e.dockerHost != "" {
		opts = append(opts, dockercompose.WithHost(e.dockerHost))
	}
	c, err := dockercompose.New(opts...)
	if err != nil {
		return backend{}, err
	}
	ref, err := testimage.Ensure(ctx, c.Client())
	if err != nil {
		return backend{}, errors.Join(fmt.Errorf("demo image: %w", err), c.Close())
	}
	log.Info("docker engine", "host", c.Client().DaemonHost(), "image", ref)
	return backend{
		composer: c,
		image:    demoImage{ref: ref, banner: testimage.Command(testimage.ModeBanner)},
		deploy:   true,
		close:    c.Close,
	}, nil
}
