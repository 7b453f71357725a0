package main

import (
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
)

// installMain copies this executable into DIR. The init container runs it, so the init image needs nothing but
// this binary: no shell and no cp.
func installMain(args []string) int {
	if len(args) != 1 {
		fmt.Fprint(os.Stderr, "usage: gpucloud-sshd install DIR\n")
		return 2
	}
	dest, err := install(args[0])
	if err != nil {
		log.Printf("install: %v", err)
		return 1
	}
	log.Printf("installed %s", dest)
	return 0
}

func install(dir string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	src, err := os.Open(self)
	if err != nil {
		return "", err
	}
	defer src.Close()
	// The emptyDir the init container writes to starts empty: DIR is made (and its parents) as needed.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	dest := filepath.Join(dir, "gpucloud-sshd")
	// Written under a temporary name and renamed, so a restarted init container never leaves the main
	// container a half-written binary.
	tmp, err := os.CreateTemp(dir, ".gpucloud-sshd-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	return dest, os.Rename(tmp.Name(), dest)
}
