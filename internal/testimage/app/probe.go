package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
)

// probeResult is what probe prints.
type probeResult struct {
	UID    int               `json:"uid"`
	Writes map[string]string `json:"writes"` // directory → "ok" or the error
	Self   map[string]string `json:"self"`   // Cap*, NoNewPrivs of /proc/self/status
	Init   map[string]string `json:"init"`   // the same of /proc/1/status
}

func probe(paths []string) {
	r := probeResult{UID: os.Getuid(), Writes: map[string]string{}}
	for _, dir := range append([]string{"/", "/tmp"}, paths...) {
		f := filepath.Join(dir, "servicelive-probe")
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			r.Writes[dir] = err.Error()
			continue
		}
		_ = os.Remove(f)
		r.Writes[dir] = "ok"
	}
	r.Self = statusLines("/proc/self/status")
	r.Init = statusLines("/proc/1/status")
	_ = json.NewEncoder(os.Stdout).Encode(r)
}

// statusLines returns the Cap* and NoNewPrivs lines of a /proc status file.
func statusLines(file string) map[string]string {
	out := map[string]string{}
	f, err := os.Open(file)
	if err != nil {
		out["error"] = err.Error()
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && (strings.HasPrefix(k, "Cap") || k == "NoNewPrivs") {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// forkResult is what forkbomb prints.
type forkResult struct {
	Forked int    `json:"forked"`
	Err    string `json:"err"` // the error that stopped the bomb, "" if max was reached
	Errno  int    `json:"errno"`
}

// forkbomb forks children that only wait (one task each: a raw fork of
// this thread, which then blocks in ppoll without touching the Go
// runtime) until fork fails or max children are up, then kills and reaps
// them. The parent allocates nothing while forking, so the runtime needs
// no new thread while the limit is reached.
func forkbomb(args []string) {
	max := 4096
	if len(args) > 0 {
		if n, err := strconv.Atoi(args[0]); err == nil && n > 0 {
			max = n
		}
	}
	runtime.GOMAXPROCS(1)
	debug.SetGCPercent(-1)
	runtime.LockOSThread()
	pids := make([]int, 0, max)
	var errno syscall.Errno
	for len(pids) < max {
		pid, _, e := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
		if e != 0 {
			errno = e
			break
		}
		if pid == 0 { // the child: wait for a signal, forever
			for {
				syscall.RawSyscall6(syscall.SYS_PPOLL, 0, 0, 0, 0, 0, 0)
			}
		}
		pids = append(pids, int(pid))
	}
	r := forkResult{Forked: len(pids)}
	if errno != 0 {
		r.Err, r.Errno = errno.Error(), int(errno)
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, pid := range pids {
		var ws syscall.WaitStatus
		for {
			if _, err := syscall.Wait4(pid, &ws, 0, nil); err != syscall.EINTR {
				break
			}
		}
	}
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
}
