package main

import (
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
)

// reaper is the one place that waits for children. As PID 1 of the container this process inherits every
// orphan, and each must be reaped or it stays a zombie; waiting for "any child" would steal the exit status
// of the processes we started ourselves, so every child is started through start() and its status is handed
// to the goroutine that waits for it. Nothing here calls exec.Cmd.Wait.
type reaper struct {
	mu      sync.Mutex
	waiting map[int]chan syscall.WaitStatus
}

func newReaper() *reaper {
	r := &reaper{waiting: map[int]chan syscall.WaitStatus{}}
	// Outside a container (tests, a dev box) orphans of our sessions would go to the real init; as a
	// subreaper they come to us, as they do when we are PID 1.
	_ = setChildSubreaper()
	sigchld := make(chan os.Signal, 1)
	signal.Notify(sigchld, syscall.SIGCHLD)
	go func() {
		for range sigchld {
			r.reapAll()
		}
	}()
	return r
}

// start starts cmd and returns a channel that receives its wait status. cmd's stdio must be *os.File (or nil)
// so that os/exec starts no copying goroutines that only Wait would finish.
func (r *reaper) start(cmd *exec.Cmd) (int, <-chan syscall.WaitStatus, error) {
	// Held across Start: if the child exits at once, reapAll collects it but blocks on the lock until the
	// pid is registered, so its status is never lost.
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release() // closes the pidfd; the status comes from reapAll
	ch := make(chan syscall.WaitStatus, 1)
	r.waiting[pid] = ch
	return pid, ch, nil
}

func (r *reaper) reapAll() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		r.mu.Lock()
		if ch, ok := r.waiting[pid]; ok {
			delete(r.waiting, pid)
			ch <- ws
		} // else an orphan: reaping it was the point
		r.mu.Unlock()
	}
}

// exitCode is the shell convention the kubelet reports: the status, or 128+N for a signal.
func exitCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// supervise runs the user's command (stdout and stderr are the container's, so `kubectl logs` shows them),
// forwards SIGTERM/SIGINT and friends to its process group, and returns its exit code once it exits.
// shutdown is called on the first SIGTERM/SIGINT so the SSH server stops while the command winds down.
func supervise(r *reaper, argv []string, shutdown func()) int {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// Its own process group, so a signal reaches the whole job (a shell and what it started), not just its
	// first process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT,
		syscall.SIGUSR1, syscall.SIGUSR2)
	pid, done, err := r.start(cmd)
	if err != nil {
		logf("cannot start command %q: %v", argv[0], err)
		shutdown()
		return 127
	}
	logf("started command %q (pid %d)", argv[0], pid)
	for {
		select {
		case sig := <-signals:
			s := sig.(syscall.Signal)
			_ = syscall.Kill(-pid, s)
			if s == syscall.SIGTERM || s == syscall.SIGINT || s == syscall.SIGQUIT {
				shutdown()
			}
		case ws := <-done:
			if ws.Signaled() {
				logf("command killed by signal %d (SIG%s)", int(ws.Signal()), signalName(ws.Signal()))
			} else {
				logf("command exited with status %d", ws.ExitStatus())
			}
			shutdown()
			return exitCode(ws)
		}
	}
}

// waitForTermination blocks until SIGTERM or SIGINT: the dev-box mode without a command.
func waitForTermination() os.Signal {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
	return <-signals
}
