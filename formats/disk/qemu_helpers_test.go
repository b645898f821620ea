package disk

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// needQemu skips the test, loudly, when qemu-img or qemu-io is missing:
// they are the oracle every qcow2 test compares against.
func needQemu(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"qemu-img", "qemu-io"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP: %s not found (install Debian qemu-utils); qcow2 cannot be checked against QEMU", tool)
		}
	}
}

// run runs a command and fails the test with its output on error.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// qemuIO runs qemu-io commands on a qcow2 image.
func qemuIO(t testing.TB, img string, cmds ...string) {
	t.Helper()
	args := []string{"-f", "qcow2"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	run(t, "qemu-io", append(args, img)...)
}

// qemuRaw returns the image's contents as qemu-img convert -O raw sees them.
func qemuRaw(t testing.TB, img string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "oracle.raw")
	run(t, "qemu-img", "convert", "-O", "raw", img, out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkResult is the part of `qemu-img check --output=json` we assert on.
type checkResult struct {
	CheckErrors int `json:"check-errors"`
	Corruptions int `json:"corruptions"`
	Leaks       int `json:"leaks"`
	Fragmented  int `json:"fragmented-clusters"`
	Allocated   int `json:"allocated-clusters"`
}

// qemuCheck runs qemu-img check and fails on errors, corruptions or leaks
// (exit status 2 or 3, or non-zero counts).
func qemuCheck(t testing.TB, img string) checkResult {
	t.Helper()
	out, err := exec.Command("qemu-img", "check", "--output=json", img).Output()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("qemu-img check %s: %v", img, err)
	}
	var r checkResult
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		t.Fatalf("qemu-img check %s: exit %v, output %q: %v", img, err, out, jerr)
	}
	if err != nil || r.CheckErrors != 0 || r.Corruptions != 0 || r.Leaks != 0 {
		human, _ := exec.Command("qemu-img", "check", img).CombinedOutput()
		t.Fatalf("qemu-img check %s: exit %v, %+v\n%s", img, err, r, human)
	}
	t.Logf("qemu-img check: exit 0, %+v", r)
	return r
}

// qemuCompare runs qemu-img compare between the image and a raw file.
func qemuCompare(t testing.TB, img string, want []byte) {
	t.Helper()
	rawPath := filepath.Join(t.TempDir(), "want.raw")
	if err := os.WriteFile(rawPath, want, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("qemu-img", "compare", "-f", "qcow2", "-F", "raw", img, rawPath).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img compare %s: %v\n%s", img, err, out)
	}
}

// pattern returns n bytes where some 64 KiB stretches are random, some a
// repeated byte and some zero, so images get allocated, compressible and
// empty clusters.
func pattern(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for off := 0; off < n; off += 64 << 10 {
		end := min(n, off+64<<10)
		switch r.IntN(4) {
		case 0: // zeros
		case 1:
			for i := off; i < end; i++ {
				b[i] = byte(r.Uint32())
			}
		case 2:
			for i := off; i < end; i++ {
				b[i] = byte(off >> 16)
			}
		case 3: // half random, half zero
			for i := off; i < off+(end-off)/2; i++ {
				b[i] = byte(r.Uint32())
			}
		}
	}
	return b
}

// readAll reads the whole disk in chunks of the given size.
func readAll(t testing.TB, d Disk, chunk int) []byte {
	t.Helper()
	out := make([]byte, d.Size())
	for off := 0; off < len(out); off += chunk {
		end := min(len(out), off+chunk)
		n, err := d.ReadAt(out[off:end], int64(off))
		if err != nil || n != end-off {
			t.Fatalf("ReadAt(%d bytes at %d) = %d, %v", end-off, off, n, err)
		}
	}
	return out
}

// firstDiff describes where two byte slices first differ ("" if equal).
func firstDiff(got, want []byte) string {
	if len(got) != len(want) {
		return fmt.Sprintf("length %d, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			return fmt.Sprintf("first difference at byte %d: %#x, want %#x", i, got[i], want[i])
		}
	}
	return ""
}
