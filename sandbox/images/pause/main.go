// pause is PID 1 of a pod sandbox on the sandbox's real nodes: it holds the pod's namespaces, reaps the
// zombies re-parented to it and exits 0 on SIGTERM or SIGINT. It stands in for registry.k8s.io/pause.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		// Signals coalesce, so one SIGCHLD may stand for several exited children: reap until none is left.
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
