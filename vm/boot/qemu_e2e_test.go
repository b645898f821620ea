//go:build e2e

package boot

import (
	"bufio"
	"bytes"
	"context"
	"errors"
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

// The QEMU oracle for vm/boot and vm/acpi on machines without /dev/kvm: guest
// memory is laid out by Setup and acpi.Build exactly as chsnap lays it out,
// handed to QEMU (TCG, -M pc) with generic loader devices, and entered from a
// tiny firmware (testdata/qemu_fw.S) that loads the CPU state Entry describes.
// The ACPI blob sits in the 128 KiB BIOS image, which QEMU maps at 0xE0000.
// An isa-debugcon at port 0x600 records what the guest writes to the FADT's
// reset and sleep registers.
//
// Run with: go test -tags e2e -run QEMU ./vm/boot (needs qemu-system-x86_64,
// gcc, ld and the kernel cached by testdata/kernel/fetch.sh; about 1 minute).

// earlyCmdline gets Linux far enough to print the memory map and tables.
const earlyCmdline = "console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1 chsnap.test=boot"

// lateCmdline lets Linux finish booting under TCG: with HW_REDUCED_ACPI it
// has no PIT or HPET to calibrate the TSC and LAPIC timer against (on KVM,
// kvm-clock and CPUID provide both).
const lateCmdline = "console=ttyS0 tsc_early_khz=2000000 lapic_timer_period=4000000 panic=-1"

type qemuRun struct {
	kernel   string
	initrd   []byte
	cmdline  string
	devices  []acpi.Term
	cpus     int           // 0 means 2
	stopWhen []string      // stop once every one is seen; nil waits for QEMU to exit
	grace    time.Duration // how long to let QEMU run after stopWhen is met
	timeout  time.Duration
}

type qemuResult struct {
	entry   *Entry
	tables  *acpi.Tables
	out     string // serial console
	port600 []byte // bytes the guest wrote to I/O port 0x600
	exitErr error
}

func needQEMU(t *testing.T) string {
	t.Helper()
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("SKIP: qemu-system-x86_64 not installed")
	}
	for _, tool := range []string{"gcc", "ld"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP: %s not installed, cannot build the test firmware", tool)
		}
	}
	return qemu
}

func runInQEMU(t *testing.T, qemu string, r qemuRun) qemuResult {
	t.Helper()
	const memSize = 512 << 20
	dir := t.TempDir()
	fw := buildTool(t, dir, "fw.bin", "testdata/qemu_fw.S", "-c")
	img, err := os.ReadFile(r.kernel)
	if err != nil {
		t.Fatal(err)
	}
	cpus := r.cpus
	if cpus == 0 {
		cpus = 2
	}
	tables, err := acpi.Build(acpi.Config{APICIDs: acpi.SequentialAPICIDs(cpus), Devices: r.devices})
	if err != nil {
		t.Fatal(err)
	}
	mem := newSparseMem(memSize)
	e, err := Setup(mem, Config{Kernel: img, Initrd: r.initrd, Cmdline: r.cmdline, MemSize: memSize, RSDP: tables.RSDP})
	if err != nil {
		t.Fatal(err)
	}

	bios := make([]byte, 128<<10)
	copy(bios[tables.Base-0xE0000:], tables.Blob)
	copy(bios[0x10000:], fw)
	mode := uint32(0)
	if e.Kind == KindBzImage {
		mode = 1
	}
	le.PutUint32(bios[0x10010:], mode)
	le.PutUint32(bios[0x10014:], uint32(e.Regs.RIP))
	copy(bios[0x1FFF0:], []byte{0xEA, 0x00, 0x00, 0x00, 0xF0}) // ljmp 0xF000:0
	copy(bios[0x1FFE0:], mem.read(ResetVectorAddr, 16))        // Setup's stub, for warm entries
	biosPath := filepath.Join(dir, "bios.bin")
	if err := os.WriteFile(biosPath, bios, 0o644); err != nil {
		t.Fatal(err)
	}
	portLog := filepath.Join(dir, "port600.bin")
	args := []string{"-M", "pc", "-accel", "tcg", "-cpu", "max", "-smp", fmt.Sprint(cpus), "-m", "512M",
		"-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot", "-bios", biosPath,
		"-chardev", "file,id=p600,path=" + portLog, "-device", "isa-debugcon,iobase=0x600,chardev=p600"}
	// QEMU_ARGS adds debugging options, e.g. "-d int,cpu_reset -D /tmp/q.log".
	args = append(args, strings.Fields(os.Getenv("QEMU_ARGS"))...)
	for i, run := range mem.runs(ACPIAddr, ACPIEnd) { // the BIOS image covers [0xE0000, 1 MiB)
		p := filepath.Join(dir, fmt.Sprintf("mem%d.bin", i))
		if err := os.WriteFile(p, mem.read(run[0], int(run[1])), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-device", fmt.Sprintf("loader,file=%s,addr=%#x,force-raw=on", p, run[0]))
	}
	out, errOut, exitErr := runUntil(t, qemu, args, r.stopWhen, r.grace, r.timeout)
	if errOut != "" {
		t.Logf("qemu stderr: %s", errOut)
	}
	port600, _ := os.ReadFile(portLog)
	return qemuResult{entry: e, tables: tables, out: out, port600: port600, exitErr: exitErr}
}

// expect checks that out contains every wanted string ("a|b" accepts either).
func expect(t *testing.T, out string, want []string) {
	t.Helper()
	for _, w := range want {
		if !containsAny(out, w) {
			t.Errorf("kernel output lacks %q", w)
		}
	}
	if t.Failed() {
		t.Logf("kernel output:\n%s", out)
	}
}

// TestQEMUBootsDebianKernel checks that Linux prints exactly the e820 map and
// command line given and finds every ACPI table, the IOAPIC and both CPUs.
func TestQEMUBootsDebianKernel(t *testing.T) {
	qemu := needQEMU(t)
	for _, name := range []string{"vmlinux", "vmlinuz"} {
		t.Run(name, func(t *testing.T) {
			kernel := debianKernel(t, name)
			// Setup is deterministic, so the expected lines can be computed
			// from a dry run before QEMU starts.
			img, err := os.ReadFile(kernel)
			if err != nil {
				t.Fatal(err)
			}
			k, err := ParseKernel(img)
			if err != nil {
				t.Fatal(err)
			}
			tables, err := acpi.Build(acpi.Config{APICIDs: acpi.SequentialAPICIDs(2)})
			if err != nil {
				t.Fatal(err)
			}
			hdr := func(i int, sig, rev string) string {
				return fmt.Sprintf("ACPI: %s 0x%016X %06X (%s CHSNAP CHSNAPVM 00000001 CHSN 00000001)",
					sig, tables.Tables[i].Addr, tables.Tables[i].Length, rev)
			}
			want := append(E820Lines(LinuxE820(E820Map(512<<20), k.Kind)),
				"Command line: "+earlyCmdline,
				"ACPI: RSDP 0x00000000000E0000 000024 (v02 CHSNAP)",
				hdr(1, "XSDT", "v01"), hdr(2, "FACP", "v06"), hdr(4, "DSDT", "v02"), hdr(3, "APIC", "v05"),
				"IOAPIC[0]: apic_id 0, version",
				"ACPI: INT_SRC_OVR (bus 0 bus_irq 4 global_irq 4 dfl dfl)",
				"ACPI: Using ACPI (MADT) for SMP configuration information",
				// Linux 6.12 words it so; 6.1 prints "smpboot: Allowing 2 CPUs, 0 hotplug CPUs".
				"Allowing 2 present CPUs plus 0 hotplug CPUs|smpboot: Allowing 2 CPUs, 0 hotplug CPUs",
			)
			res := runInQEMU(t, qemu, qemuRun{kernel: kernel, cmdline: earlyCmdline, stopWhen: want, timeout: 150 * time.Second})
			expect(t, res.out, want)
		})
	}
}

// TestQEMULinuxReboot boots Linux to an initramfs whose /init powers off or
// restarts at once. On the way the DSDT must load, PNP must find COM1 and
// the i8042, the second CPU must come up and the initrd must arrive. Power
// off must write WAK_STS then SLP_TYP 5 | SLP_EN (0x34) to port 0x600;
// restart must write the reset value 1 there, through the FADT reset
// register with reboot=a, or through Setup's reset-vector stub by default.
func TestQEMULinuxReboot(t *testing.T) {
	qemu := needQEMU(t)
	dir := t.TempDir()
	poweroff := newcArchive(map[string][]byte{"init": buildTool(t, dir, "poweroff", "testdata/reboot_init.S", "-nostdlib", "-static")})
	restart := newcArchive(map[string][]byte{"init": buildTool(t, dir, "restart", "testdata/reboot_init.S", "-nostdlib", "-static", "-DREBOOT_CMD=0x01234567")})
	virtio, err := acpi.VirtioMMIO(0, 0xC000_1000, 0x1000, 5)
	if err != nil {
		t.Fatal(err)
	}
	booted := []string{
		"smp: Brought up 1 node, 2 CPUs",
		"ACPI: 1 ACPI AML tables successfully acquired and loaded",
		"ACPI: PM: (supports S0 S5)",
		"pnp: PnP ACPI: found 2 devices",
		"00:00: ttyS0 at I/O 0x3f8",
		"i8042: PNP: PS/2 Controller [PNP0303:PS2] at 0x60,0x64",
		"Freeing initrd memory",
		"Run /init as init process",
	}
	tests := []struct {
		name, kernel string
		initrd       []byte
		cmdline      string
		last         string
		port600      []byte
	}{
		{"vmlinux poweroff", "vmlinux", poweroff, lateCmdline, "reboot: Power down", []byte{0x80, 0x34}},
		{"vmlinuz poweroff", "vmlinuz", poweroff, lateCmdline, "reboot: Power down", []byte{0x80, 0x34}},
		{"vmlinux restart reboot=a", "vmlinux", restart, lateCmdline + " reboot=a", "reboot: Restarting system", []byte{0x01}},
		// The default restart of a HW-reduced machine jumps to the reset vector.
		{"vmlinuz restart", "vmlinuz", restart, lateCmdline, "reboot: Restarting system", []byte{0x01}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// After a power-off that QEMU ignores, Linux panics and restarts
			// too, so only the start of the port log is checked.
			res := runInQEMU(t, qemu, qemuRun{kernel: debianKernel(t, tc.kernel), initrd: tc.initrd, cmdline: tc.cmdline,
				devices: []acpi.Term{virtio}, stopWhen: []string{tc.last}, grace: 3 * time.Second, timeout: 150 * time.Second})
			expect(t, res.out, append(slices.Clone(booted), tc.last))
			for _, line := range strings.Split(res.out, "\n") {
				if strings.Contains(line, "ACPI Error") || strings.Contains(line, "ACPI BIOS Error") ||
					strings.Contains(line, "ACPI Warning") || strings.Contains(line, "ACPI BIOS Warning") || strings.Contains(line, "[Firmware Bug]") {
					t.Errorf("kernel complains about the firmware: %s", line)
				}
			}
			if !bytes.HasPrefix(res.port600, tc.port600) {
				t.Errorf("port 0x600 writes = % x, want % x; qemu exit %v; output ends:\n%s", res.port600, tc.port600, res.exitErr, tail(res.out, 20))
			}
		})
	}
}

// TestQEMUBootsTestGuest boots the chsnap test guest the same way and waits
// for its ready line, which it prints after reading boot_params and the MADT
// and starting every CPU.
func TestQEMUBootsTestGuest(t *testing.T) {
	qemu := needQEMU(t)
	const path = "../../testdata/guest/build/guest.bzImage"
	if _, err := os.Stat(path); err != nil {
		t.Skipf("SKIP: %s not built (run make in the repository root)", path)
	}
	for _, cpus := range []int{1, 2, 8} {
		t.Run(fmt.Sprintf("%dcpus", cpus), func(t *testing.T) {
			want := []string{fmt.Sprintf("chsnap-guest ready cpus=%d", cpus)}
			res := runInQEMU(t, qemu, qemuRun{kernel: path, cmdline: "console=ttyS0", cpus: cpus, stopWhen: want, timeout: 120 * time.Second})
			expect(t, res.out, want)
		})
	}
}

// buildTool assembles a testdata .S file with gcc and the given flags; with
// "-c" it links the object flat at 0xF0000 (the firmware).
func buildTool(t *testing.T, dir, name, src string, flags ...string) []byte {
	t.Helper()
	out := filepath.Join(dir, name)
	cmds := [][]string{append(append([]string{"gcc"}, flags...), src, "-o", out)}
	if slices.Contains(flags, "-c") {
		obj := out + ".o"
		cmds = [][]string{
			{"gcc", "-c", src, "-o", obj},
			{"ld", "-m", "elf_x86_64", "-Ttext=0xF0000", "--oformat", "binary", "-e", "start16", obj, "-o", out},
		}
	}
	for _, c := range cmds {
		if b, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(c, " "), err, b)
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newcArchive returns a cpio "newc" archive of executable files.
func newcArchive(files map[string][]byte) []byte {
	var b bytes.Buffer
	pad := func() {
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	entry := func(ino int, name string, mode int, data []byte) {
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		b.WriteString(name + "\x00")
		pad()
		b.Write(data)
		pad()
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for i, n := range names {
		entry(i+1, n, 0o100755, files[n])
	}
	entry(0, "TRAILER!!!", 0, nil)
	return b.Bytes()
}

// runUntil runs QEMU until grace after its serial output contains every
// string of stopWhen (when not nil), until it exits, or until the timeout.
func runUntil(t *testing.T, qemu string, args, stopWhen []string, grace, timeout time.Duration) (stdout, stderr string, exitErr error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, args...)
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errOut strings.Builder
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pipe)
		missing := slices.Clone(stopWhen)
		stopping := false
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			mu.Lock()
			out.WriteString(line + "\n")
			mu.Unlock()
			if stopWhen == nil {
				continue
			}
			missing = slices.DeleteFunc(missing, func(w string) bool { return containsAny(line, w) })
			if len(missing) == 0 && !stopping {
				// Give the guest a moment to finish what the last line
				// announced (port writes after "reboot: Power down").
				stopping = true
				time.AfterFunc(grace, cancel)
			}
		}
	}()
	<-done
	exitErr = cmd.Wait()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Errorf("qemu still running after %v, stopped", timeout)
	}
	mu.Lock()
	defer mu.Unlock()
	return out.String(), errOut.String(), exitErr
}

// runs returns the written memory outside [skipLo, skipHi) as
// [start, length) runs of whole pages.
func (m *sparseMem) runs(skipLo, skipHi uint64) [][2]uint64 {
	pages := make([]uint64, 0, len(m.pages))
	for p := range m.pages {
		if p<<12 < skipLo || p<<12 >= skipHi {
			pages = append(pages, p)
		}
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

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
