package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// loadOrCreateHostKey reads DIR/ssh_host_ed25519_key, or generates one. A generated key is written to DIR
// (0600) when DIR is writable, so a restarted container (same pod, same emptyDir) keeps its identity; when it
// is not, the key lives only in memory and clients see a new host key after a restart.
func loadOrCreateHostKey(dir string) (ssh.Signer, error) {
	path := filepath.Join(dir, "ssh_host_ed25519_key")
	data, err := os.ReadFile(path)
	if err == nil {
		return ssh.ParsePrivateKey(data)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "gpucloud-sshd host key")
	if err != nil {
		return nil, err
	}
	if err := writeKey(dir, path, pem.EncodeToMemory(block)); err != nil {
		logf("host key generated, not saved (%v): it changes on restart", err)
	} else {
		logf("host key generated and saved to %s", path)
	}
	return signer, nil
}

func writeKey(dir, path string, data []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".ssh_host_ed25519_key-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	// CreateTemp already makes the file 0600; the chmod says so explicitly against an odd umask.
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
