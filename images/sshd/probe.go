package main

import (
	"bufio"
	"flag"
	"net"
	"os"
	"strings"
	"time"
)

// probeMain is the readiness probe (an exec probe in the pod): ready means the platform's SSH server answers
// with an SSH-2.0 banner on its port within two seconds.
func probeMain(args []string) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	port := fs.String("port", envOr("GPUCLOUD_SSH_PORT", "2222"), "the SSH server's port on 127.0.0.1")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if probe(net.JoinHostPort("127.0.0.1", *port), 2*time.Second) {
		return 0
	}
	os.Stderr.WriteString("gpucloud-sshd: probe: no SSH banner on 127.0.0.1:" + *port + "\n")
	return 1
}

func probe(addr string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	conn, err := net.DialTimeout("tcp", addr, within)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	line, err := bufio.NewReaderSize(conn, 256).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "SSH-2.0-")
}
