//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chsnap/chsnap/vm/boot"
)

// debianKernelDir is where testdata/kernel/fetch.sh leaves the Debian cloud
// kernel (vmlinuz, the extracted vmlinux and manifest.txt).
func debianKernelDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CHSNAP_KERNEL_DIR")
	if dir == "" {
		cache := os.Getenv("CHSNAP_CACHE")
		if cache == "" {
			home, _ := os.UserHomeDir()
			cache = filepath.Join(home, ".cache", "chsnap")
		}
		dir = filepath.Join(cache, "kernel", "current")
	}
	if _, err := os.Stat(filepath.Join(dir, "manifest.txt")); err != nil {
		t.Fatalf("Debian kernel fixture missing (%v): run `make kernel` (testdata/kernel/fetch.sh)", err)
	}
	return dir
}

// TestLinuxOracle boots the stock Debian cloud kernel under chsnap and checks,
// within two minutes, what it says about the machine chsnap built: its banner,
// the exact e820 map and command line chsnap gave it, and the ACPI tables it
// found. Both entry paths: the ELF vmlinux through its PVH note, and the
// bzImage through the 64-bit boot protocol (whose payload the kernel itself
// decompresses).
func TestLinuxOracle(t *testing.T) {
	needKVM(t)
	dir := debianKernelDir(t)
	const mem = 256 << 20
	cmdline := "earlyprintk=serial,ttyS0 console=ttyS0 reboot=k panic=-1 chsnap.oracle=1"
	for _, tc := range []struct {
		image string
		kind  boot.Kind
	}{{"vmlinux", boot.KindPVH}, {"vmlinuz", boot.KindBzImage}} {
		image := tc.image
		t.Run(image, func(t *testing.T) {
			// The lines the kernel prints for the map chsnap gives it.
			want := boot.LinuxE820(boot.E820Map(mem), tc.kind)
			var e820 []string
			for _, l := range boot.E820Lines(want) {
				e820 = append(e820, regexp.QuoteMeta(l))
			}
			kernel := filepath.Join(dir, image)
			cmd := exec.Command(chsnapBin, "run", "--kernel", kernel, "--memory", "256M", "--cpus", "2", "--cmdline", cmdline)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				cmd.Process.Kill()
				cmd.Wait()
			}()
			con := newConsole(stdout, stdin)
			deadline := time.Now().Add(2 * time.Minute)
			expect := func(re string) {
				t.Helper()
				left := time.Until(deadline)
				if _, err := con.Expect(re, left); err != nil {
					t.Fatalf("%v\nconsole:\n%s\nstderr:\n%s", err, con.Transcript(), stderr.String())
				}
			}
			// The order is the kernel's: banner, command line, e820 map, ACPI.
			expect(`Linux version \S+`)
			expect(`Command line: ` + regexp.QuoteMeta(cmdline) + `$`)
			for _, l := range e820 {
				expect(l + `$`)
			}
			for _, sig := range []string{"RSDP", "XSDT", "FACP", "DSDT", "APIC"} {
				expect(fmt.Sprintf(`ACPI: %s 0x[0-9A-F]+ [0-9A-F]+ \(v\d\d CHSNAP`, sig))
			}
			t.Logf("%s: banner, command line, %d e820 entries and 5 ACPI tables seen", image, len(e820))
		})
	}
}

// TestLinuxSnapshotRestore snapshots the stock Debian kernel during its early
// boot, kills it, restores the archive in a new process, and checks that the
// kernel carries on printing from where it stopped: new lines whose printk
// timestamps continue from the last one seen before the save.
func TestLinuxSnapshotRestore(t *testing.T) {
	needKVM(t)
	kdir := debianKernelDir(t)
	dir := shortDir(t)
	sock := filepath.Join(dir, "linux.sock")
	cmdline := "earlyprintk=serial,ttyS0 console=ttyS0 reboot=k panic=-1"
	p := startChsnap(t, "run", "--kernel", filepath.Join(kdir, "vmlinux"), "--memory", "256M", "--cpus", "2",
		"--cmdline", cmdline, "--api-socket", sock)
	if _, err := p.con.Expect(`ACPI: APIC 0x`, 2*time.Minute); err != nil {
		t.Fatalf("%v\nconsole:\n%s\nstderr:\n%s", err, p.con.Transcript(), p.stderr)
	}
	snap := filepath.Join(dir, "linux.snap")
	chsnapOK(t, "save", "--leave-paused", "--api-socket", sock, snap)
	before := p.con.Transcript()
	p.cmd.Process.Kill()
	p.wait(t, 10*time.Second)
	last := lastStamp(before)
	if last < 0 {
		t.Fatalf("no printk timestamp before the save:\n%s", before)
	}

	r := startChsnap(t, "restore", snap, "--api-socket", filepath.Join(dir, "linux2.sock"))
	stamp := regexp.MustCompile(`^\[\s*(\d+\.\d+)\]`)
	var first, prev float64 = -1, -1
	for i := 0; i < 5; i++ {
		m, err := r.con.Expect(`^\[\s*(\d+\.\d+)\] `, time.Minute)
		if err != nil {
			t.Fatalf("restored kernel printed %d lines, want 5: %v\nconsole:\n%s\nstderr:\n%s", i, err, r.con.Transcript(), r.stderr)
		}
		var ts float64
		fmt.Sscanf(stamp.FindStringSubmatch(m[0])[1], "%f", &ts)
		if first < 0 {
			first = ts
		}
		if ts < prev {
			t.Errorf("timestamps go back after the restore: %.6f after %.6f", ts, prev)
		}
		prev = ts
	}
	if first < last {
		t.Errorf("the restored kernel's first line is stamped %.6f, before the last line before the save (%.6f): it did not carry on", first, last)
	}
	t.Logf("last line before the save at %.6f s; after the restore the kernel went on at %.6f s", last, first)
}

// lastStamp returns the printk timestamp of the last stamped line in a
// console transcript, or -1.
func lastStamp(transcript string) float64 {
	re := regexp.MustCompile(`\[\s*(\d+\.\d+)\]`)
	last := -1.0
	for _, line := range strings.Split(transcript, "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			fmt.Sscanf(m[1], "%f", &last)
		}
	}
	return last
}
