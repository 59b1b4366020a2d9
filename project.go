package servicelive

import (
	"context"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// Compose labels the Compose SDK uses to find the containers of a project.
// They are set as CustomLabels (not written to compose files: Docker Compose
// adds them itself when it runs a file).
const (
	composeProjectLabel = "com.docker.compose.project"
	composeServiceLabel = "com.docker.compose.service"
	composeOneoffLabel  = "com.docker.compose.oneoff"
	composeWorkDirLabel = "com.docker.compose.project.working_dir"
	composeFilesLabel   = "com.docker.compose.project.config_files"
)

// logOptions bounds every container's json-file log.
var logOptions = map[string]string{"max-size": "10m", "max-file": "3"}

// ProjectName returns the compose project name of a scope: the fleet
// project's name (default "decnet") for topology "", else the fleet project's
// name, "_t_" and the topology ID with each upper-case letter written as "_"
// and its lower-case form. The mapping is injective, so distinct IDs (IDs
// differing only in case included) never share a project.
func (m *Manager) ProjectName(topology string) string {
	if topology == "" {
		return m.fleetProject
	}
	var b strings.Builder
	b.Grow(len(m.fleetProject) + 3 + len(topology) + 8)
	b.WriteString(m.fleetProject)
	b.WriteString("_t_")
	for _, r := range topology {
		if 'A' <= r && r <= 'Z' {
			b.WriteByte('_')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Project renders one scope (topology "" = fleet) from the Store as a compose
// project: one base service per decky (named after the decky) and one service
// per decky service, named ServiceKey(decky, service), sharing the base's
// network namespace (network_mode "service:<decky>"), labelled with the
// compose labels and servicelive's own (decky, service, topology). Its Name is
// the scope's project name.
//
// A service on a decky that is no longer registered, or two compose keys that
// collide in the scope, is an error (ErrInvalidService, ErrConflict).
func (m *Manager) Project(ctx context.Context, topology string) (*types.Project, error) {
	_, p, err := m.scope(ctx, "project", topology, renderFull)
	return p, err
}

// newProject returns an empty project for a scope;
// services is a size hint.
func (m *Manager) newProject(topology string, services int) *types.Project {
	name := m.ProjectName(topology)
	p := &types.Project{
		Name:     name,
		Services: make(types.Services, services),
		Networks: make(types.Networks, 1),
	}
	if m.projectDir != "" {
		p.WorkingDir = filepath.Join(m.projectDir, name)
		p.ComposeFiles = []string{filepath.Join(p.WorkingDir, topFileName)}
	}
	return p
}

// deckyProject renders the project of one decky in the scope's project: its
// base and its services, or only the service named only when it is not "".
func (m *Manager) deckyProject(topology string, d Decky, mode renderMode, only string) (*types.Project, error) {
	if only != "" {
		d.Services = []string{only}
	}
	p := m.newProject(topology, 1+len(d.Services))
	if err := m.addDecky(p, topology, d, mode); err != nil {
		return nil, err
	}
	return p, nil
}

// renderMode says how the services of a decky are rendered.
type renderMode int

const (
	// renderFull renders every service from the registry, hooks applied;
	// an unregistered service is an error. For the engine's Up.
	renderFull renderMode = iota
	// renderTolerant is renderFull, except that an unregistered service is
	// rendered by its identity alone. For compose files and Teardown.
	renderTolerant
	// renderIdentity renders services by their identity alone (name,
	// namespace, labels): no registry, no hook. Enough to find, stop and
	// remove containers, whatever the registry or a hook does.
	renderIdentity
)

// addDecky adds d's base and services to p.
func (m *Manager) addDecky(p *types.Project, topology string, d Decky, mode renderMode) error {
	ref := Ref{Topology: topology, Decky: d.Name}
	if err := ref.validate(); err != nil {
		return &Error{Op: "render", Ref: ref, Kind: ErrInvalidService, Err: err}
	}
	if _, dup := p.Services[d.Name]; dup {
		return &Error{Op: "render", Ref: ref, Kind: ErrConflict, Msg: "decky name collides with another compose service of the scope"}
	}
	base := types.ServiceConfig{Name: d.Name}
	base.Image = d.Image
	base.Hostname = d.Hostname
	if base.Hostname == "" {
		base.Hostname = d.Name
	}
	if d.Network != "" {
		var cfg *types.ServiceNetworkConfig
		if d.IP != "" {
			cfg = &types.ServiceNetworkConfig{Ipv4Address: d.IP}
		}
		base.Networks = map[string]*types.ServiceNetworkConfig{d.Network: cfg}
		if _, ok := p.Networks[d.Network]; !ok {
			p.Networks[d.Network] = types.NetworkConfig{Name: d.Network, External: true}
		}
	} else {
		base.Networks = map[string]*types.ServiceNetworkConfig{"default": nil}
		if _, ok := p.Networks["default"]; !ok {
			p.Networks["default"] = types.NetworkConfig{Name: p.Name + "_default"}
		}
	}
	m.identify(&base, topology, d.Name, "")
	host := m.hostOf(d)
	m.place(&base, host)
	hardenBase(&base)
	p.Services[d.Name] = base

	for _, name := range d.Services {
		key := ServiceKey(d.Name, name)
		if _, dup := p.Services[key]; dup {
			return &Error{Op: "render", Ref: ref, Service: name, Kind: ErrConflict, Msg: "compose key " + key + " collides with another compose service of the scope"}
		}
		s, err := m.renderService(topology, d, name, mode)
		if err != nil {
			return err
		}
		m.place(&s, host)
		p.Services[key] = s
	}
	return nil
}

// renderService renders service name of decky d.
func (m *Manager) renderService(topology string, d Decky, name string, mode renderMode) (s types.ServiceConfig, err error) {
	ref := Ref{Topology: topology, Decky: d.Name}
	if !ValidServiceName(name) {
		return s, &Error{Op: "render", Ref: ref, Service: name, Kind: ErrInvalidService, Msg: "bad service name"}
	}
	var svc Service
	if mode != renderIdentity {
		var ok bool
		svc, ok = m.reg.Lookup(name)
		if !ok && mode == renderFull {
			return s, &Error{Op: "render", Ref: ref, Service: name, Kind: ErrInvalidService, Msg: "service is not registered"}
		}
	}
	key := ServiceKey(d.Name, name)
	s.Name = key
	s.Image = svc.Image
	if svc.Build != nil {
		b := *svc.Build
		s.Build = &b
	}
	if svc.Compose != nil {
		if err := callHook(svc, d, d.Config[name], &s); err != nil {
			return s, &Error{Op: "render", Ref: ref, Service: name, Err: err, Stage: StageRender}
		}
	}
	// The identity of the service is servicelive's, whatever the hook did:
	// it can never join another namespace, network or scope.
	s.Name = key
	s.NetworkMode = "service:" + d.Name
	s.Networks = nil
	s.Hostname = ""
	s.DependsOn = types.DependsOnConfig{d.Name: {Condition: types.ServiceConditionStarted, Required: true}}
	s.Net = "" // the legacy alias of network_mode
	m.identify(&s, topology, d.Name, name)
	if err := harden(&s, svc); err != nil { // after the hook: only svc.OptOut can relax it
		return s, &Error{Op: "render", Ref: ref, Service: name, Kind: ErrInvalidService, Err: err, Stage: StageRender}
	}
	return s, nil
}

// callHook runs a registry Compose hook on copies, turning a panic into an error.
func callHook(svc Service, d Decky, cfg Config, s *types.ServiceConfig) (err error) {
	defer recoverInto(&err, "compose hook of service "+svc.Name)
	svc.Compose(d.Clone(), cfg.Clone(), s)
	return nil
}

// identify sets what makes s findable and unique: container name, labels,
// compose labels and bounded logging.
func (m *Manager) identify(s *types.ServiceConfig, topology, decky, service string) {
	project := m.ProjectName(topology)
	s.ContainerName = project + "." + decky
	if service != "" {
		s.ContainerName += "." + service
	}
	labels := make(types.Labels, len(s.Labels)+3)
	for k, v := range s.Labels {
		if !strings.HasPrefix(k, "servicelive.") && !strings.HasPrefix(k, "com.docker.compose.") {
			labels[k] = v
		}
	}
	labels[LabelDecky] = decky
	labels[LabelService] = service
	labels[LabelTopology] = topology
	s.Labels = labels
	custom := types.Labels{
		composeProjectLabel: project,
		composeServiceLabel: s.Name,
		composeOneoffLabel:  "False",
	}
	if m.projectDir != "" {
		dir := filepath.Join(m.projectDir, project)
		custom[composeWorkDirLabel] = dir
		custom[composeFilesLabel] = filepath.Join(dir, topFileName)
	}
	s.CustomLabels = custom
	s.Logging = &types.LoggingConfig{Driver: "json-file", Options: maps.Clone(logOptions)}
}

// keyCandidates returns the decky names whose compose keys could equal key:
// every prefix of key that ends before a "-", and key itself.
func keyCandidates(key string) []string {
	var out []string
	for i := range len(key) {
		if key[i] == '-' && i > 0 {
			out = append(out, key[:i])
		}
	}
	return append(slices.Clip(out), key)
}
