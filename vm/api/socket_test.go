package api

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestListenMode(t *testing.T) {
	old := syscall.Umask(0) // the widest umask must not widen the socket
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "sub", "vm.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want a socket with 0600", fi.Mode())
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("created directory mode = %v (%v), want 0700", di.Mode(), err)
	}
	if got := l.Addr().String(); got != path {
		t.Errorf("Addr = %q, want %q", got, path)
	}
	// Nothing but the socket is left in the directory.
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries, want only the socket", len(ents))
	}
	// It answers.
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.Close()
	l.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket still there after Close: %v", err)
	}
}

func TestListenStaleSocketReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vm.sock")
	// A stale socket: bound, then its listener gone without unlinking.
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false)
	ul.Close()
	l, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial the new socket: %v", err)
	}
	c.Close()
}

func TestListenLiveSocketRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vm.sock")
	first, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := Listen(path)
	if err == nil {
		second.Close()
		t.Fatal("second Listen on a live socket succeeded")
	}
	if !strings.Contains(err.Error(), "another VMM is listening there") {
		t.Errorf("error = %v", err)
	}
	// The first socket is untouched and still answers.
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("first socket no longer answers: %v", err)
	}
	c.Close()
}

func TestListenNotASocketRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vm.sock")
	if err := os.WriteFile(path, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	if l, err := Listen(path); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		if l != nil {
			l.Close()
		}
		t.Fatalf("Listen over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "keep me" {
		t.Errorf("the regular file was changed: %q", b)
	}
}

// TestCloseKeepsReplacement: closing an old listener does not remove a
// socket that a later VMM put at the same path.
func TestCloseKeepsReplacement(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vm.sock")
	old, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	old.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("closing the old listener removed the new socket: %v", err)
	}
}

func TestListenPathTooLong(t *testing.T) {
	path := "/tmp/" + strings.Repeat("x", 90) + ".sock"
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "longer than 84 bytes") {
		t.Errorf("Listen(long path) = %v", err)
	}
}

func TestDefaultSocketPath(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1000")
	if got := DefaultSocketPath(""); got != "/run/user/1000/chsnap/default.sock" {
		t.Errorf("DefaultSocketPath(\"\") = %q", got)
	}
	if got := DefaultSocketPath("web-1"); got != "/run/user/1000/chsnap/web-1.sock" {
		t.Errorf("DefaultSocketPath(web-1) = %q", got)
	}
	t.Setenv("XDG_RUNTIME_DIR", "")
	if got := DefaultSocketPath("db"); got != "/run/chsnap/db.sock" {
		t.Errorf("DefaultSocketPath(db) without XDG_RUNTIME_DIR = %q", got)
	}
	if got := DefaultSocketPath(strings.Repeat("n", maxNameLen)); len(got) > maxSocketPath {
		t.Errorf("a maximal name gives a %d-byte path, over %d", len(got), maxSocketPath)
	}
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"default", "web-1", "a_b.c", "X", strings.Repeat("n", maxNameLen)} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("ValidateName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", "../x", "a b", "é", "a\x00", strings.Repeat("n", maxNameLen+1)} {
		if err := ValidateName(bad); err == nil {
			t.Errorf("ValidateName(%q) accepted it", bad)
		}
	}
}
