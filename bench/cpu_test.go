package bench

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuSample is the CPU time used so far by this process and by the whole
// machine (every core, every process: dockerd, containerd, shims, runc,
// fuse-overlayfs, this benchmark).
type cpuSample struct {
	self, machine time.Duration
}

// clockTick is the unit of /proc/stat (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

func sampleCPU() cpuSample {
	var s cpuSample
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
	return cpuSample{self: s.self - t.self, machine: s.machine - t.machine}
}
