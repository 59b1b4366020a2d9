package bench

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuSample is the CPU time used so far by this process, by the engine's
// daemons (dockerd and containerd, not their shims) and by the whole machine
// (every core, every process: shims, runc, fuse-overlayfs, other work).
type cpuSample struct {
	self, engine, machine time.Duration
}

// enginePIDs are the engine's daemons (dockerd, containerd), found once.
var enginePIDs = func() []string {
	var pids []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		comm, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err != nil {
			continue
		}
		switch strings.TrimSpace(string(comm)) {
		case "dockerd", "containerd":
			pids = append(pids, e.Name())
		}
	}
	return pids
}()

// processCPU returns the user+system CPU time of process pid.
func processCPU(pid string) time.Duration {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command (which may hold spaces): state is field 3,
	// utime 14, stime 15.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * clockTick
}

// clockTick is the unit of /proc/stat (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

func sampleCPU() cpuSample {
	var s cpuSample
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	for _, pid := range enginePIDs {
		s.engine += processCPU(pid)
	}
	// First line of /proc/stat: cpu user nice system idle iowait irq softirq steal ...
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest, guest_nice are already in user, nice
			break
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		s.machine += time.Duration(n) * clockTick
	}
	return s
}

func (s cpuSample) sub(t cpuSample) cpuSample {
	return cpuSample{self: s.self - t.self, engine: s.engine - t.engine, machine: s.machine - t.machine}
}

func (s cpuSample) add(t cpuSample) cpuSample {
	return cpuSample{self: s.self + t.self, engine: s.engine + t.engine, machine: s.machine + t.machine}
}

func (s cpuSample) div(n int) cpuSample {
	d := time.Duration(n)
	return cpuSample{self: s.self / d, engine: s.engine / d, machine: s.machine / d}
}
