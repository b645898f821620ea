package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain lets a test run the CLI as a child process of the test binary:
// with CHSNAP_TEST_MAIN set, the binary is chsnap itself.
func TestMain(m *testing.M) {
	if os.Getenv("CHSNAP_TEST_MAIN") == "1" {
		os.Exit(run(os.Args, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestRestoreRefusalNeverOpensKVM runs `chsnap restore` under
// `strace -f -e trace=openat` on archives it must refuse (truncated, and
// one whose memory is larger than its config says) and checks, as issue
// 14's Check does, that the refusal is one line, the exit status non-zero,
// and /dev/kvm never opened. No KVM is needed: refusing comes first.
func TestRestoreRefusalNeverOpensKVM(t *testing.T) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace is not installed")
	}
	golden, err := os.ReadFile(filepath.Join("..", "..", "testdata", "golden", "guest-v1.0.chs"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"truncated":     golden[:len(golden)/3],
		"truncated-end": golden[:len(golden)-8],
	} {
		t.Run(name, func(t *testing.T) {
			archive := filepath.Join(dir, name+".chs")
			if err := os.WriteFile(archive, data, 0o600); err != nil {
				t.Fatal(err)
			}
			trace := filepath.Join(dir, name+".strace")
			cmd := exec.Command(strace, "-f", "-e", "trace=openat", "-o", trace, os.Args[0], "restore", archive)
			cmd.Env = append(os.Environ(), "CHSNAP_TEST_MAIN=1")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			tr, rerr := os.ReadFile(trace)
			if rerr != nil {
				t.Skipf("strace wrote no trace (ptrace not permitted here?): %v; %s", rerr, stderr.String())
			}
			if err == nil {
				t.Fatalf("restore of a %s archive succeeded", name)
			}
			if lines := strings.Split(strings.TrimSpace(stderr.String()), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "chsnap: restore ") {
				t.Errorf("want one error line, got %q", stderr.String())
			}
			if !strings.Contains(string(tr), "openat(") {
				t.Fatalf("the trace shows no openat at all: %s", tr)
			}
			if strings.Contains(string(tr), "/dev/kvm") {
				t.Errorf("restore opened /dev/kvm before refusing:\n%s", grepLines(string(tr), "/dev/kvm"))
			}
		})
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
