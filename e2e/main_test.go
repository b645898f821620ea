//go:build e2e

// Package e2e holds chsnap's end-to-end tests: they build the chsnap binary,
// boot real guests on real KVM (and under QEMU as a reference), and drive
// them over their serial consoles.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

var (
	// chsnapBin is the chsnap binary built for this test run.
	chsnapBin string
	// repoRoot is the top of the source tree.
	repoRoot string
	// kvmErr says why /dev/kvm cannot be used; nil when it can.
	kvmErr error
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Dir(filepath.Dir(file))
	dir, err := os.MkdirTemp("", "chsnap-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// World-readable, so a test can run chsnap as an unprivileged user.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	chsnapBin = filepath.Join(dir, "chsnap")
	if prebuilt := os.Getenv("CHSNAP_E2E_BIN"); prebuilt != "" {
		// A prebuilt binary, for runs without a Go toolchain (nested KVM).
		data, err := os.ReadFile(prebuilt)
		if err == nil {
			err = os.WriteFile(chsnapBin, data, 0o755)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "CHSNAP_E2E_BIN: %v\n", err)
			return 1
		}
	} else {
		build := exec.Command("go", "build", "-o", chsnapBin, "./cmd/chsnap")
		build.Dir = repoRoot
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build chsnap: %v\n%s", err, out)
			return 1
		}
	}
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err != nil {
		kvmErr = err
		fmt.Fprintf(os.Stderr, "\n*** KVM UNAVAILABLE (%v): every test that boots a guest on KVM is SKIPPED ***\n\n", err)
	} else {
		f.Close()
	}
	return m.Run()
}

// needKVM skips t, loudly, when /dev/kvm cannot be opened.
func needKVM(t *testing.T) {
	t.Helper()
	if kvmErr != nil {
		t.Skipf("SKIPPED: needs KVM, which is unavailable here: %v", kvmErr)
	}
}

// guestImage returns the built test guest, or fails the test.
func guestImage(t *testing.T) string {
	t.Helper()
	p := os.Getenv("CHSNAP_GUEST")
	if p == "" {
		p = filepath.Join(repoRoot, "testdata", "guest", "build", "guest.bzImage")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("test guest not built (%v): run `make build` first", err)
	}
	return p
}
