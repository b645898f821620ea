//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chsnap/chsnap/vm/acpi"
)

var (
	guestOnce     sync.Once
	guestBuildDir string
	guestErr      error
)

// testGuest builds testdata/guest with make (once per test binary) and
// returns the path of build/name in it: "guest.bzImage", or
// "chsnap-entry-shim.elf" (the guest behind a loader that recreates
// chsnap's 64-bit entry state, bootable by QEMU through PVH).
func testGuest(t *testing.T, name string) string {
	t.Helper()
	guestOnce.Do(func() {
		dir, err := filepath.Abs(filepath.Join("..", "testdata", "guest"))
		if err != nil {
			guestErr = fmt.Errorf("locate testdata/guest: %w", err)
			return
		}
		out, err := exec.Command("make", "-C", dir).CombinedOutput()
		if err != nil {
			guestErr = fmt.Errorf("make -C %s: %w\n%s", dir, err, out)
			return
		}
		guestBuildDir = filepath.Join(dir, "build")
	})
	if guestErr != nil {
		t.Fatal(guestErr)
	}
	p := filepath.Join(guestBuildDir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("test guest: %v", err)
	}
	return p
}

// qemuGuest is the test guest running under qemu-system-x86_64 -M microvm.
type qemuGuest struct {
	con    *console
	stderr *bytes.Buffer
	done   chan struct{} // closed when QEMU has exited
	err    error         // cmd.Wait's result, set before done closes
}

// startQEMU boots kernel (a file from testGuest) under QEMU microvm with
// TCG, serial on stdio. The VM is killed when limit expires or the test ends.
// Extra arguments go at the end of QEMU's command line.
func startQEMU(t *testing.T, kernel string, cpus int, cmdline string, limit time.Duration, extra ...string) *qemuGuest {
	t.Helper()
	return startQEMUFiles(t, kernel, cpus, cmdline, limit, nil, extra...)
}

// startQEMUFiles is startQEMU with files passed to QEMU as fds 3, 4, ...
func startQEMUFiles(t *testing.T, kernel string, cpus int, cmdline string, limit time.Duration, files []*os.File, extra ...string) *qemuGuest {
	t.Helper()
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("SKIPPED: qemu-system-x86_64 not found in PATH; install qemu-system-x86 to run the QEMU guest tests")
	}
	img := testGuest(t, kernel)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	t.Cleanup(cancel)
	args := []string{
		"-M", "microvm", "-accel", "tcg", "-cpu", "max",
		"-smp", strconv.Itoa(cpus), "-m", "512M",
		"-nographic", "-no-reboot",
		"-kernel", img, "-append", cmdline,
	}
	cmd := exec.CommandContext(ctx, qemu, append(args, extra...)...)
	cmd.ExtraFiles = files
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("qemu stdin: %v", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("qemu stdout: %v", err)
	}
	g := &qemuGuest{stderr: &bytes.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = g.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", qemu, err)
	}
	g.con = newConsole(stdout, stdin)
	go func() {
		g.err = cmd.Wait()
		close(g.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-g.done
		if t.Failed() {
			t.Logf("console transcript:\n%s\nqemu stderr:\n%s", g.con.Transcript(), g.stderr.String())
		}
	})
	return g
}

// wait waits for QEMU to exit and returns its exit status.
func (g *qemuGuest) wait(timeout time.Duration) (int, error) {
	select {
	case <-g.done:
		var ee *exec.ExitError
		if errors.As(g.err, &ee) {
			return ee.ExitCode(), nil
		}
		if g.err != nil {
			return -1, fmt.Errorf("qemu: %w", g.err)
		}
		return 0, nil
	case <-time.After(timeout):
		return -1, fmt.Errorf("qemu still running after %v", timeout)
	}
}

func TestGuestQEMU(t *testing.T) {
	for _, cpus := range []int{1, 2, 8} {
		t.Run(fmt.Sprintf("cpus=%d", cpus), func(t *testing.T) {
			cmdline := fmt.Sprintf("quiet chsnap.test=qemu-%d", cpus)
			g := startQEMU(t, "guest.bzImage", cpus, cmdline, 60*time.Second)
			c := g.con

			m, err := c.Expect(`^cmdline: (.*)$`, 20*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if m[1] != cmdline {
				t.Errorf("cmdline line = %q, want %q", m[1], cmdline)
			}
			m, err = c.Expect(`^chsnap-guest ready cpus=(\d+)$`, 20*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := m[1], strconv.Itoa(cpus); got != want {
				t.Errorf("ready cpus = %s, want %s", got, want)
			}

			ticks := func() uint64 {
				t.Helper()
				r, err := c.Command("ticks", 10*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				var n uint64
				if _, err := fmt.Sscanf(r, "ticks %d", &n); err != nil {
					t.Fatalf("ticks reply %q: %v", r, err)
				}
				return n
			}
			t0 := ticks()

			for _, tc := range []struct{ cmd, want string }{
				{"cpus", fmt.Sprintf(`^cpus %d$`, cpus)},
				{"echo hello from the e2e test", `^echo hello from the e2e test$`},
				{"verify", `^verify none$`},
				{"fill 64 7", `^fill ok 64$`},
				{"verify", `^verify ok$`},
				{"fillmix 16 3", `^fillmix ok 16$`},
				{"verify", `^verify ok$`},
				{"fillmix 16", `^error fillmix: usage`},
				{"fill 1048576 1", `^error fill: MIB must be 1\.\.\d+ \(free RAM\)$`},
				{"fill 64", `^error fill: usage`},
				{"frobnicate", `^error unknown command "frobnicate"`},
			} {
				got, err := c.Command(tc.cmd, 30*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if !regexp.MustCompile(tc.want).MatchString(got) {
					t.Errorf("%q: reply %q, want a match for %s", tc.cmd, got, tc.want)
				}
			}

			if t1 := ticks(); t1 <= t0 {
				t.Errorf("ticks did not advance: %d then %d", t0, t1)
			}

			if err := c.Send("poweroff"); err != nil {
				t.Fatal(err)
			}
			code, err := g.wait(20 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if code != 0 {
				t.Errorf("qemu exit status after poweroff = %d, want 0", code)
			}
		})
	}
}

func TestGuestQEMUReboot(t *testing.T) {
	g := startQEMU(t, "guest.bzImage", 2, "reboot-test", 60*time.Second)
	if _, err := g.con.Expect(`^chsnap-guest ready cpus=2$`, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if r, err := g.con.Command("help", 10*time.Second); err != nil {
		t.Fatal(err)
	} else if !regexp.MustCompile(`^help: .*\breboot\b`).MatchString(r) {
		t.Errorf("help reply %q does not list reboot", r)
	}
	// -no-reboot turns the guest's reset into a clean QEMU exit.
	if err := g.con.Send("reboot"); err != nil {
		t.Fatal(err)
	}
	code, err := g.wait(20 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Errorf("qemu exit status after reboot = %d, want 0", code)
	}
}

// TestGuestQEMU64BitEntry boots the guest through its 64-bit entry at
// 0x100200 with chsnap's entry state (long mode, boot_params at 0x7000,
// page tables at 0x9000, RSP 0x8FF0), recreated by the entry shim, since
// chsnap itself needs KVM.
func TestGuestQEMU64BitEntry(t *testing.T) {
	const cmdline = "entry=64 quiet"
	g := startQEMU(t, "chsnap-entry-shim.elf", 4, cmdline, 60*time.Second)
	c := g.con
	m, err := c.Expect(`^cmdline: (.*)$`, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m[1] != cmdline {
		t.Errorf("cmdline line = %q, want %q", m[1], cmdline)
	}
	if _, err := c.Expect(`^chsnap-guest ready cpus=4$`, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ cmd, want string }{
		{"fill 32 12345", "fill ok 32"},
		{"verify", "verify ok"},
		{"cpus", "cpus 4"},
	} {
		got, err := c.Command(tc.cmd, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%q: reply %q, want %q", tc.cmd, got, tc.want)
		}
	}
	if err := c.Send("poweroff"); err != nil {
		t.Fatal(err)
	}
	code, err := g.wait(20 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Errorf("qemu exit status after poweroff = %d, want 0", code)
	}
}

// TestGuestQEMUChsnapACPI runs the guest on chsnap's own ACPI tables
// (vm/acpi), placed at 0xE0000 where the guest's RSDP scan finds them before
// QEMU's, to check that the guest reads chsnap's MADT and FADT. chsnap's
// SLEEP_CONTROL_REG and RESET_REG are I/O port 0x600; an isa-debug-exit
// device there turns the guest's byte write v into QEMU exit status 2v+1.
func TestGuestQEMUChsnapACPI(t *testing.T) {
	const cpus = 3
	tables, err := acpi.Build(acpi.Config{APICIDs: acpi.SequentialAPICIDs(cpus)})
	if err != nil {
		t.Fatal(err)
	}
	if tables.Base != 0xE0000 {
		t.Fatalf("chsnap ACPI base = %#x; this test loads the tables at 0xE0000", tables.Base)
	}
	rsdp := tables.Bytes("RSDP")
	if len(rsdp) < 15 {
		t.Fatalf("RSDP is %d bytes", len(rsdp))
	}
	wantOEM := strings.TrimRight(string(rsdp[9:15]), " ")
	blob := filepath.Join(t.TempDir(), "acpi.bin")
	if err := os.WriteFile(blob, tables.Blob, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		cmd   string
		value int // byte written to port 0x600
	}{
		{"poweroff", acpi.SleepS5Value},
		{"reboot", acpi.ResetValue},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			g := startQEMU(t, "guest.bzImage", cpus, "acpi=chsnap", 60*time.Second,
				"-device", "loader,file="+blob+",addr=0xE0000,force-raw=on",
				"-device", fmt.Sprintf("isa-debug-exit,iobase=%#x,iosize=1", acpi.ResetPort))
			c := g.con
			m, err := c.Expect(`^chsnap-guest: .* acpi (\S+) cpus (\d+) `, 20*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if m[1] != wantOEM {
				t.Errorf("guest used ACPI tables from OEM %q, want chsnap's %q", m[1], wantOEM)
			}
			if m[2] != strconv.Itoa(cpus) {
				t.Errorf("guest found %s CPUs in chsnap's MADT, want %d", m[2], cpus)
			}
			if _, err := c.Expect(fmt.Sprintf(`^chsnap-guest ready cpus=%d$`, cpus), 20*time.Second); err != nil {
				t.Fatal(err)
			}
			// The UART interrupt is routed by chsnap's MADT (IOAPIC, IRQ 4 override).
			if r, err := c.Command("echo routed by chsnap's MADT", 10*time.Second); err != nil {
				t.Fatal(err)
			} else if r != "echo routed by chsnap's MADT" {
				t.Errorf("echo reply %q", r)
			}
			if err := c.Send(tc.cmd); err != nil {
				t.Fatal(err)
			}
			code, err := g.wait(20 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if want := tc.value<<1 | 1; code != want {
				t.Errorf("qemu exit status after %s = %d, want %d (guest wrote %#x to port %#x)",
					tc.cmd, code, want, tc.value, acpi.ResetPort)
			}
		})
	}
}

// TestGuestQEMUPipelined sends many commands without waiting for replies,
// far more than the guest's 1 KiB receive ring, and checks every reply
// arrives once and in order: the guest must push back on the UART instead
// of dropping input.
func TestGuestQEMUPipelined(t *testing.T) {
	const n = 300
	g := startQEMU(t, "guest.bzImage", 1, "pipelined", 60*time.Second)
	c := g.con
	if _, err := c.Expect(`^chsnap-guest ready cpus=1$`, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	line := func(i int) string {
		return fmt.Sprintf("echo line-%04d-%s", i, strings.Repeat("abcdefghij", 6))
	}
	sent := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if err := c.Send(line(i)); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	for i := 0; i < n; i++ {
		m, err := c.Expect(`^echo .*$`, 20*time.Second)
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if m[0] != line(i) {
			t.Fatalf("reply %d = %q, want %q", i, m[0], line(i))
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if err := c.Send("poweroff"); err != nil {
		t.Fatal(err)
	}
	if code, err := g.wait(20 * time.Second); err != nil || code != 0 {
		t.Errorf("qemu exit after poweroff: status %d, %v; want 0", code, err)
	}
}
