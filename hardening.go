package servicelive

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/sys/capability"
)

// The hardened profile every container servicelive renders gets by default
// (see Service.OptOut for the per-setting opt-outs of a service):
//
//	restart: unless-stopped
//	security_opt: [no-new-privileges:true]
//	cap_drop: [ALL]
//	cap_add: Service.CapAdd, plus NET_BIND_SERVICE when a Port is below 1024 (services only)
//	read_only: true
//	tmpfs: /tmp and Service.Writable (services), /tmp (base); noexec, nosuid, nodev, size-limited
//	pids_limit, mem_limit, memswap_limit (= mem_limit): per service, or the base's
//	privileged: false (post_start and pre_stop hooks too); oom_score_adj: not below 0
//	volumes a hook adds: read-only; its tmpfs volumes: tmpfs as above
//
// A hook that sets what the profile leaves to the engine's default (host or
// other containers' namespaces, devices, sysctls, ulimits, runtime,
// cgroup_parent) fails the render with a *ProfileError unless the service
// opts out of it; the Docker socket, volumes_from, pre_start, provider and
// use_api_socket are refused always (see refuseHook).
//
// The base container, which only holds a decky's network identity, gets no
// capability at all and the Base limits; it has no opt-out.
const (
	// RestartPolicy is the restart policy of every container: it comes
	// back after a crash, a dockerd restart or a reboot, unless stopped
	// through the engine.
	RestartPolicy = "unless-stopped"
	// NoNewPrivileges is the security option of every container: no
	// process gains privileges through execve (setuid, file capabilities).
	NoNewPrivileges = "no-new-privileges:true"

	// DefaultPidsLimit is a service container's process (task) limit when
	// Service.PidsLimit is 0.
	DefaultPidsLimit = 256
	// DefaultMemoryLimit is a service container's memory limit in bytes
	// when Service.MemoryLimit is 0 (swap included: memswap_limit is set
	// to the same value).
	DefaultMemoryLimit = 256 << 20
	// DefaultTmpfsSize is the size of each tmpfs of a service container
	// (/tmp and every Service.Writable path) when Service.TmpfsSize is 0.
	DefaultTmpfsSize = 16 << 20

	// BasePidsLimit, BaseMemoryLimit and BaseTmpfsSize are the limits of
	// a decky's base container, whose only job is to hold the network
	// namespace.
	BasePidsLimit   = 64
	BaseMemoryLimit = 64 << 20
	BaseTmpfsSize   = 1 << 20

	// MinMemoryLimit is the smallest Service.MemoryLimit accepted (the
	// engine's own minimum is 6 MB).
	MinMemoryLimit = 8 << 20
	// MaxPidsLimit is the largest Service.PidsLimit accepted (the kernel's
	// PID_MAX_LIMIT).
	MaxPidsLimit = 1 << 22
)

// tmpfsOptions are the mount options of every tmpfs of the profile.
const tmpfsOptions = "rw,noexec,nosuid,nodev,size="

// OptOut lists the settings of the hardened profile a Service opts out of.
// The profile is imposed after the service's Compose hook, setting by
// setting: a setting not opted out replaces whatever the hook set for it; a
// setting opted out is left exactly as the hook set it (the engine's
// default when the hook sets nothing). There is deliberately no way to opt
// out of everything at once.
//
// Declaring a setting and opting out of it (CapAdd with Capabilities,
// Writable or TmpfsSize with ReadOnly, PidsLimit with PidsLimit,
// MemoryLimit with MemoryLimit) is refused by Register.
type OptOut struct {
	// Restart leaves restart (and deploy.restart_policy) to the hook.
	Restart bool
	// SecurityOpt leaves security_opt to the hook, for example for a
	// seccomp profile; the hook should then add NoNewPrivileges itself.
	SecurityOpt bool
	// Capabilities leaves cap_add and cap_drop to the hook (otherwise
	// cap_drop is ALL and cap_add what the service declares). It does not
	// allow privileged: see Privileged.
	Capabilities bool
	// Privileged leaves privileged (and the privileged flag of post_start
	// and pre_stop hooks) to the hook; otherwise it is false. A privileged
	// container holds every capability and every host device, a writable
	// /sys and no seccomp or AppArmor profile, whatever the other settings
	// say: opt out only for a service that cannot run otherwise.
	Privileged bool
	// ReadOnly leaves read_only, tmpfs and the mounts of volumes to the
	// hook (otherwise the root filesystem is read-only, with /tmp and
	// Service.Writable as tmpfs; every bind mount and volume the hook adds
	// is mounted read-only, and every tmpfs volume becomes a tmpfs of the
	// profile). The Docker socket is never mounted, opted out or not.
	ReadOnly bool
	// PidsLimit leaves pids_limit and deploy.resources.limits.pids to the
	// hook.
	PidsLimit bool
	// MemoryLimit leaves mem_limit, memswap_limit, oom_kill_disable,
	// oom_score_adj (otherwise never below 0) and
	// deploy.resources.limits.memory to the hook.
	MemoryLimit bool

	// The settings below have no value in the profile: the engine's
	// default (private namespaces, no device, ...) is the hardened one. A
	// hook that sets one without its opt-out makes the render fail with a
	// *ProfileError (ErrInvalidService) naming it, rather than losing what
	// the hook asked for in silence.

	// Namespaces lets the hook share the pid, ipc, uts, user (userns_mode)
	// or cgroup namespace of the host or of another container.
	Namespaces bool
	// Devices lets the hook give host devices: devices,
	// device_cgroup_rules, gpus and deploy.resources.reservations.devices.
	Devices bool
	// Sysctls lets the hook set sysctls (in the decky's shared network
	// namespace for net.*).
	Sysctls bool
	// Ulimits lets the hook set ulimits.
	Ulimits bool
	// Runtime lets the hook choose the OCI runtime (runtime).
	Runtime bool
	// CgroupParent lets the hook place the container in another cgroup
	// (cgroup_parent).
	CgroupParent bool
}

// capabilityNames maps the names of the Linux capabilities (upper case,
// without "CAP_") to their numbers.
var capabilityNames = func() map[string]capability.Cap {
	m := make(map[string]capability.Cap)
	for _, c := range capability.ListKnown() {
		m[strings.ToUpper(c.String())] = c
	}
	return m
}()

// canonicalCapability returns name (e.g. "net_admin", "CAP_NET_ADMIN") as
// the profile writes it ("NET_ADMIN"), and whether it names a Linux
// capability. "ALL" does not.
func canonicalCapability(name string) (string, bool) {
	n := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(name)), "CAP_")
	_, ok := capabilityNames[n]
	return n, ok
}

// capabilities returns the cap_add of s: its CapAdd, plus NET_BIND_SERVICE
// when one of its Ports is below 1024, canonical, sorted, without
// duplicates; nil for none.
func (s Service) capabilities() []string {
	var caps []string
	for _, c := range s.CapAdd {
		if n, ok := canonicalCapability(c); ok {
			caps = append(caps, n)
		}
	}
	if slices.ContainsFunc(s.Ports, func(p int) bool { return p > 0 && p < 1024 }) {
		caps = append(caps, "NET_BIND_SERVICE")
	}
	slices.Sort(caps)
	return slices.Compact(caps)
}

// checkHardening validates the hardening fields of s; the reason of the
// first problem, "" when there is none.
func checkHardening(s Service) string {
	o := s.OptOut
	switch {
	case o.Capabilities && len(s.CapAdd) > 0:
		return "CapAdd is set but OptOut.Capabilities leaves capabilities to the hook"
	case o.ReadOnly && (len(s.Writable) > 0 || s.TmpfsSize != 0):
		return "Writable or TmpfsSize is set but OptOut.ReadOnly leaves the root filesystem and tmpfs to the hook"
	case o.PidsLimit && s.PidsLimit != 0:
		return "PidsLimit is set but OptOut.PidsLimit leaves it to the hook"
	case o.MemoryLimit && s.MemoryLimit != 0:
		return "MemoryLimit is set but OptOut.MemoryLimit leaves it to the hook"
	case s.PidsLimit < 0 || s.PidsLimit > MaxPidsLimit:
		return fmt.Sprintf("PidsLimit %d out of range (0 for the default %d, else 1 to %d; OptOut.PidsLimit for none)", s.PidsLimit, DefaultPidsLimit, MaxPidsLimit)
	case s.MemoryLimit != 0 && (s.MemoryLimit < MinMemoryLimit || s.MemoryLimit > 1<<40):
		return fmt.Sprintf("MemoryLimit %d out of range (0 for the default %d, else %d to 1 TiB; OptOut.MemoryLimit for none)", s.MemoryLimit, DefaultMemoryLimit, MinMemoryLimit)
	case s.TmpfsSize < 0 || s.TmpfsSize != 0 && (s.TmpfsSize < 4096 || s.TmpfsSize > s.memoryLimit()):
		return fmt.Sprintf("TmpfsSize %d out of range (0 for the default %d, else 4096 to the memory limit)", s.TmpfsSize, DefaultTmpfsSize)
	}
	seen := make(map[string]bool, len(s.CapAdd))
	for _, c := range s.CapAdd {
		n, ok := canonicalCapability(c)
		switch {
		case !ok:
			return fmt.Sprintf("CapAdd: %q is not a Linux capability", c)
		case seen[n]:
			return fmt.Sprintf("CapAdd: duplicate capability %q", c)
		}
		seen[n] = true
	}
	for _, p := range s.Writable {
		if reason := checkWritable(p); reason != "" {
			return fmt.Sprintf("Writable %q: %s", p, reason)
		}
		if seen["path "+p] {
			return fmt.Sprintf("Writable: duplicate path %q", p)
		}
		seen["path "+p] = true
	}
	return ""
}

// checkWritable returns why p cannot be a writable path, "" when it can.
func checkWritable(p string) string {
	switch {
	case !path.IsAbs(p):
		return "not absolute"
	case path.Clean(p) != p:
		return "not clean (want " + strconv.Quote(path.Clean(p)) + ")"
	case p == "/":
		return "the root filesystem itself"
	case p == "/tmp":
		return "/tmp is always writable"
	case strings.ContainsAny(p, ":,= \t\n\r\x00"):
		return "contains one of : , = or a space or control character"
	}
	for _, sys := range []string{"/proc", "/sys", "/dev"} {
		if p == sys || strings.HasPrefix(p, sys+"/") {
			return "under " + sys
		}
	}
	return ""
}

// memoryLimit returns the memory limit of s's container.
func (s Service) memoryLimit() int64 {
	if s.MemoryLimit != 0 {
		return s.MemoryLimit
	}
	return DefaultMemoryLimit
}

// harden imposes the hardened profile of svc on the rendered service s,
// after its Compose hook: every setting svc does not opt out of replaces
// what the hook set, and a setting outside the profile the hook set
// without its opt-out is refused (a *ProfileError; s is then half done).
func harden(s *types.ServiceConfig, svc Service) error {
	o := svc.OptOut
	if err := refuseHook(s, svc); err != nil {
		return err
	}
	pids, mem, size := int64(DefaultPidsLimit), svc.memoryLimit(), int64(DefaultTmpfsSize)
	if svc.PidsLimit != 0 {
		pids = svc.PidsLimit
	}
	if svc.TmpfsSize != 0 {
		size = svc.TmpfsSize
	}
	if !o.Capabilities {
		s.CapDrop = []string{"ALL"}
		s.CapAdd = svc.capabilities()
	}
	if !o.Privileged {
		unprivilege(s)
	}
	if !o.ReadOnly {
		s.ReadOnly = true
		writable := append([]string{"/tmp"}, svc.Writable...)
		var extra []string
		s.Volumes, extra = readOnlyVolumes(s.Volumes, writable)
		s.Tmpfs = tmpfs(size, append(writable, extra...))
	}
	imposeCommon(s, o, pids, mem)
	return nil
}

// hardenBase imposes the base container's profile on s: the tightest, with
// no capability, no writable path but a small /tmp, and the Base limits.
func hardenBase(s *types.ServiceConfig) {
	unprivilege(s)
	s.CapDrop = []string{"ALL"}
	s.CapAdd = nil
	s.ReadOnly = true
	s.Tmpfs = tmpfs(BaseTmpfsSize, []string{"/tmp"})
	imposeCommon(s, OptOut{}, BasePidsLimit, BaseMemoryLimit)
}

// imposeCommon imposes restart, security_opt and the limits, unless opted out.
func imposeCommon(s *types.ServiceConfig, o OptOut, pids, mem int64) {
	// deploy is copied before any change: the hook may share it.
	if s.Deploy != nil {
		d := *s.Deploy
		if d.Resources.Limits != nil {
			l := *d.Resources.Limits
			d.Resources.Limits = &l
		}
		s.Deploy = &d
	}
	if !o.Restart {
		s.Restart = RestartPolicy
		if s.Deploy != nil {
			s.Deploy.RestartPolicy = nil
		}
	}
	if !o.SecurityOpt {
		s.SecurityOpt = []string{NoNewPrivileges}
	}
	limits := (*types.Resource)(nil)
	if s.Deploy != nil {
		limits = s.Deploy.Resources.Limits
	}
	if !o.PidsLimit {
		s.PidsLimit = pids
		if limits != nil {
			limits.Pids = pids // compose requires it equal to pids_limit
		}
	}
	if !o.MemoryLimit {
		s.MemLimit = types.UnitBytes(mem)
		s.MemSwapLimit = types.UnitBytes(mem)
		s.OomKillDisable = false
		s.OomScoreAdj = max(s.OomScoreAdj, 0) // below 0 the OOM killer spares it
		if limits != nil {
			limits.MemoryBytes = types.UnitBytes(mem) // equal to mem_limit
		}
	}
}

// tmpfs returns the tmpfs entries of paths, each of size bytes. A path may
// carry ",mode=<octal>" (from a tmpfs volume).
func tmpfs(size int64, paths []string) types.StringList {
	out := make(types.StringList, len(paths))
	for i, p := range paths {
		p, mode, _ := strings.Cut(p, ",")
		out[i] = p + ":" + tmpfsOptions + strconv.FormatInt(size, 10)
		if mode != "" {
			out[i] += "," + mode
		}
	}
	return out
}
