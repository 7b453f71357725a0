package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

const (
	// A container's resources are the tenant's; a flood of connections (each a goroutine and buffers, each
	// session a process) must not exhaust them, nor a port scan hold the server.
	maxConnections   = 64
	handshakeTimeout = 20 * time.Second // the whole key exchange and authentication, as OpenSSH's LoginGraceTime
	// Server-side keepalive (OpenSSH's ClientAliveInterval): a connection whose peer vanished without a FIN
	// (a laptop closed, a NAT dropping state) is closed after keepaliveMissed unanswered intervals.
	keepaliveInterval = 30 * time.Second
	keepaliveMissed   = 3
)

func logf(format string, args ...any) { log.Printf(format, args...) }

type options struct {
	listen         string
	authorizedKeys string
	hostKeyDir     string
	command        []string
}

func runMain(args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.listen, "listen", ":"+envOr("GPUCLOUD_SSH_PORT", "2222"), "address to serve SSH on")
	fs.StringVar(&o.authorizedKeys, "authorized-keys", "/etc/gpucloud/ssh/authorized_keys",
		"the accepted public keys, re-read on every attempt")
	fs.StringVar(&o.hostKeyDir, "host-key-dir", envOr("GPUCLOUD_SSH_HOST_KEY_DIR", "/gpucloud/ssh"),
		"where ssh_host_ed25519_key is read from, or written to when generated")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o.command = fs.Args()

	r := newReaper()
	hostKey, err := loadOrCreateHostKey(o.hostKeyDir)
	if err != nil {
		logf("host key: %v", err)
		return 1
	}
	srv := newServer(o, hostKey, r)
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		logf("listen %s: %v", o.listen, err)
		return 1
	}
	logf("listening on %s (host key %s)", ln.Addr(), ssh.FingerprintSHA256(hostKey.PublicKey()))
	srv.ln = ln
	go srv.serve(ln)

	if len(o.command) == 0 {
		sig := waitForTermination()
		logf("%v: shutting down", sig)
		srv.shutdown()
		return 0
	}
	code := supervise(r, o.command, srv.shutdown)
	return code
}

type server struct {
	opts   options
	config *ssh.ServerConfig
	reaper *reaper
	slots  chan struct{} // one per open connection, up to maxConnections

	mu       sync.Mutex
	ln       net.Listener
	conns    map[net.Conn]struct{}
	sessions map[*session]struct{}
	closing  bool
}

func newServer(o options, hostKey ssh.Signer, r *reaper) *server {
	s := &server{
		opts: o, reaper: r, slots: make(chan struct{}, maxConnections),
		conns: map[net.Conn]struct{}{}, sessions: map[*session]struct{}{},
	}
	s.config = &ssh.ServerConfig{
		// Public keys only: no PasswordCallback and no KeyboardInteractiveCallback, so neither is offered,
		// and NoClientAuth stays false.
		PublicKeyCallback: s.checkKey,
		ServerVersion:     "SSH-2.0-gpucloud-sshd",
	}
	s.config.AddHostKey(hostKey)
	return s
}

// checkKey accepts a key listed in the authorized keys file, read afresh each time so that keys the platform
// adds or removes apply without a restart. Any user name is accepted: the container has one account.
func (s *server) checkKey(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	fp := ssh.FingerprintSHA256(key)
	ok, err := authorized(s.opts.authorizedKeys, key)
	if err != nil {
		logf("auth: cannot read %s: %v", s.opts.authorizedKeys, err)
	}
	if !ok {
		logf("auth refused: user %q from %s key %s %s", meta.User(), meta.RemoteAddr(), key.Type(), fp)
		return nil, errors.New("key not authorized")
	}
	// Logged once the handshake succeeds: this callback also answers the client's "would you accept this
	// key?" query, which is not a login.
	return &ssh.Permissions{Extensions: map[string]string{"fingerprint": key.Type() + " " + fp}}, nil
}

func authorized(path string, key ssh.PublicKey) (bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	want := key.Marshal()
	for len(data) > 0 {
		// authorized_keys options (from=, command=, ...) are not honoured: the platform writes plain keys.
		k, _, _, rest, err := ssh.ParseAuthorizedKey(data)
		if err != nil {
			return false, nil // no further parsable key
		}
		if bytes.Equal(k.Marshal(), want) {
			return true, nil
		}
		data = rest
	}
	return false, nil
}

func (s *server) serve(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			logf("accept: %v", err)
			time.Sleep(100 * time.Millisecond) // e.g. out of file descriptors: do not spin
			continue
		}
		select {
		case s.slots <- struct{}{}:
			go func() {
				defer func() { <-s.slots }()
				s.handleConn(conn)
			}()
		default:
			logf("refused connection from %s: %d connections open", conn.RemoteAddr(), maxConnections)
			conn.Close()
		}
	}
}

func (s *server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *server) handleConn(conn net.Conn) {
	defer conn.Close()
	if !s.track(conn) {
		return
	}
	defer s.untrack(conn)
	_ = conn.SetDeadline(time.Now().Add(handshakeTimeout))
	sconn, chans, reqs, err := ssh.NewServerConn(conn, s.config)
	if err != nil {
		// A readiness probe reads the banner and hangs up; that is not worth a log line every 10 s.
		if !errors.Is(err, io.EOF) {
			logf("handshake with %s failed: %v", conn.RemoteAddr(), err)
		}
		return
	}
	_ = conn.SetDeadline(time.Time{})
	defer sconn.Close()
	logf("accepted user %q from %s key %s", sconn.User(), sconn.RemoteAddr(), sconn.Permissions.Extensions["fingerprint"])

	done := make(chan struct{})
	defer close(done)
	go keepalive(sconn, done)
	go refuseGlobalRequests(reqs)
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			go s.handleSession(sconn, nc)
		case "direct-tcpip":
			go handleDirectTCPIP(sconn, nc, done)
		default:
			// Includes direct-streamlocal@openssh.com (forwarding to unix sockets).
			_ = nc.Reject(ssh.UnknownChannelType, fmt.Sprintf("channel type %q is not supported", nc.ChannelType()))
		}
	}
	logf("closed connection of user %q from %s", sconn.User(), sconn.RemoteAddr())
}

// refuseGlobalRequests answers every global request with a failure: tcpip-forward (ssh -R) would let the
// client listen on the container's ports, which this server does not offer.
func refuseGlobalRequests(reqs <-chan *ssh.Request) {
	for req := range reqs {
		if req.WantReply {
			_ = req.Reply(false, nil)
		}
	}
}

func keepalive(conn *ssh.ServerConn, done <-chan struct{}) {
	ticker := time.NewTicker(keepaliveInterval)
	defer ticker.Stop()
	for {
		select {
		case <-done:
			return
		case <-ticker.C:
		}
		replied := make(chan error, 1)
		go func() {
			// OpenSSH clients answer this unknown request with a failure, which still proves they are there.
			_, _, err := conn.SendRequest("keepalive@openssh.com", true, nil)
			replied <- err
		}()
		select {
		case <-done:
			return
		case err := <-replied:
			if err != nil {
				conn.Close()
				return
			}
		case <-time.After(keepaliveInterval * keepaliveMissed):
			logf("closing connection from %s: no answer to keepalives", conn.RemoteAddr())
			conn.Close()
			return
		}
	}
}

// shutdown stops accepting, closes every connection and hangs up every session's processes.
func (s *server) shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return
	}
	s.closing = true
	if s.ln != nil {
		s.ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	for sess := range s.sessions {
		sess.hangup()
	}
}
