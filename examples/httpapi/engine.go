package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"

	"github.com/decnet/servicelive/dockercompose"
	"github.com/decnet/servicelive/internal/testimage"
)

// engineOptions are the flags that replace the stand-in Composer with a real
// Docker Engine, driven in-process through package dockercompose.
type engineOptions struct {
	engine     bool
	dockerHost string
	engines    []namedEngine // -engine name=url, repeated: a decky whose Host is name runs on url
}

// namedEngine is one -engine name=url.
type namedEngine struct{ name, url string }

func (e *engineOptions) register(fs *flag.FlagSet) {
	fs.Var(engineFlag{e}, "engine", "drive a real Docker Engine through dockercompose: builds the demo image locally, deploys the demo deckies at start; with in-memory state, tears them down at exit. "+
		"Repeatable as -engine name=url (unix://, tcp://, ssh://): one more engine, for the deckies whose Host (in the -state file) is name, through dockercompose.Hosts")
	fs.StringVar(&e.dockerHost, "docker-host", "", "with -engine: the Docker Engine to use (unix://, tcp://, ssh://); default: DOCKER_HOST, else the docker CLI's context")
}

// engineFlag is -engine: a boolean alone, or name=url (repeatable).
type engineFlag struct{ e *engineOptions }

func (f engineFlag) IsBoolFlag() bool { return true }

func (f engineFlag) String() string {
	if f.e == nil || !f.e.engine {
		return "false"
	}
	return "true"
}

func (f engineFlag) Set(v string) error {
	switch v {
	case "true", "1":
		f.e.engine = true
		return nil
	case "false", "0":
		f.e.engine = false
		return nil
	}
	name, url, ok := strings.Cut(v, "=")
	if !ok || name == "" || url == "" {
		return fmt.Errorf("-engine %q: want name=url", v)
	}
	for _, n := range f.e.engines {
		if n.name == name {
			return fmt.Errorf("-engine %s given twice", name)
		}
	}
	f.e.engines = append(f.e.engines, namedEngine{name: name, url: url})
	f.e.engine = true
	return nil
}

// engineArgs lets -engine, a boolean flag, take name=url as its next
// argument too: "-engine name=url" becomes "-engine=name=url".
func engineArgs(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		if (a == "-engine" || a == "--engine") && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") && strings.Contains(args[i+1], "=") {
			out = append(out, "-engine="+args[i+1])
			i++
			continue
		}
		out = append(out, a)
	}
	return out
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
	if len(e.engines) > 0 {
		return newHosts(ctx, e, log, opts)
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

// newHosts returns the backend of several engines: a dockercompose.Hosts
// that runs a decky whose Host is one of the -engine names on that engine,
// and one whose Host is "" on the default engine (-docker-host, else the
// docker CLI's). The demo image is built on each.
func newHosts(ctx context.Context, e engineOptions, log *slog.Logger, opts []dockercompose.Option) (backend, error) {
	urls := map[string]string{}
	names := []string{""}
	for _, n := range e.engines {
		urls[n.name] = n.url
		names = append(names, n.name)
	}
	h, err := dockercompose.NewHosts(func(host string) ([]dockercompose.Option, error) {
		url, ok := urls[host]
		if !ok {
			return nil, fmt.Errorf("no -engine %s=url", host)
		}
		return []dockercompose.Option{dockercompose.WithHost(url)}, nil
	}, append(opts, dockercompose.WithKnownHosts(names[1:]...))...)
	if err != nil {
		return backend{}, err
	}
	var ref string
	for _, name := range names {
		c, err := h.Engine(name)
		if err == nil {
			ref, err = testimage.Ensure(ctx, c.Client())
		}
		if err != nil {
			return backend{}, errors.Join(fmt.Errorf("demo image: %w", err), h.Close())
		}
		log.Info("docker engine", "name", name, "host", c.Client().DaemonHost(), "image", ref)
	}
	return backend{
		composer: h,
		image:    demoImage{ref: ref, banner: testimage.Command(testimage.ModeBanner)},
		deploy:   true,
		close:    h.Close,
	}, nil
}
