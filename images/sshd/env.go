package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// userShell is $SHELL if it is an absolute path that can be executed, else /bin/bash if the image has it, else /bin/sh. Images differ:
// a CUDA image has bash, a minimal one only sh.
func userShell() string {
	for _, sh := range []string{os.Getenv("SHELL"), "/bin/bash"} {
		if filepath.IsAbs(sh) && executable(sh) {
			return sh
		}
	}
	return "/bin/sh"
}

func executable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && syscall.Access(path, 1 /* X_OK */) == nil
}

// homeDir is $HOME when it is set and writable, else /tmp: an image without an entry for the run-as uid in
// /etc/passwd gets HOME=/ from the runtime, where nothing can be written.
func homeDir() string {
	if h := os.Getenv("HOME"); h != "" && syscall.Access(h, 2 /* W_OK */) == nil {
		return h
	}
	return "/tmp"
}

// envAllowed says whether a client's `env` request may set name. LD_* would let a client inject code into
// everything the session starts, and GPUCLOUD_* are the platform's own settings for the container.
func envAllowed(name string) bool {
	if name == "" || strings.ContainsAny(name, "=\x00") {
		return false
	}
	return !strings.HasPrefix(name, "LD_") && !strings.HasPrefix(name, "GPUCLOUD_")
}

// sessionEnv is the container's environment (so GPUCLOUD_*, PATH and the CUDA variables reach a login), then
// the variables the client set, then the login's own, which win over both.
func sessionEnv(user, home string, local, remote net.Addr, clientEnv []string, term string) []string {
	env := append(os.Environ(), clientEnv...)
	rhost, rport := splitAddr(remote)
	lhost, lport := splitAddr(local)
	env = append(env,
		"HOME="+home, "USER="+user, "LOGNAME="+user,
		"SSH_CONNECTION="+rhost+" "+rport+" "+lhost+" "+lport,
		"SSH_CLIENT="+rhost+" "+rport+" "+lport,
	)
	if term != "" {
		env = append(env, "TERM="+term)
	}
	return env // exec.Cmd keeps the last value of a duplicated name
}

func splitAddr(a net.Addr) (string, string) {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String(), "0"
	}
	return host, port
}

// loginArgv0 is how sshd starts an interactive shell: "-bash" tells the shell to read the profile, where
// images put PATH additions (conda, CUDA).
func loginArgv0(shell string) string {
	return "-" + filepath.Base(shell)
}

var sftpServers = []string{"/usr/lib/openssh/sftp-server", "/usr/lib/sftp-server", "/usr/libexec/sftp-server"}

// sftpServer is the image's own sftp-server, or "" when it has none (then the subsystem is refused).
func sftpServer() string {
	for _, p := range sftpServers {
		if executable(p) {
			return p
		}
	}
	return ""
}
