package dockercompose

import (
	"context"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// Looking containers up by name.
//
// A label-filtered container listing costs the engine a pass over every
// container it holds (Docker Engine 20.10 filters a snapshot of all its
// containers, whatever the filter): in a fleet of thousands of containers
// it is the one cost of a mutation that grows with the fleet. A
// container's name, though, is an index in the engine: inspecting a
// container by name costs the same with 10 or 10,000 containers. The
// services servicelive renders each have one container with a
// deterministic container_name, so the Composer looks them up by that name
// wherever it needs a service's container: in the Compose SDK's listings
// of an Up's observed state (see engineClient.listScoped), and in Down.
//
// What a name lookup cannot see is a container of the service under
// another name: compose's recreate creates the replacement as
// "<id12>_<name>" and renames it once the old one is removed, so a process
// killed in between leaves one. Up then converges the named container as
// usual (the leftover stays, labelled with the service, until
// RemoveProject or the Manager's Reconcile, which list by label, remove
// it); Down removes the named one, and lists by label only when there is
// none.

// nameOf returns the container name of svc when the service has exactly
// one container, under that name: container_name set, no scale or replicas
// above one. ok is false otherwise: its containers must be listed.
func nameOf(svc types.ServiceConfig) (name string, ok bool) {
	if svc.ContainerName == "" {
		return "", false
	}
	if svc.Scale != nil && *svc.Scale > 1 {
		return "", false
	}
	if svc.Deploy != nil && svc.Deploy.Replicas != nil && *svc.Deploy.Replicas > 1 {
		return "", false
	}
	return svc.ContainerName, true
}

// containerByName returns, as a one-item listing, the container called
// name when it matches options as the engine's listing would (its state
// for options.All, its label filters); nothing when no container has that
// name. ok is false when options filter on more than labels: the caller
// must list.
func containerByName(ctx context.Context, api client.APIClient, name string, options client.ContainerListOptions) (items []container.Summary, ok bool, err error) {
	for term := range options.Filters {
		if term != "label" {
			return nil, false, nil
		}
	}
	res, err := api.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	if errdefs.IsNotFound(err) {
		return nil, true, nil
	}
	if err != nil {
		return nil, true, err
	}
	if strings.TrimPrefix(res.Container.Name, "/") != name {
		return nil, true, nil // an ID prefix matched, not a name
	}
	s := summaryOf(res.Container)
	if !options.All && s.State != container.StateRunning {
		return nil, true, nil
	}
	for f, on := range options.Filters["label"] {
		if on && !hasLabel(s.Labels, f) {
			return nil, true, nil
		}
	}
	return []container.Summary{s}, true, nil
}

// hasLabel reports whether labels match a label filter: "key" or
// "key=value".
func hasLabel(labels map[string]string, filter string) bool {
	k, v, withValue := strings.Cut(filter, "=")
	got, present := labels[k]
	return present && (!withValue || got == v)
}

// summaryOf is a container's inspection as the engine's listing shows it,
// with the fields the Compose SDK and the Composer read.
func summaryOf(r container.InspectResponse) container.Summary {
	s := container.Summary{
		ID:      r.ID,
		Names:   []string{"/" + strings.TrimPrefix(r.Name, "/")},
		ImageID: r.Image,
		Mounts:  r.Mounts,
		Command: strings.TrimSpace(r.Path + " " + strings.Join(r.Args, " ")),
	}
	if r.Config != nil {
		s.Image, s.Labels = r.Config.Image, r.Config.Labels
	}
	if r.State != nil {
		s.State = r.State.Status
		s.Status = string(r.State.Status)
	}
	if r.HostConfig != nil {
		s.HostConfig.NetworkMode = string(r.HostConfig.NetworkMode)
	}
	if r.NetworkSettings != nil {
		s.NetworkSettings = &container.NetworkSettingsSummary{Networks: r.NetworkSettings.Networks}
	}
	if t, err := time.Parse(time.RFC3339Nano, r.Created); err == nil {
		s.Created = t.Unix()
	}
	return s
}
