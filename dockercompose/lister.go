package dockercompose

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/containerd/errdefs"
	"github.com/docker/compose/v5/pkg/api"
	"github.com/docker/compose/v5/pkg/compose"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/decnet/servicelive"
)

var _ servicelive.ContainerLister = (*Composer)(nil)

// Containers returns every container labelled with project's name
// (com.docker.compose.project), stopped ones included. A container of a
// service project lists is Diverged when Up would recreate it: its
// configuration hash differs from the one the Compose SDK computes for the
// service now (a changed configuration, or a namespace owner recreated
// since), or its image reference now names another image (or none), or it
// runs disconnected from one of the service's networks, or it runs in the
// network namespace of another container (network_mode "container:<ID>",
// as a decky's services do in its base's) that has started again since it
// started: it is then stranded in the owner's previous namespace (the
// engine restarts a container under its restart policy without restarting
// the containers that share its namespace). It costs one listing, one image
// inspection per image and, for containers sharing a running container's
// namespace, one inspection of the owner and of each one not created
// clearly after the owner's last start.
func (c *Composer) Containers(ctx context.Context, project *types.Project) ([]servicelive.Container, error) {
	if c.closed.Load() {
		return nil, errClosed
	}
	if err := checkProject(project); err != nil {
		return nil, err
	}
	wrap := func(err error) error {
		return fmt.Errorf("dockercompose: list containers of project %s: %w", project.Name, err)
	}
	res, err := c.apiClient.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", api.ProjectLabel+"="+project.Name),
	})
	if err != nil {
		return nil, wrap(err)
	}

	// The SDK's view of the project's containers, to resolve "service:X"
	// references as it did when it hashed the configuration.
	byService := map[string][]container.Summary{}
	for _, ctr := range res.Items {
		if ctr.Labels[api.ConfigHashLabel] != "" && ctr.Labels[api.OneoffLabel] != "True" {
			s := ctr.Labels[api.ServiceLabel]
			byService[s] = append(byService[s], ctr)
		}
	}
	for _, list := range byService {
		slices.SortFunc(list, func(a, b container.Summary) int { return strings.Compare(canonicalName(a), canonicalName(b)) })
	}

	d := &divergence{c: c, project: project, byService: byService, expected: map[string]expectation{}, images: map[string]string{}, started: map[string]time.Time{}}
	out := make([]servicelive.Container, 0, len(res.Items))
	for _, ctr := range res.Items {
		sc := servicelive.Container{
			ID:      ctr.ID,
			Name:    canonicalName(ctr),
			Service: ctr.Labels[api.ServiceLabel],
			Decky:   ctr.Labels[servicelive.LabelDecky],
			State:   string(ctr.State),
		}
		if _, listed := project.Services[sc.Service]; listed {
			if sc.Diverged, err = d.diverged(ctx, ctr); err != nil {
				return nil, wrap(err)
			}
		}
		out = append(out, sc)
	}
	return out, nil
}

// divergence compares containers with a project, caching per service and
// per image.
type divergence struct {
	c         *Composer
	project   *types.Project
	byService map[string][]container.Summary
	expected  map[string]expectation // per service
	images    map[string]string      // image reference → local image ID ("" when missing)
	started   map[string]time.Time   // container ID → its last start (zero when not running)
}

// expectation is what a service's container should carry.
type expectation struct {
	hash     string   // config hash; "" when it cannot be computed
	image    string   // image reference
	networks []string // engine names of the networks it must be connected to
}

func (d *divergence) expect(service string) expectation {
	if e, ok := d.expected[service]; ok {
		return e
	}
	var e expectation
	if p, svc, _, err := prepare(d.project, service); err == nil {
		e.image = api.GetImageNameOrDefault(svc, p.Name)
		if svc.NetworkMode == "" {
			for key := range svc.Networks {
				e.networks = append(e.networks, p.Networks[key].Name)
			}
		}
		resolveReferences(&svc, d.byService)
		if h, err := compose.ServiceHash(svc); err == nil {
			e.hash = h
		}
	}
	d.expected[service] = e
	return e
}

func (d *divergence) diverged(ctx context.Context, ctr container.Summary) (bool, error) {
	e := d.expect(ctr.Labels[api.ServiceLabel])
	if e.hash == "" || ctr.Labels[api.ConfigHashLabel] != e.hash {
		return true, nil
	}
	// A running container disconnected from one of its networks (out of
	// band) is recreated by compose: report it. A stopped container lists
	// no networks here; starting it reconnects them.
	if ctr.State == container.StateRunning && ctr.NetworkSettings != nil {
		for _, n := range e.networks {
			if _, ok := ctr.NetworkSettings.Networks[n]; !ok {
				return true, nil
			}
		}
	}
	if stale, err := d.stranded(ctx, ctr); err != nil || stale {
		return stale, err
	}
	id, ok := d.images[e.image]
	if !ok {
		res, err := d.c.apiClient.ImageInspect(ctx, e.image)
		switch {
		case errdefs.IsNotFound(err):
		case err != nil:
			return false, fmt.Errorf("inspect image %s: %w", e.image, err)
		default:
			id = res.ID
		}
		d.images[e.image] = id
	}
	return id == "" || id != ctr.ImageID, nil
}

// stranded reports whether ctr runs in the network namespace of a running
// container (network_mode "container:<ID>") that started after ctr did.
// Only a ctr created no later than the owner's start second can be: the
// others are not inspected.
func (d *divergence) stranded(ctx context.Context, ctr container.Summary) (bool, error) {
	owner, ok := strings.CutPrefix(ctr.HostConfig.NetworkMode, types.ContainerPrefix)
	if !ok || ctr.State != container.StateRunning {
		return false, nil
	}
	ownerStart, err := d.startedAt(ctx, owner)
	if err != nil || ownerStart.IsZero() || ctr.Created > ownerStart.Unix() {
		return false, err
	}
	start, err := d.startedAt(ctx, ctr.ID)
	if err != nil || start.IsZero() {
		return false, err
	}
	return start.Before(ownerStart), nil
}

// startedAt returns when container id last started; zero when it is not
// running or gone.
func (d *divergence) startedAt(ctx context.Context, id string) (time.Time, error) {
	if t, ok := d.started[id]; ok {
		return t, nil
	}
	var t time.Time
	res, err := d.c.apiClient.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	switch {
	case errdefs.IsNotFound(err):
	case err != nil:
		return t, fmt.Errorf("inspect container %s: %w", id, err)
	case res.Container.State != nil && res.Container.State.Running:
		if t, err = time.Parse(time.RFC3339Nano, res.Container.State.StartedAt); err != nil {
			return t, fmt.Errorf("inspect container %s: start time: %w", id, err)
		}
	}
	d.started[id] = t
	return t, nil
}

// resolveReferences replaces "service:X" references (network, IPC and PID
// namespaces, volumes_from) with "container:<ID>" of X's first container,
// as the Compose SDK does before hashing; unresolvable ones stay.
func resolveReferences(svc *types.ServiceConfig, byService map[string][]container.Summary) {
	resolve := func(mode string) string {
		if name, ok := strings.CutPrefix(mode, types.ServicePrefix); ok {
			if list := byService[name]; len(list) > 0 {
				return types.ContainerPrefix + list[0].ID
			}
		}
		return mode
	}
	svc.NetworkMode = resolve(svc.NetworkMode)
	svc.Ipc = resolve(svc.Ipc)
	svc.Pid = resolve(svc.Pid)
	if len(svc.VolumesFrom) > 0 {
		vf := slices.Clone(svc.VolumesFrom)
		for i, v := range vf {
			spec := strings.Split(v, ":")
			if spec[0] == "container" && len(spec) > 1 {
				vf[i] = spec[1]
				continue
			}
			if list := byService[spec[0]]; len(list) > 0 {
				vf[i] = list[0].ID
			}
		}
		svc.VolumesFrom = vf
	}
}

// canonicalName is a container's name without the leading "/" (the
// shortest of its names, links aside).
func canonicalName(ctr container.Summary) string {
	name := ""
	for _, n := range ctr.Names {
		n = strings.TrimPrefix(n, "/")
		if strings.Contains(n, "/") {
			continue // a link alias
		}
		if name == "" || len(n) < len(name) {
			name = n
		}
	}
	return name
}
