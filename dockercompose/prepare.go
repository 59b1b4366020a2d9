package dockercompose

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/cli/cli/command/image/build"
	"github.com/docker/compose/v5/pkg/api"
)

// prepare returns a copy of project narrowed to service alone, its
// dependencies disabled (`--no-deps`), completed with what compose's loader
// sets and the SDK relies on, and the services whose containers the SDK
// needs to see (service and those it references). The caller's project is
// never modified.
//
// Only service and the services it references are copied: the SDK needs
// the latter (disabled) to resolve "service:<base>" to the base's container,
// and nothing else. Narrowing the whole project instead costs a deep copy of
// it per other service (compose-go's WithServicesDisabled), tens of
// milliseconds for a scope of a hundred services.
func prepare(project *types.Project, service string) (*types.Project, types.ServiceConfig, []string, error) {
	if err := checkProject(project); err != nil {
		return nil, types.ServiceConfig{}, nil, err
	}
	target, ok := project.Services[service]
	if !ok {
		return nil, types.ServiceConfig{}, nil, fmt.Errorf("dockercompose: no service %q in project %q", service, project.Name)
	}
	if err := checkSupported(project, service, target); err != nil {
		return nil, types.ServiceConfig{}, nil, err
	}
	small := *project // shallow: WithSelectedServices deep-copies what it keeps
	small.Services = types.Services{service: target}
	small.DisabledServices = nil
	small.Models = nil // only a service's own models matter, and those are refused
	visible := []string{service}
	for _, ref := range referencedServices(target) {
		if _, dup := small.Services[ref]; dup {
			continue
		}
		if s, ok := project.Services[ref]; ok {
			small.Services[ref] = s
		} else if s, ok := project.DisabledServices[ref]; ok {
			small.Services[ref] = s
		} else {
			continue
		}
		visible = append(visible, ref)
	}
	p, err := small.WithSelectedServices([]string{service}, types.IgnoreDependencies)
	if err != nil {
		return nil, types.ServiceConfig{}, nil, fmt.Errorf("dockercompose: select %s: %w", service, err)
	}
	if p.Networks == nil {
		p.Networks = types.Networks{}
	}
	svc := p.Services[service]
	svc.Name = service
	if svc.Image == "" && svc.Build == nil {
		return nil, types.ServiceConfig{}, nil, fmt.Errorf("dockercompose: service %q has neither image nor build", service)
	}

	// Labels: without them the SDK cannot find the container again.
	labels := maps.Clone(svc.CustomLabels)
	if labels == nil {
		labels = types.Labels{}
	}
	for k, v := range map[string]string{
		api.ProjectLabel:     p.Name,
		api.ServiceLabel:     service,
		api.VersionLabel:     api.ComposeVersion,
		api.WorkingDirLabel:  p.WorkingDir,
		api.ConfigFilesLabel: strings.Join(p.ComposeFiles, ","),
		api.OneoffLabel:      "False",
	} {
		if _, ok := labels[k]; !ok {
			labels[k] = v
		}
	}
	if labels[api.ProjectLabel] != p.Name || labels[api.ServiceLabel] != service {
		return nil, types.ServiceConfig{}, nil, fmt.Errorf("dockercompose: service %q carries compose labels of %s/%s",
			service, labels[api.ProjectLabel], labels[api.ServiceLabel])
	}
	svc.CustomLabels = labels

	// Networks: a service with neither networks nor a network mode is on the
	// project's default network (without it compose gives it mode "none").
	if svc.NetworkMode == "" && len(svc.Networks) == 0 {
		svc.Networks = map[string]*types.ServiceNetworkConfig{"default": nil}
	}
	for key := range svc.Networks {
		if _, ok := p.Networks[key]; !ok {
			if key != "default" {
				return nil, types.ServiceConfig{}, nil, fmt.Errorf("dockercompose: service %q uses undeclared network %q", service, key)
			}
			p.Networks[key] = types.NetworkConfig{}
		}
	}
	for key, n := range p.Networks {
		if n.Name == "" {
			if n.External {
				n.Name = key
			} else {
				n.Name = p.Name + "_" + key
			}
			p.Networks[key] = n
		}
	}

	// Build: `up --build` rebuilds (from cache) on every Up, with the
	// classic builder; a git context would run git, so it is refused.
	if svc.Build != nil {
		b := *svc.Build
		if b.Context == "" {
			b.Context = "."
		}
		if !strings.Contains(b.Context, "://") && !filepath.IsAbs(b.Context) && p.WorkingDir != "" {
			b.Context = filepath.Join(p.WorkingDir, b.Context)
		}
		if typ, err := build.DetectContextType(b.Context); err == nil && typ == build.ContextTypeGit {
			return nil, types.ServiceConfig{}, nil, fmt.Errorf("dockercompose: service %q: git build contexts are not supported (they run git)", service)
		}
		svc.Build = &b
		svc.PullPolicy = types.PullPolicyBuild
	}
	p.Services[service] = svc
	return p, svc, visible, nil
}

// checkSupported refuses a service with a field the Composer cannot honour
// in-process (see UnsupportedError).
func checkSupported(project *types.Project, service string, svc types.ServiceConfig) error {
	refuse := func(field, format string, args ...any) error {
		return &UnsupportedError{Service: service, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case svc.Provider != nil:
		return refuse("provider", "a provider service runs a plugin (%s), a subprocess", svc.Provider.Type)
	case svc.UseAPISocket:
		return refuse("use_api_socket", "it would mount the engine's socket into the container")
	case len(svc.PreStart) > 0:
		return refuse("pre_start", "its hooks run in containers of the Compose SDK's start phase, which Up replaces by its own start")
	case len(svc.PostStart) > 0:
		return refuse("post_start", "its hooks run in the Compose SDK's start phase, which Up replaces by its own start")
	case len(svc.PreStop) > 0:
		return refuse("pre_stop", "its hooks run in the Compose SDK's stop, which Down replaces by its own")
	case len(svc.Models) > 0:
		return refuse("models", "models are served by the docker model plugin, a subprocess")
	}
	if b := svc.Build; b != nil {
		// Neither builder honours these: the classic builder cannot, and
		// BuildKit is driven with the build context and Dockerfile only.
		switch {
		case len(b.Secrets) > 0:
			return refuse("build.secrets", "build secrets are not served to the builder")
		case len(b.SSH) > 0:
			return refuse("build.ssh", "SSH agent forwarding to the builder is not supported")
		case len(b.AdditionalContexts) > 0:
			return refuse("build.additional_contexts", "additional build contexts are not served to the builder")
		case b.Privileged || len(b.Entitlements) > 0:
			return refuse("build.privileged", "privileged builds (entitlements) are not supported")
		case len(b.Platforms) > 1:
			return refuse("build.platforms", "a multi-platform image cannot be stored by the engine's image store")
		case len(b.CacheTo) > 0:
			return refuse("build.cache_to", "cache export needs a BuildKit exporter the engine's builder lacks")
		}
	}
	for _, ref := range svc.Secrets {
		obj, declared := project.Secrets[ref.Source]
		if reason := fileSourced("secret", ref.Source, types.FileObjectConfig(obj), declared); reason != "" {
			return refuse("secrets", "%s", reason)
		}
	}
	for _, ref := range svc.Configs {
		obj, declared := project.Configs[ref.Source]
		if reason := fileSourced("config", ref.Source, types.FileObjectConfig(obj), declared); reason != "" {
			return refuse("configs", "%s", reason)
		}
	}
	return nil
}

// fileSourced returns why the secret or config (kind) name, obj, is not one
// the Composer supports, "" when it is: one declared by the project whose
// content is a file, bind-mounted when the container is created.
func fileSourced(kind, name string, obj types.FileObjectConfig, declared bool) string {
	switch {
	case !declared:
		return fmt.Sprintf("%s %q is not declared by the project", kind, name)
	case obj.Content != "":
		return fmt.Sprintf("%s %q has inline content, copied into the container by the Compose SDK's start phase (only file %ss are supported)", kind, name, kind)
	case obj.Environment != "":
		return fmt.Sprintf("%s %q takes its content from environment variable %s, copied into the container by the Compose SDK's start phase (only file %ss are supported)", kind, name, obj.Environment, kind)
	case bool(obj.External):
		return fmt.Sprintf("%s %q is external (only file %ss are supported)", kind, name, kind)
	case obj.Driver != "" || obj.TemplateDriver != "":
		return fmt.Sprintf("%s %q has a driver (only file %ss are supported)", kind, name, kind)
	case obj.File == "":
		return fmt.Sprintf("%s %q has no file", kind, name)
	}
	return ""
}

// referencedServices returns the services svc refers to: namespace owners
// (network_mode, ipc, pid "service:X"), volumes_from sources, depends_on
// targets and links.
func referencedServices(svc types.ServiceConfig) []string {
	var refs []string
	for _, mode := range []string{svc.NetworkMode, svc.Ipc, svc.Pid} {
		if name, ok := strings.CutPrefix(mode, types.ServicePrefix); ok {
			refs = append(refs, name)
		}
	}
	for _, v := range svc.VolumesFrom {
		if !strings.HasPrefix(v, types.ContainerPrefix) {
			name, _, _ := strings.Cut(v, ":")
			refs = append(refs, name)
		}
	}
	refs = append(refs, slices.Sorted(maps.Keys(svc.DependsOn))...)
	for _, l := range svc.Links {
		name, _, _ := strings.Cut(l, ":")
		refs = append(refs, name)
	}
	return refs
}

// checkProject validates what every call needs.
func checkProject(project *types.Project) error {
	if project == nil {
		return errors.New("dockercompose: nil project")
	}
	if project.Name == "" {
		return errors.New("dockercompose: project has no name")
	}
	return nil
}

// containerName is the name of the service's (single) container: its
// container_name, else compose's "<project>-<service>-1".
func containerName(p *types.Project, svc types.ServiceConfig) string {
	if svc.ContainerName != "" {
		return svc.ContainerName
	}
	return strings.Join([]string{p.Name, svc.Name, "1"}, api.Separator)
}
