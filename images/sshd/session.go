package main

import (
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/crypto/ssh"
)

// ptyDrain bounds how long output is still read from a pty after its shell exited: a background job that
// keeps the terminal open must not keep the session open forever (OpenSSH behaves the same).
const ptyDrain = time.Second

// session is one "session" channel: at most one process (a shell, a command or the sftp server).
type session struct {
	srv  *server
	conn *ssh.ServerConn
	ch   ssh.Channel

	env  []string // accepted `env` requests, NAME=value
	term string
	ptmx *os.File // the pty's master side, when a pty was requested
	tty  *os.File // its slave side, until the child has it

	mu  sync.Mutex
	pid int // of the started process (the leader of its own session and process group), 0 before
}

// Request payloads (RFC 4254 section 6).
type ptyRequest struct {
	Term          string
	Cols, Rows    uint32
	Width, Height uint32
	Modes         string
}

type windowChange struct{ Cols, Rows, Width, Height uint32 }

type envRequest struct{ Name, Value string }

type stringRequest struct{ Value string }

type exitSignal struct {
	Signal     string
	CoreDumped bool
	Message    string
	Lang       string
}

func (s *server) handleSession(conn *ssh.ServerConn, nc ssh.NewChannel) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	sess := &session{srv: s, conn: conn, ch: ch}
	s.mu.Lock()
	closing := s.closing
	if !closing {
		s.sessions[sess] = struct{}{}
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.sessions, sess)
		s.mu.Unlock()
		if sess.ptmx != nil {
			sess.ptmx.Close()
		}
		if sess.tty != nil {
			sess.tty.Close()
		}
		ch.Close()
	}()
	if closing {
		return
	}

	var finished <-chan syscall.WaitStatus
	for {
		select {
		case req, ok := <-reqs:
			if !ok {
				// The client closed the channel or the connection dropped: hang up, as a terminal would.
				sess.hangup()
				return
			}
			if started := sess.handleRequest(req); started != nil {
				finished = started
			}
		case ws := <-finished:
			sess.sendExit(ws)
			go ssh.DiscardRequests(reqs)
			return
		}
	}
}

// handleRequest answers one channel request; it returns a channel that receives the process's exit once
// the request started one.
func (sess *session) handleRequest(req *ssh.Request) <-chan syscall.WaitStatus {
	reply := func(ok bool) {
		if req.WantReply {
			_ = req.Reply(ok, nil)
		}
	}
	started := sess.started()
	switch req.Type {
	case "env":
		var e envRequest
		ok := !started && ssh.Unmarshal(req.Payload, &e) == nil && envAllowed(e.Name)
		if ok {
			sess.env = append(sess.env, e.Name+"="+e.Value)
		} else {
			logf("refused env %q for %s", e.Name, sess.conn.RemoteAddr())
		}
		reply(ok)
	case "pty-req":
		var p ptyRequest
		if started || sess.ptmx != nil || ssh.Unmarshal(req.Payload, &p) != nil {
			reply(false)
			return nil
		}
		ptmx, tty, err := pty.Open()
		if err != nil {
			logf("pty: %v", err)
			reply(false)
			return nil
		}
		sess.ptmx, sess.tty, sess.term = ptmx, tty, p.Term
		_ = pty.Setsize(ptmx, &pty.Winsize{Rows: uint16(p.Rows), Cols: uint16(p.Cols), X: uint16(p.Width), Y: uint16(p.Height)})
		reply(true)
	case "window-change":
		var w windowChange
		if sess.ptmx != nil && ssh.Unmarshal(req.Payload, &w) == nil {
			_ = pty.Setsize(sess.ptmx, &pty.Winsize{Rows: uint16(w.Rows), Cols: uint16(w.Cols), X: uint16(w.Width), Y: uint16(w.Height)})
		}
		reply(sess.ptmx != nil)
	case "shell", "exec", "subsystem":
		if started {
			reply(false)
			return nil
		}
		argv, ok := sess.argv(req)
		if !ok {
			reply(false)
			return nil
		}
		done, err := sess.start(argv)
		if err != nil {
			logf("cannot start %q for %s: %v", argv[0], sess.conn.RemoteAddr(), err)
			reply(false)
			return nil
		}
		reply(true)
		return done
	case "signal":
		var sig stringRequest
		if ssh.Unmarshal(req.Payload, &sig) == nil {
			if s, ok := sshSignals[sig.Value]; ok {
				sess.kill(s)
			}
		}
		reply(false) // RFC 4254: no reply is wanted; a client that asks gets a failure
	default:
		// auth-agent-req@openssh.com (agent forwarding), x11-req and anything else: not offered.
		reply(false)
	}
	return nil
}

// argv is the command line a shell, exec or subsystem request asks for.
func (sess *session) argv(req *ssh.Request) ([]string, bool) {
	shell := userShell()
	switch req.Type {
	case "shell":
		return []string{shell, loginArgv0(shell)}, true
	case "exec":
		var c stringRequest
		if ssh.Unmarshal(req.Payload, &c) != nil {
			return nil, false
		}
		return []string{shell, shell, "-c", c.Value}, true
	default: // subsystem
		var name stringRequest
		if ssh.Unmarshal(req.Payload, &name) != nil || name.Value != "sftp" {
			return nil, false
		}
		server := sftpServer()
		if server == "" {
			logf("refused sftp for %s: the image has no sftp-server", sess.conn.RemoteAddr())
			return nil, false
		}
		return []string{server, server}, true
	}
}

func (sess *session) started() bool {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	return sess.pid != 0
}

// start runs argv ([path, argv0, args...]) as the leader of a new session, with the channel as its stdio
// (through a pty when one was requested), and returns a channel that receives its exit once its output has
// been sent.
func (sess *session) start(argv []string) (<-chan syscall.WaitStatus, error) {
	home := homeDir()
	cmd := &exec.Cmd{
		Path: argv[0], Args: argv[1:], Dir: home,
		Env: sessionEnv(sess.conn.User(), home, sess.conn.LocalAddr(), sess.conn.RemoteAddr(), sess.env, sess.term),
		// Its own session: `signal` requests and a hang-up reach everything it started.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if sess.ptmx != nil {
		return sess.startPty(cmd)
	}
	return sess.startPipes(cmd)
}

func (sess *session) startPty(cmd *exec.Cmd) (<-chan syscall.WaitStatus, error) {
	cmd.Stdin, cmd.Stdout, cmd.Stderr = sess.tty, sess.tty, sess.tty
	// The slave was opened without becoming anyone's controlling terminal; the child, leader of its new
	// session, takes it as its own (Ctty 0 is its stdin), so ^C and job control work.
	cmd.SysProcAttr.Setctty = true
	pid, exited, err := sess.srv.reaper.start(cmd)
	// Only the child holds the slave now, so the master reads EIO once the child and its jobs closed it.
	sess.tty.Close()
	sess.tty = nil
	if err != nil {
		return nil, err
	}
	sess.setPid(pid)
	outputDone := make(chan struct{})
	go func() { _, _ = io.Copy(sess.ptmx, sess.ch) }()
	go func() {
		_, _ = io.Copy(sess.ch, sess.ptmx) // ends with EIO once the last holder of the terminal closed it
		close(outputDone)
	}()
	done := make(chan syscall.WaitStatus, 1)
	go func() {
		ws := <-exited
		select {
		case <-outputDone:
		case <-time.After(ptyDrain):
		}
		done <- ws
	}()
	return done, nil
}

func (sess *session) startPipes(cmd *exec.Cmd) (<-chan syscall.WaitStatus, error) {
	var files []*os.File // the child's ends, closed here once it has them
	pipe := func() (*os.File, *os.File, error) {
		r, w, err := os.Pipe()
		if err == nil {
			files = append(files, r, w)
		}
		return r, w, err
	}
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	inR, inW, err1 := pipe()
	outR, outW, err2 := pipe()
	errR, errW, err3 := pipe()
	for _, err := range []error{err1, err2, err3} {
		if err != nil {
			closeAll()
			return nil, err
		}
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	pid, exited, err := sess.srv.reaper.start(cmd)
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, err
	}
	sess.setPid(pid)
	go func() {
		_, _ = io.Copy(inW, sess.ch)
		inW.Close() // the client's EOF is the command's
	}()
	var output sync.WaitGroup
	output.Add(2)
	go func() { defer output.Done(); _, _ = io.Copy(sess.ch, outR); outR.Close() }()
	go func() { defer output.Done(); _, _ = io.Copy(sess.ch.Stderr(), errR); errR.Close() }()
	done := make(chan syscall.WaitStatus, 1)
	go func() {
		ws := <-exited
		// All output first, then the exit status; like OpenSSH this waits for every holder of the pipes.
		output.Wait()
		done <- ws
	}()
	return done, nil
}

func (sess *session) setPid(pid int) {
	sess.mu.Lock()
	sess.pid = pid
	sess.mu.Unlock()
}

func (sess *session) kill(sig syscall.Signal) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.pid != 0 {
		_ = syscall.Kill(-sess.pid, sig)
	}
}

func (sess *session) hangup() { sess.kill(syscall.SIGHUP) }

// sendExit reports the process's end as OpenSSH does: EOF, exit-status or exit-signal, then close.
func (sess *session) sendExit(ws syscall.WaitStatus) {
	_ = sess.ch.CloseWrite()
	if ws.Signaled() {
		_, _ = sess.ch.SendRequest("exit-signal", false, ssh.Marshal(exitSignal{
			Signal: signalName(ws.Signal()), CoreDumped: ws.CoreDump(),
		}))
	} else {
		_, _ = sess.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(ws.ExitStatus())}))
	}
	sess.mu.Lock()
	sess.pid = 0 // reaped: its pid may be reused, so no more signals to it
	sess.mu.Unlock()
}
