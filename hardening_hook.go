package servicelive

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// ProfileError reports a setting a registry Compose hook set outside the
// hardened profile: one the Service did not opt out of, or one that is
// never allowed (the Docker socket, another container's volumes, an init
// container, a provider). The render fails with it, inside an *Error; it
// matches ErrInvalidService.
type ProfileError struct {
	Service string // the registry service whose hook set it
	Setting string // the compose key, e.g. "pid", "volumes", "devices"
	Value   string // what the hook set, e.g. "host"
	OptOut  string // the OptOut field that allows it; "" when nothing does
	Reason  string // why it is never allowed, when OptOut is ""
}

// Error implements the error interface, e.g. "servicelive: service ssh:
// compose hook sets pid "host": outside the hardened profile (OptOut.Namespaces
// allows it)".
func (e *ProfileError) Error() string {
	s := fmt.Sprintf("servicelive: service %s: compose hook sets %s %q: ", e.Service, e.Setting, e.Value)
	if e.OptOut == "" {
		return s + "never allowed: " + e.Reason
	}
	return s + "outside the hardened profile (OptOut." + e.OptOut + " allows it)"
}

// Is reports whether target is ErrInvalidService.
func (e *ProfileError) Is(target error) bool { return target == ErrInvalidService }

// engineSockets are the paths of the engine's (and containerd's) sockets
// on a usual host: mounting one, even read-only (connect needs no write
// permission), is root on the host.
var engineSockets = []string{
	"/run/docker.sock", "/var/run/docker.sock",
	"/run/docker", "/var/run/docker", // containerd's socket under 20.10
	"/run/containerd", "/var/run/containerd",
}

// holdsEngineSocket reports whether a bind mount of the host path src
// exposes an engine socket: src is one, lies under one, holds one (/,
// /run, /var, ...), or is named docker.sock or containerd.sock anywhere
// (a rootless engine's). Best effort: a symbolic link elsewhere to the
// socket, or an engine listening somewhere else, is not recognised.
func holdsEngineSocket(src string) bool {
	src = path.Clean(src)
	if b := path.Base(src); b == "docker.sock" || b == "containerd.sock" {
		return true
	}
	for _, sock := range engineSockets {
		if src == sock || src == "/" || strings.HasPrefix(sock, src+"/") || strings.HasPrefix(src, sock+"/") {
			return true
		}
	}
	return false
}

// refuseHook returns a *ProfileError for the first setting of s (as the
// hook of svc left it) outside the hardened profile, nil when there is
// none. The checks without an OptOut apply whatever svc opts out of.
func refuseHook(s *types.ServiceConfig, svc Service) error {
	o := svc.OptOut
	refuse := func(setting, value, optOut, reason string) error {
		return &ProfileError{Service: svc.Name, Setting: setting, Value: value, OptOut: optOut, Reason: reason}
	}
	// Never allowed.
	if s.UseAPISocket {
		return refuse("use_api_socket", "true", "", "the Docker socket is root on the host")
	}
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeBind && !strings.Contains(v.Source, "/") {
			continue // a named or anonymous volume, a tmpfs
		}
		if !path.IsAbs(v.Source) {
			return refuse("volumes", v.Source+":"+v.Target, "", "a bind mount's host path must be absolute, to be checked for the Docker socket")
		}
		if holdsEngineSocket(v.Source) {
			return refuse("volumes", v.Source+":"+v.Target, "", "the Docker socket is root on the host, even read-only")
		}
	}
	if len(s.VolumesFrom) > 0 {
		return refuse("volumes_from", strings.Join(s.VolumesFrom, ","), "", "another container's volumes cannot be checked (they may hold the Docker socket)")
	}
	if len(s.PreStart) > 0 {
		return refuse("pre_start", strconv.Itoa(len(s.PreStart))+" init container(s)", "", "an init container is outside the hardened profile")
	}
	if s.Provider != nil {
		return refuse("provider", s.Provider.Type, "", "a provider service is no container the profile can harden")
	}
	// Allowed by an opt-out.
	if !o.ReadOnly {
		for _, v := range s.Volumes {
			if t := path.Clean(v.Target); v.Type == types.VolumeTypeTmpfs && t != "/tmp" && checkWritable(t) != "" {
				return refuse("volumes", "tmpfs:"+v.Target, "ReadOnly", "")
			}
		}
	}
	if !o.Namespaces {
		for _, ns := range []struct{ key, value string }{
			{"pid", s.Pid}, {"ipc", s.Ipc}, {"uts", s.Uts}, {"userns_mode", s.UserNSMode}, {"cgroup", s.Cgroup},
		} {
			if !privateNamespace(ns.key, ns.value) {
				return refuse(ns.key, ns.value, "Namespaces", "")
			}
		}
	}
	if !o.Devices {
		switch {
		case len(s.Devices) > 0:
			return refuse("devices", s.Devices[0].Source, "Devices", "")
		case len(s.DeviceCgroupRules) > 0:
			return refuse("device_cgroup_rules", s.DeviceCgroupRules[0], "Devices", "")
		case len(s.Gpus) > 0:
			return refuse("gpus", s.Gpus[0].Driver, "Devices", "")
		case s.Deploy != nil && s.Deploy.Resources.Reservations != nil && len(s.Deploy.Resources.Reservations.Devices) > 0:
			return refuse("deploy.resources.reservations.devices", s.Deploy.Resources.Reservations.Devices[0].Driver, "Devices", "")
		}
	}
	if !o.Sysctls && len(s.Sysctls) > 0 {
		return refuse("sysctls", strings.Join(sortedKeys(s.Sysctls), ","), "Sysctls", "")
	}
	if !o.Ulimits && len(s.Ulimits) > 0 {
		return refuse("ulimits", strings.Join(sortedKeys(s.Ulimits), ","), "Ulimits", "")
	}
	if !o.Runtime && s.Runtime != "" {
		return refuse("runtime", s.Runtime, "Runtime", "")
	}
	if !o.CgroupParent && s.CgroupParent != "" {
		return refuse("cgroup_parent", s.CgroupParent, "CgroupParent", "")
	}
	return nil
}

// privateNamespace reports whether value of the namespace setting key
// keeps the container's own namespace (not the host's, not another
// container's).
func privateNamespace(key, value string) bool {
	switch key {
	case "ipc":
		return value == "" || value == "private" || value == "shareable" || value == "none"
	case "cgroup":
		return value == "" || value == "private"
	}
	return value == ""
}

// sortedKeys returns the keys of m, sorted.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// unprivilege makes s and its lifecycle hooks unprivileged. The hooks'
// slices are copied: the Compose hook may share them.
func unprivilege(s *types.ServiceConfig) {
	s.Privileged = false
	for _, hooks := range []*[]types.ServiceHook{&s.PostStart, &s.PreStop} {
		if len(*hooks) == 0 {
			continue
		}
		*hooks = slices.Clone(*hooks)
		for i := range *hooks {
			(*hooks)[i].Privileged = false
		}
	}
}

// readOnlyVolumes returns vols as the profile mounts them, in a new slice:
// every bind mount and volume read-only (a bind's recursive "writable"
// dropped, and its SELinux relabelling, which would relabel the host's
// files), a tmpfs volume turned into one of the returned extra paths
// (",mode=" attached when it has one) to be a tmpfs of the profile, and a
// mount on one of the writable paths (/tmp, Service.Writable) dropped:
// those stay the profile's tmpfs.
func readOnlyVolumes(vols []types.ServiceVolumeConfig, writable []string) (out []types.ServiceVolumeConfig, extra []string) {
	for _, v := range vols {
		target := path.Clean(v.Target)
		if slices.Contains(writable, target) {
			continue
		}
		if v.Type == types.VolumeTypeTmpfs {
			p := target
			if v.Tmpfs != nil && v.Tmpfs.Mode != 0 {
				p += ",mode=" + strconv.FormatUint(uint64(v.Tmpfs.Mode), 8)
			}
			extra = append(extra, p)
			continue
		}
		v.ReadOnly = true
		if v.Bind != nil {
			b := *v.Bind
			if b.Recursive == "writable" {
				b.Recursive = ""
			}
			b.SELinux = ""
			v.Bind = &b
		}
		out = append(out, v)
	}
	return out, extra
}
