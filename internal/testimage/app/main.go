// Command app is the program inside servicelive's local test image (see
// package testimage). It is built as a static binary and copied into a
// FROM scratch image, so it depends on nothing but the kernel.
//
// The first argument (or $MODE when there is none) selects the behaviour:
//
//	base    stay up until SIGTERM or SIGINT, then exit 0 (a decky's base)
//	banner  listen on TCP port $PORT (default 2222), write $BANNER (default
//	        "SSH-2.0-servicelive-test\r\n") to every connection and close it;
//	        exit 0 on SIGTERM or SIGINT (a honeypot service)
//	fail    print $FAIL_MESSAGE (default "servicelive-test: fail mode:
//	        exiting with status 1") to stderr and exit 1, after $FAIL_AFTER
//	        (a Go duration, default 0) if set
//	append  append the second argument and a newline to each file named by
//	        the next ones (creating them), then exit 0 (a build step's RUN:
//	        the image has no shell)
//
// Modes for `docker exec <container> /app <mode>`, probing the container
// from inside (each prints one JSON object on stdout):
//
//	probe [path...]  try to write a file in /, /tmp and each path; report
//	                 the Cap* and NoNewPrivs lines of /proc/self/status and
//	                 /proc/1/status, and the uid
//	forkbomb [max]   fork single-threaded children (each only waits) until
//	                 fork fails or max (default 4096) are up; report how many
//	                 and the error, then kill and reap them all
//	kill1            send SIGTERM to PID 1 (the container's main process)
package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	mode := os.Getenv("MODE")
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	if mode == "" {
		mode = "base"
	}
	switch mode {
	case "base":
		base()
	case "banner":
		banner()
	case "fail":
		fail()
	case "probe":
		probe(os.Args[2:])
	case "forkbomb":
		forkbomb(os.Args[2:])
	case "kill1":
		if err := syscall.Kill(1, syscall.SIGTERM); err != nil {
			fmt.Fprintf(os.Stderr, "servicelive-test: kill 1: %v\n", err)
			os.Exit(1)
		}
	case "append":
		appendLine(os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "servicelive-test: unknown mode %q\n", mode)
		os.Exit(2)
	}
}

// stopSignal returns a channel that receives SIGTERM and SIGINT. As PID 1 in
// a container the process gets no default signal handling, so it must catch
// them itself to stop promptly.
func stopSignal() <-chan os.Signal {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	return ch
}

func base() {
	stop := stopSignal()
	fmt.Println("servicelive-test: base up")
	<-stop
	fmt.Println("servicelive-test: base stopping")
}

func banner() {
	stop := stopSignal()
	port := os.Getenv("PORT")
	if port == "" {
		port = "2222"
	}
	text := os.Getenv("BANNER")
	if text == "" {
		text = "SSH-2.0-servicelive-test\r\n"
	}
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		fmt.Fprintf(os.Stderr, "servicelive-test: listen on %s: %v\n", port, err)
		os.Exit(1)
	}
	fmt.Printf("servicelive-test: banner listening on %s\n", ln.Addr())
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
				_, _ = conn.Write([]byte(text))
				_ = conn.Close()
			}()
		}
	}()
	<-stop
	_ = ln.Close()
	fmt.Println("servicelive-test: banner stopping")
}

func fail() {
	if d, err := time.ParseDuration(os.Getenv("FAIL_AFTER")); err == nil && d > 0 {
		time.Sleep(d)
	}
	msg := os.Getenv("FAIL_MESSAGE")
	if msg == "" {
		msg = "servicelive-test: fail mode: exiting with status 1"
	}
	fmt.Fprintln(os.Stderr, msg)
	os.Exit(1)
}

func appendLine(args []string) {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "servicelive-test: append TEXT FILE...")
		os.Exit(2)
	}
	for _, name := range args[1:] {
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err == nil {
			_, err = fmt.Fprintln(f, args[0])
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "servicelive-test: append: %v\n", err)
			os.Exit(1)
		}
		fmt.Printf("servicelive-test: appended to %s\n", name)
	}
}
