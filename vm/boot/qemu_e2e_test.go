//go:build e2e

package boot

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chsnap/chsnap/vm/acpi"
)

// TestQEMUBootsDebianKernel is the Linux oracle for vm/boot and vm/acpi on
// machines without /dev/kvm: it lays out guest memory with Setup and the
// ACPI tables with acpi.Build, hands the bytes to QEMU (TCG) with generic
// loader devices, and enters the kernel from a tiny firmware
// (testdata/qemu_fw.S) that loads the CPU state Entry describes. It then
// checks that Linux prints exactly the e820 map and command line given and
// finds every ACPI table and both CPUs.
func TestQEMUBootsDebianKernel(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("SKIP: qemu-system-x86_64 not installed")
	}
	for _, tool := range []string{"gcc", "ld"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP: %s not installed, cannot build the test firmware", tool)
		}
	}
	for _, name := range []string{"vmlinux", "vmlinuz"} {
		t.Run(name, func(t *testing.T) {
			bootInQEMU(t, qemu, debianKernel(t, name), "console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1 chsnap.test=boot", nil)
		})
	}
}

// TestQEMUBootsTestGuest boots the chsnap test guest the same way and waits
// for its ready line, which it prints after reading boot_params and the MADT
// and starting every CPU.
func TestQEMUBootsTestGuest(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("SKIP: qemu-system-x86_64 not installed")
	}
	const path = "../../testdata/guest/build/guest.bzImage"
	if _, err := os.Stat(path); err != nil {
		t.Skipf("SKIP: %s not built (run make in the repository root)", path)
	}
	bootInQEMU(t, qemu, path, "console=ttyS0", []string{"chsnap-guest ready cpus=2"})
}

func bootInQEMU(t *testing.T, qemu, kernelPath string, cmdline string, want []string) {
	const memSize = 512 << 20
	dir := t.TempDir()
	fw := buildFirmware(t, dir)
	img, err := os.ReadFile(kernelPath)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := acpi.Build(acpi.Config{APICIDs: acpi.SequentialAPICIDs(2)})
	if err != nil {
		t.Fatal(err)
	}
	mem := newSparseMem(memSize)
	e, err := Setup(mem, Config{Kernel: img, Cmdline: cmdline, MemSize: memSize, RSDP: tables.RSDP})
	if err != nil {
		t.Fatal(err)
	}

	// BIOS image: 128 KiB mapped at 0xE0000: ACPI tables at offset 0, the
	// firmware at 0xF0000, the reset vector at 0xFFFF0 (ljmp 0xF000:0).
	bios := make([]byte, 128<<10)
	copy(bios[tables.Base-0xE0000:], tables.Blob)
	copy(bios[0x10000:], fw)
	mode := uint32(0)
	if e.Kind == KindBzImage {
		mode = 1
	}
	le.PutUint32(bios[0x10010:], mode)
	le.PutUint32(bios[0x10014:], uint32(e.Regs.RIP))
	copy(bios[0x1FFF0:], []byte{0xEA, 0x00, 0x00, 0x00, 0xF0})
	biosPath := filepath.Join(dir, "bios.bin")
	if err := os.WriteFile(biosPath, bios, 0o644); err != nil {
		t.Fatal(err)
	}

	args := []string{"-M", "pc", "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "512M",
		"-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot", "-bios", biosPath}
	for i, run := range mem.runs() {
		p := filepath.Join(dir, fmt.Sprintf("mem%d.bin", i))
		if err := os.WriteFile(p, mem.read(run[0], int(run[1])), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-device", fmt.Sprintf("loader,file=%s,addr=%#x,force-raw=on", p, run[0]))
	}

	if want != nil {
		out := runUntil(t, qemu, args, want, 120*time.Second)
		for _, w := range want {
			if !containsAny(out, w) {
				t.Errorf("guest output lacks %q", w)
			}
		}
		if t.Failed() {
			t.Logf("guest output:\n%s", out)
		}
		return
	}
	want = append(E820Lines(LinuxE820(e.E820, e.Kind)),
		"Command line: "+cmdline,
		"ACPI: RSDP 0x00000000000E0000 000024 (v02 CHSNAP)",
		fmt.Sprintf("ACPI: XSDT 0x%016X 000034 (v01 CHSNAP CHSNAPVM 00000001 CHSN 00000001)", tables.Tables[1].Addr),
		fmt.Sprintf("ACPI: FACP 0x%016X 000114 (v06 CHSNAP CHSNAPVM 00000001 CHSN 00000001)", tables.Tables[2].Addr),
		fmt.Sprintf("ACPI: DSDT 0x%016X %06X (v02 CHSNAP CHSNAPVM 00000001 CHSN 00000001)", tables.Tables[4].Addr, tables.Tables[4].Length),
		fmt.Sprintf("ACPI: APIC 0x%016X %06X (v05 CHSNAP CHSNAPVM 00000001 CHSN 00000001)", tables.Tables[3].Addr, tables.Tables[3].Length),
		"IOAPIC[0]: apic_id 0, version",
		"ACPI: INT_SRC_OVR (bus 0 bus_irq 4 global_irq 4 dfl dfl)",
		"ACPI: Using ACPI (MADT) for SMP configuration information",
		// Linux 6.12 words it so; 6.1 prints "smpboot: Allowing 2 CPUs, 0 hotplug CPUs".
		"Allowing 2 present CPUs plus 0 hotplug CPUs|smpboot: Allowing 2 CPUs, 0 hotplug CPUs",
	)
	out := runUntil(t, qemu, args, want, 150*time.Second)
	for _, w := range want {
		if !containsAny(out, w) {
			t.Errorf("kernel output lacks %q", w)
		}
	}
	if t.Failed() {
		t.Logf("kernel output:\n%s", out)
	}
}

// buildFirmware assembles testdata/qemu_fw.S into a flat binary linked at 0xF0000.
func buildFirmware(t *testing.T, dir string) []byte {
	obj, bin := filepath.Join(dir, "fw.o"), filepath.Join(dir, "fw.bin")
	for _, c := range [][]string{
		{"gcc", "-c", "testdata/qemu_fw.S", "-o", obj},
		{"ld", "-m", "elf_x86_64", "-Ttext=0xF0000", "--oformat", "binary", "-e", "start16", obj, "-o", bin},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
	fw, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	return fw
}

// runUntil runs QEMU until its serial output contains every wanted string or
// the timeout passes, then stops it, and returns the output.
func runUntil(t *testing.T, qemu string, args, want []string, timeout time.Duration) string {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		out strings.Builder
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		missing := slices.Clone(want)
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			mu.Lock()
			out.WriteString(line + "\n")
			mu.Unlock()
			missing = slices.DeleteFunc(missing, func(w string) bool { return containsAny(line, w) })
			if len(missing) == 0 {
				cancel()
			}
		}
	}()
	<-done
	cmd.Wait()
	if s := stderr.String(); s != "" {
		t.Logf("qemu stderr: %s", s)
	}
	mu.Lock()
	defer mu.Unlock()
	return out.String()
}

// runs returns the written memory as [start, length) runs of whole pages.
func (m *sparseMem) runs() [][2]uint64 {
	pages := make([]uint64, 0, len(m.pages))
	for p := range m.pages {
		pages = append(pages, p)
	}
	slices.Sort(pages)
	var runs [][2]uint64
	for _, p := range pages {
		if n := len(runs); n > 0 && runs[n-1][0]+runs[n-1][1] == p<<12 {
			runs[n-1][1] += 4096
			continue
		}
		runs = append(runs, [2]uint64{p << 12, 4096})
	}
	return runs
}

// containsAny reports whether s contains one of the "|"-separated alternatives in w.
func containsAny(s, w string) bool {
	for _, alt := range strings.Split(w, "|") {
		if strings.Contains(s, alt) {
			return true
		}
	}
	return false
}
