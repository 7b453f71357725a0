// gpucloud-sshd is the SSH server the platform brings into every instance, so that any image works: an init
// container runs `gpucloud-sshd install DIR` to copy this static binary into a shared emptyDir, and the
// instance's container runs `DIR/gpucloud-sshd run -- CMD...` as PID 1 (docs/ssh-server.md).
package main

import (
	"fmt"
	"log"
	"os"
)

const usage = `usage:
  gpucloud-sshd install DIR
  gpucloud-sshd run [--listen :PORT] [--authorized-keys FILE] [--host-key-dir DIR] [-- CMD ARGS...]
  gpucloud-sshd probe [--port PORT]
`

func main() {
	// One prefix on every line, no timestamps: the kubelet's log already stamps each line.
	log.SetFlags(0)
	log.SetPrefix("gpucloud-sshd: ")
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "install":
		os.Exit(installMain(args))
	case "run":
		os.Exit(runMain(args))
	case "probe":
		os.Exit(probeMain(args))
	case "-h", "--help", "help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "gpucloud-sshd: unknown subcommand %q\n%s", os.Args[1], usage)
		os.Exit(2)
	}
}

// envOr is the environment variable's value, or def when it is unset or empty.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
