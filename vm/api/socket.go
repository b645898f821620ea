package api

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// DefaultName is the VM name used when none is given.
const DefaultName = "default"

// maxSocketPath leaves room in sockaddr_un's 108 bytes for the temporary
// name Listen binds first (about 20 bytes longer than the path).
const maxSocketPath = 84

// maxNameLen keeps the default socket path within maxSocketPath.
const maxNameLen = 48

// ValidateName checks a VM name: 1 to 48 letters, digits, '-', '_' or '.',
// not "." or "..".
func ValidateName(name string) error {
	if name == "" {
		return errors.New("api: empty VM name")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("api: VM name %q is longer than %d bytes", name, maxNameLen)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("api: VM name %q is not allowed", name)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return fmt.Errorf("api: VM name %q: %q is not a letter, digit, '-', '_' or '.'", name, r)
		}
	}
	return nil
}

// DefaultSocketPath is where a VM called name listens when no socket path is
// given: $XDG_RUNTIME_DIR/chsnap/NAME.sock when XDG_RUNTIME_DIR is set (a
// per-user directory), else /run/chsnap/NAME.sock. An empty name means
// DefaultName. It does not validate name; call ValidateName first.
func DefaultSocketPath(name string) string {
	if name == "" {
		name = DefaultName
	}
	dir := "/run"
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
		dir = x
	}
	return filepath.Join(dir, "chsnap", name+".sock")
}

// Listen creates the API socket at path with mode 0600 and listens on it.
// It creates path's directory (mode 0700) if missing. If a socket already
// exists at path, Listen connects to it: when something answers it refuses
// to start (another VMM owns that path), when nothing does the stale socket
// is replaced. Any other kind of file at path is left alone and refused.
//
// The socket is bound inside a private temporary directory, chmod'ed, then
// hard-linked to path, so it is never reachable with a wider mode and an
// existing name is never silently overwritten. Closing the listener removes
// path if it still names this socket.
func Listen(path string) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("api: empty socket path")
	}
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("api socket %s: path is longer than %d bytes", path, maxSocketPath)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("api socket %s: %w", path, err)
	}
	tmpDir, err := os.MkdirTemp(dir, ".chsnap-")
	if err != nil {
		return nil, fmt.Errorf("api socket %s: %w", path, err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "s")
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("api socket %s: %w", path, err)
	}
	ul.SetUnlinkOnClose(false) // the temporary name goes with tmpDir; path is removed by socketListener
	fail := func(err error) (net.Listener, error) {
		ul.Close()
		return nil, err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(fmt.Errorf("api socket %s: %w", path, err))
	}
	// A second stale-socket round covers a VMM that died between our
	// check and our link; more rounds mean someone keeps re-creating it.
	for attempt := 0; ; attempt++ {
		err := os.Link(tmp, path)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) || attempt == 2 {
			return fail(fmt.Errorf("api socket %s: %w", path, err))
		}
		if err := removeStale(path); err != nil {
			return fail(err)
		}
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(fmt.Errorf("api socket %s: %w", path, err))
	}
	return &socketListener{UnixListener: ul, path: path, fi: fi}, nil
}

// removeStale removes the socket at path if nothing listens on it.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("api socket %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("api socket %s: exists and is not a socket", path)
	}
	conn, err := net.DialTimeout("unix", path, 2*time.Second)
	if err == nil {
		conn.Close()
		return fmt.Errorf("api socket %s: another VMM is listening there (use --name or --api-socket to run another VM)", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("api socket %s: cannot tell whether it is in use: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("api socket %s: remove stale socket: %w", path, err)
	}
	return nil
}

// socketListener removes its socket file on Close, once, and only if the
// path still names the socket it created.
type socketListener struct {
	*net.UnixListener
	path string
	fi   os.FileInfo
	once sync.Once
}

// Addr reports the public path rather than the temporary bind name.
func (l *socketListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

// Close stops listening and removes the socket file.
func (l *socketListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if fi, serr := os.Lstat(l.path); serr == nil && os.SameFile(fi, l.fi) {
			os.Remove(l.path)
		}
	})
	return err
}
