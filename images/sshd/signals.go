package main

import (
	"strconv"
	"syscall"
)

// The signal names of RFC 4254 section 6.10 (without "SIG"), for `signal` requests and `exit-signal` replies.
var sshSignals = map[string]syscall.Signal{
	"ABRT": syscall.SIGABRT, "ALRM": syscall.SIGALRM, "FPE": syscall.SIGFPE, "HUP": syscall.SIGHUP,
	"ILL": syscall.SIGILL, "INT": syscall.SIGINT, "KILL": syscall.SIGKILL, "PIPE": syscall.SIGPIPE,
	"QUIT": syscall.SIGQUIT, "SEGV": syscall.SIGSEGV, "TERM": syscall.SIGTERM, "USR1": syscall.SIGUSR1,
	"USR2": syscall.SIGUSR2,
}

// signalName is the RFC 4254 name of s; signals it does not name are reported as their number.
func signalName(s syscall.Signal) string {
	for name, sig := range sshSignals {
		if sig == s {
			return name
		}
	}
	return strconv.Itoa(int(s))
}
