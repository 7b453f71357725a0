package main

import (
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// direct-tcpip (ssh -L) reaches services inside the instance, such as Jupyter on localhost:8888. Only the
// loopback addresses are allowed: anything else would make the platform's server a general proxy from the
// instance's network position, which is not what it is there for.
var loopbackTargets = map[string][]string{
	"127.0.0.1": {"127.0.0.1"},
	"::1":       {"::1"},
	"localhost": {"127.0.0.1", "::1"}, // not resolved: an image's /etc/hosts could point it anywhere
}

type directTCPIP struct {
	Host     string
	Port     uint32
	OrigHost string
	OrigPort uint32
}

// connDone is closed when the SSH connection ends.
func handleDirectTCPIP(conn *ssh.ServerConn, nc ssh.NewChannel, connDone <-chan struct{}) {
	var req directTCPIP
	if err := ssh.Unmarshal(nc.ExtraData(), &req); err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	hosts, ok := loopbackTargets[req.Host]
	if !ok || req.Port == 0 || req.Port > 65535 {
		logf("refused forwarding for %s to %s:%d (only loopback)", conn.RemoteAddr(), req.Host, req.Port)
		_ = nc.Reject(ssh.Prohibited, "only 127.0.0.1, localhost and ::1 inside the instance can be forwarded to")
		return
	}
	var target net.Conn
	var err error
	for _, h := range hosts {
		target, err = net.DialTimeout("tcp", net.JoinHostPort(h, strconv.Itoa(int(req.Port))), 10*time.Second)
		if err == nil {
			break
		}
	}
	if err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		target.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	splice(ch, target.(*net.TCPConn), connDone)
}

// splice copies both ways and passes each side's EOF on as a half close, so protocols that finish writing
// before they finish reading keep working.
func splice(ch ssh.Channel, c *net.TCPConn, connDone <-chan struct{}) {
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		// A connection that drops mid-forward must not leave the target connection (and this goroutine) open.
		select {
		case <-connDone:
			c.Close()
		case <-finished:
		}
	}()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(c, ch)
		_ = c.CloseWrite()
	}()
	go func() {
		defer wg.Done()
		_, _ = io.Copy(ch, c)
		_ = ch.CloseWrite()
	}()
	wg.Wait()
	ch.Close()
	c.Close()
}
