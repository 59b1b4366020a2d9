package dockercompose

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/containerd/platforms"
	"github.com/docker/cli/cli/command/image/build"
	"github.com/docker/compose/v5/pkg/api"
	controlapi "github.com/moby/buildkit/api/services/control"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/auth/authprovider"
	"github.com/moby/buildkit/session/filesync"
	buildtypes "github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/versions"
	"github.com/tonistiigi/fsutil"
	fstypes "github.com/tonistiigi/fsutil/types"
	"golang.org/x/sync/singleflight"
)

// The builders a Composer can build images with (see WithBuildKit).
const (
	builderAuto = iota
	builderBuildKit
	builderClassic
)

// minBuildKitAPI is the first Engine API version whose engines build with
// BuildKit through the session endpoint (Docker 18.09).
const minBuildKitAPI = "1.39"

// builderDecision is which builder a Composer builds with, decided once.
type builderDecision struct {
	once     singleflight.Group // one ping at a time; waiters keep their own ctx
	mu       sync.Mutex
	decided  bool
	buildKit bool
}

// buildKitFromEnv reads DOCKER_BUILDKIT as the docker CLI does: unset or
// empty decides nothing, a boolean (strconv.ParseBool) forces BuildKit on
// or off, anything else is an error.
func buildKitFromEnv() (int, error) {
	v := os.Getenv("DOCKER_BUILDKIT")
	if v == "" {
		return builderAuto, nil
	}
	on, err := strconv.ParseBool(v)
	if err != nil {
		return builderAuto, fmt.Errorf("dockercompose: DOCKER_BUILDKIT environment variable expects a boolean value, got %q", v)
	}
	if on {
		return builderBuildKit, nil
	}
	return builderClassic, nil
}

// useBuildKit reports whether the Composer builds with BuildKit. WithBuildKit
// decides, else DOCKER_BUILDKIT (read by New), else the engine, as the docker
// CLI decides: BuildKit when the engine advertises it as its builder
// (Builder-Version: 2 in its ping), or when it is not a Windows engine (a
// Linux engine has BuildKit built in from Docker 18.09, API 1.39, whatever
// builder it advertises; a Windows engine has none) and speaks API 1.39 or
// later. The engine's answer is asked once, with a ping, and kept; a failed
// ping is an error, asked again next time.
func (c *Composer) useBuildKit(ctx context.Context) (bool, error) {
	switch c.cfg.builder {
	case builderBuildKit:
		return true, nil
	case builderClassic:
		return false, nil
	}
	d := &c.builder
	d.mu.Lock()
	decided, buildKit := d.decided, d.buildKit
	d.mu.Unlock()
	if decided {
		return buildKit, nil
	}
	// One ping for all the callers waiting; each waits only as long as its
	// own ctx allows (the ping runs on the first caller's ctx, without its
	// cancellation, bounded by pingTimeout).
	ch := d.once.DoChan("ping", func() (any, error) {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pingTimeout)
		defer cancel()
		p, err := c.apiClient.Ping(pctx, client.PingOptions{})
		if err != nil {
			return false, fmt.Errorf("ping the engine for its builder: %w", err)
		}
		bk := engineHasBuildKit(p)
		d.mu.Lock()
		d.buildKit, d.decided = bk, true
		d.mu.Unlock()
		c.log.Debug("dockercompose: builder", "buildkit", bk, "builder_version", string(p.BuilderVersion), "os", p.OSType, "api", p.APIVersion)
		return bk, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return false, r.Err
		}
		return r.Val.(bool), nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// pingTimeout bounds the ping that decides the builder.
const pingTimeout = 30 * time.Second

// engineHasBuildKit reports whether an engine that answered p builds with
// BuildKit (see useBuildKit).
func engineHasBuildKit(p client.PingResult) bool {
	if p.BuilderVersion == buildtypes.BuilderBuildKit {
		return true
	}
	if p.APIVersion != "" && versions.LessThan(p.APIVersion, minBuildKitAPI) {
		return false
	}
	return p.OSType != "windows"
}

// buildKitBuild builds svc's image with BuildKit, in-process, through the
// Engine API: a session (POST /session, hijacked to HTTP/2) serves the
// build context and the Dockerfile from the local directories, and the
// build (POST /build?version=2, remote context "client-session") names
// that session. Its progress stream (BuildKit's status messages) is
// decoded to report a failure as a *BuildError naming the failing step.
// The image is tagged with the service's image name (and build.tags), as
// the Compose SDK's builders do, so the SDK's create finds it.
func (c *Composer) buildKitBuild(ctx context.Context, a attribution, p *types.Project, svc types.ServiceConfig) error {
	image := api.GetImageNameOrDefault(svc, p.Name)
	resource := "Image " + image
	c.events.emit(a, resource, StatusWorking, api.StatusBuilding, "")
	t0 := time.Now()
	err := c.buildKitRun(ctx, p, svc, image)
	c.log.LogAttrs(ctx, slog.LevelDebug, "dockercompose: buildkit build",
		slog.String("project", p.Name), slog.String("service", svc.Name), slog.String("image", image),
		slog.Duration("took", time.Since(t0)), slog.Any("error", err))
	if err != nil {
		c.events.emit(a, resource, StatusError, api.StatusError, err.Error())
		var be *BuildError
		if !errors.As(err, &be) {
			err = &BuildError{Service: svc.Name, Image: image, Message: err.Error(), Err: err}
		}
		return err
	}
	c.events.emit(a, resource, StatusDone, api.StatusBuilt, "")
	return nil
}

// buildKitRun runs the build of buildKitBuild: it sets the build's options
// from svc's build section, serves the context and the Dockerfile through a
// session for the build's length, and reads the progress stream to its end.
func (c *Composer) buildKitRun(ctx context.Context, p *types.Project, svc types.ServiceConfig, image string) error {
	b := svc.Build
	opts := client.ImageBuildOptions{
		Version:     buildtypes.BuilderBuildKit,
		Tags:        append([]string{image}, b.Tags...),
		NoCache:     b.NoCache,
		Remove:      true,
		PullParent:  b.Pull,
		BuildArgs:   c.buildArgs(p, b),
		Labels:      maps.Clone(b.Labels),
		NetworkMode: b.Network,
		ExtraHosts:  b.ExtraHosts.AsList(":"),
		Target:      b.Target,
		ShmSize:     int64(b.ShmSize),
		CacheFrom:   b.CacheFrom,
		BuildID:     randomID(),
	}
	if opts.Labels == nil {
		opts.Labels = map[string]string{}
	}
	opts.Labels[api.ImageBuilderLabel] = "buildkit"
	for _, pl := range b.Platforms {
		spec, err := platforms.Parse(pl)
		if err != nil {
			return fmt.Errorf("build platform %q: %w", pl, err)
		}
		opts.Platforms = append(opts.Platforms, spec)
	}

	typ, err := build.DetectContextType(b.Context)
	if err != nil {
		return fmt.Errorf("build context %s: %w", b.Context, err)
	}
	dirs := filesync.StaticDirSource{}
	sharedKey := b.Context
	switch typ {
	case build.ContextTypeLocal:
		ctxFS, err := localFS(b.Context)
		if err != nil {
			return err
		}
		dirs["context"] = ctxFS
		opts.RemoteContext = "client-session"
	case build.ContextTypeRemote:
		opts.RemoteContext = b.Context // the engine fetches it
	default:
		return fmt.Errorf("build context %s: not supported", b.Context)
	}
	dockerfile := b.Dockerfile
	if dockerfile == "" {
		dockerfile = "Dockerfile"
	}
	switch {
	case b.DockerfileInline != "" && typ == build.ContextTypeRemote:
		return errors.New("dockerfile_inline with a remote build context is not supported")
	case b.DockerfileInline != "":
		dir, err := os.MkdirTemp("", "servicelive-dockerfile-")
		if err != nil {
			return err
		}
		defer func() { _ = os.RemoveAll(dir) }()
		if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(b.DockerfileInline), 0o600); err != nil {
			return err
		}
		dockerfile = filepath.Join(dir, "Dockerfile")
	case typ == build.ContextTypeLocal && !filepath.IsAbs(dockerfile):
		dockerfile = filepath.Join(b.Context, dockerfile)
	}
	if filepath.IsAbs(dockerfile) {
		if typ == build.ContextTypeRemote {
			return errors.New("a local Dockerfile with a remote build context is not supported")
		}
		dfFS, err := localFS(filepath.Dir(dockerfile))
		if err != nil {
			return err
		}
		dirs["dockerfile"] = dfFS
		dockerfile = filepath.Base(dockerfile)
	}
	opts.Dockerfile = dockerfile

	key := sha256.Sum256([]byte(sharedKey))
	sess, err := session.NewSession(ctx, hex.EncodeToString(key[:]))
	if err != nil {
		return fmt.Errorf("buildkit session: %w", err)
	}
	if len(dirs) > 0 {
		sess.Allow(filesync.NewFSSyncProvider(dirs))
	}
	if c.configFile != nil {
		// Registry credentials for the images the build pulls: the config
		// file's inline "auths" (credential helpers were removed from it:
		// they are subprocesses), as the classic builder gets them.
		sess.Allow(authprovider.NewDockerAuthProvider(authprovider.DockerAuthProviderConfig{
			AuthConfigProvider: authprovider.LoadAuthConfig(c.configFile),
		}))
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runDone := make(chan error, 1)
	go func() {
		runDone <- sess.Run(sctx, func(ctx context.Context, proto string, meta map[string][]string) (net.Conn, error) {
			return c.apiClient.DialHijack(ctx, "/session", proto, meta)
		})
	}()
	defer func() {
		_ = sess.Close()
		cancel()
		<-runDone
	}()
	opts.SessionID = sess.ID()
	// sessionErr is why the session ended, if it did (its hijack of
	// /session failed, say): the cause of a build that found no session.
	sessionErr := func() error {
		select {
		case err := <-runDone:
			runDone <- err // for the deferred wait
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("buildkit session: %w", err)
			}
		default:
		}
		return nil
	}

	res, err := c.apiClient.ImageBuild(ctx, nil, opts)
	if err != nil {
		return fmt.Errorf("build: %w", errors.Join(err, sessionErr()))
	}
	defer func() { _ = res.Body.Close() }()
	t := newBuildTrace()
	if err := t.read(res.Body); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &BuildError{Service: svc.Name, Image: image, Message: err.Error(), Err: errors.Join(err, sessionErr())}
	}
	if t.err != nil {
		be := &BuildError{Service: svc.Name, Image: image, Message: t.err.Message, Err: errors.Join(t.err, sessionErr())}
		if v := t.failed(); v != nil {
			be.Step = v.name
			if v.err != "" {
				be.Message = v.err
			}
			be.Logs = v.logs
		}
		return be
	}
	return nil
}

// buildArgs are the service's build args, a variable without a value taken
// from the project's environment, with the proxy variables of the docker
// config file that the args do not set, as the Compose SDK's builders do.
func (c *Composer) buildArgs(p *types.Project, b *types.BuildConfig) map[string]*string {
	args := types.MappingWithEquals{}.OverrideBy(b.Args).Resolve(func(k string) (string, bool) {
		v, ok := p.Environment[k]
		return v, ok
	})
	out := map[string]*string(args)
	if c.configFile != nil {
		for k, v := range c.configFile.ParseProxyConfig(c.apiClient.DaemonHost(), nil) {
			if _, ok := out[k]; !ok {
				out[k] = v
			}
		}
	}
	return out
}

// localFS is dir as the session serves it: files owned by root, as the
// docker CLI sends them.
func localFS(dir string) (fsutil.FS, error) {
	fs, err := fsutil.NewFS(dir)
	if err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	return fsutil.NewFilterFS(fs, &fsutil.FilterOpt{
		Map: func(_ string, st *fstypes.Stat) fsutil.MapResult {
			st.Uid, st.Gid = 0, 0
			return fsutil.MapResultKeep
		},
	})
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// buildTrace is what the progress stream of a BuildKit build said: its
// steps (BuildKit's vertices), their errors and last log lines, the
// stream's error and the image ID.
type buildTrace struct {
	vertices map[string]*buildStep // by digest
	order    []string              // digests, first seen first
	err      *jsonstream.Error
	imageID  string
}

// buildStep is one step (vertex) of a BuildKit build.
type buildStep struct {
	name string
	err  string
	logs []string
	part string // an unfinished log line
}

const (
	buildKitTraceID = "moby.buildkit.trace" // aux: a control.StatusResponse, protobuf
	imageIDAuxID    = "moby.image.id"       // aux: {"ID": "sha256:..."}
	buildLogLines   = 20                    // the last log lines a BuildError keeps
)

func newBuildTrace() *buildTrace { return &buildTrace{vertices: map[string]*buildStep{}} }

// read decodes the build's JSON message stream to its end.
func (t *buildTrace) read(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var m jsonstream.Message
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read build progress: %w", err)
		}
		if m.Error != nil {
			t.err = m.Error
			continue
		}
		if m.Aux == nil {
			continue
		}
		switch m.ID {
		case buildKitTraceID:
			var raw []byte // the aux is a JSON string, base64
			if err := json.Unmarshal(*m.Aux, &raw); err != nil {
				continue
			}
			var st controlapi.StatusResponse
			if err := st.UnmarshalVT(raw); err != nil {
				continue
			}
			t.status(&st)
		case imageIDAuxID:
			var res buildtypes.Result
			if json.Unmarshal(*m.Aux, &res) == nil {
				t.imageID = res.ID
			}
		}
	}
}

// status records one BuildKit status message.
func (t *buildTrace) status(st *controlapi.StatusResponse) {
	for _, v := range st.Vertexes {
		s := t.step(v.Digest)
		if v.Name != "" {
			s.name = v.Name
		}
		if v.Error != "" {
			s.err = v.Error
		}
	}
	for _, l := range st.Logs {
		s := t.step(l.Vertex)
		text := s.part + string(l.Msg)
		lines := strings.Split(text, "\n")
		s.part = lines[len(lines)-1]
		for _, line := range lines[:len(lines)-1] {
			if line = strings.TrimRight(line, "\r"); line != "" {
				s.logs = append(s.logs, line)
			}
		}
		if len(s.logs) > buildLogLines {
			s.logs = slices.Clone(s.logs[len(s.logs)-buildLogLines:])
		}
	}
}

func (t *buildTrace) step(digest string) *buildStep {
	s, ok := t.vertices[digest]
	if !ok {
		s = &buildStep{}
		t.vertices[digest] = s
		t.order = append(t.order, digest)
	}
	return s
}

// failed returns the step that failed: the last one reporting an error
// other than a cancellation (a failure cancels the steps running
// alongside), else the last one reporting any error; nil when none did.
func (t *buildTrace) failed() *buildStep {
	var fallback *buildStep
	for _, d := range slices.Backward(t.order) {
		s := t.vertices[d]
		if s.err == "" {
			continue
		}
		if s.part != "" {
			s.logs = append(s.logs, s.part)
			s.part = ""
		}
		if !strings.Contains(s.err, "context canceled") {
			return s
		}
		if fallback == nil {
			fallback = s
		}
	}
	return fallback
}
