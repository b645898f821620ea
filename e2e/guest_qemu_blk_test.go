//go:build e2e

package e2e

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// blkSectorSize is the unit of the guest's blk commands.
const blkSectorSize = 512

// blkMix is the splitmix64 finalizer the test guest uses (blkcmd.c, memtest.c).
func blkMix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// blkPattern returns what the guest's "blkwrite DEV SECTOR COUNT SEED" puts
// in sector s: 64 little-endian words, word i = mix(mix(seed) + 64*s + i)
// (testdata/guest/README.md).
func blkPattern(seed, s uint64) []byte {
	b := make([]byte, blkSectorSize)
	h := blkMix(seed)
	for i := uint64(0); i < blkSectorSize/8; i++ {
		binary.LittleEndian.PutUint64(b[8*i:], blkMix(h+64*s+i))
	}
	return b
}

// blkBackground is the content the test gives every sector before the guest
// runs, so that a stray write anywhere shows: the sector number and tag in
// ASCII, repeated.
func blkBackground(tag string, s uint64) []byte {
	line := fmt.Sprintf("%s sector %08d\n", tag, s)
	b := bytes.Repeat([]byte(line), blkSectorSize/len(line)+1)
	return b[:blkSectorSize]
}

func blkImage(tag string, sectors uint64) []byte {
	img := make([]byte, 0, sectors*blkSectorSize)
	for s := uint64(0); s < sectors; s++ {
		img = append(img, blkBackground(tag, s)...)
	}
	return img
}

// blkReadLine is the guest's reply to "blkread DEV s" for sector content b.
func blkReadLine(s uint64, b []byte) string {
	return fmt.Sprintf("blkread %d %s %08x", s, hex.EncodeToString(b[:16]), crc32.ChecksumIEEE(b))
}

func TestBlkPatternKnownValues(t *testing.T) {
	// Pins the documented function: a change here must change the guest too.
	p := blkPattern(7, 100)
	if got, want := binary.LittleEndian.Uint64(p), blkMix(blkMix(7)+6400); got != want {
		t.Fatalf("word 0 = %#x, want %#x", got, want)
	}
	if bytes.Equal(blkPattern(7, 100), blkPattern(7, 101)) || bytes.Equal(blkPattern(7, 100), blkPattern(8, 100)) {
		t.Fatal("pattern does not depend on sector and seed")
	}
	if blkMix(0) != 0xe220a8397b1dcdaf {
		t.Fatalf("mix(0) = %#x, want splitmix64's first output 0xe220a8397b1dcdaf", blkMix(0))
	}
}

// qemuImg runs qemu-img, skipping the test if it is missing.
func qemuImg(t *testing.T, args ...string) {
	t.Helper()
	path, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("SKIPPED: qemu-img not found in PATH; install qemu-utils to run the QEMU virtio-blk tests")
	}
	if out, err := exec.Command(path, args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
	}
}

// blkDrive returns the QEMU arguments for virtio-blk drive n on transport
// n (virtio-mmio-bus.n at 0xfeb00000 + 512n) and its kernel command line
// word. QEMU 7.2 microvm appends virtio_mmio.device= words itself only when
// ACPI is off, and the guest needs ACPI, so the test passes them. The GSI
// (24 + n, microvm's second IOAPIC) is not used: the guest polls.
func blkDrive(n int, file, format string, readonly bool) (args []string, cmdline string) {
	drive := fmt.Sprintf("id=d%d,file=%s,format=%s,if=none", n, file, format)
	if readonly {
		drive += ",readonly=on"
	}
	args = []string{"-drive", drive,
		"-device", fmt.Sprintf("virtio-blk-device,drive=d%d,bus=virtio-mmio-bus.%d", n, n)}
	return args, fmt.Sprintf(" virtio_mmio.device=512@%#x:%d", 0xfeb00000+512*n, 24+n)
}

func TestGuestQEMUBlk(t *testing.T) {
	for _, format := range []string{"raw", "qcow2"} {
		t.Run(format, func(t *testing.T) { testGuestQEMUBlk(t, format) })
	}
}

func testGuestQEMUBlk(t *testing.T, format string) {
	const (
		sectors   = 8192 // 4 MiB
		roSectors = 256
		first     = 100
		count     = 37 // not a multiple of the guest's 8-sector requests
		seed      = 0xc0ffee
	)
	dir := t.TempDir()
	want := blkImage("rw", sectors)
	raw := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(raw, want, 0o644); err != nil {
		t.Fatal(err)
	}
	disk := raw
	if format == "qcow2" {
		disk = filepath.Join(dir, "disk.qcow2")
		qemuImg(t, "convert", "-f", "raw", "-O", "qcow2", raw, disk)
	}
	roWant := blkImage("ro", roSectors)
	ro := filepath.Join(dir, "ro.raw")
	if err := os.WriteFile(ro, roWant, 0o644); err != nil {
		t.Fatal(err)
	}

	a0, c0 := blkDrive(0, disk, format, false)
	a1, c1 := blkDrive(1, ro, "raw", true)
	extra := append([]string{"-global", "virtio-mmio.force-legacy=false"}, append(a0, a1...)...)
	// Transport 2 has no device behind it: the guest must say so and carry on.
	empty := " virtio_mmio.device=512@0xfeb00400:26"
	g := startQEMU(t, "guest.bzImage", 1, "blk-test"+c0+c1+empty, 120*time.Second, extra...)
	c := g.con
	if _, err := c.Expect(`^chsnap-guest ready cpus=1$`, 30*time.Second); err != nil {
		t.Fatal(err)
	}

	r, err := c.Command("blk", 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^blk devs=2 virtio=3 disk0=sectors:(\d+),ro:0,blksize:512,features:0x([0-9a-f]+) disk1=sectors:(\d+),ro:1,\S+ skipped=0xfeb00400:no-device$`).FindStringSubmatch(r)
	if m == nil {
		t.Fatalf("blk reply %q: want two disks, disk1 read-only", r)
	}
	if m[1] != strconv.Itoa(sectors) || m[3] != strconv.Itoa(roSectors) {
		t.Errorf("blk reply %q: capacities %s and %s, want %d and %d", r, m[1], m[3], sectors, roSectors)
	}
	if f, err := strconv.ParseUint(m[2], 16, 64); err != nil || f&(1<<32) == 0 {
		t.Errorf("blk reply %q: negotiated features lack VIRTIO_F_VERSION_1", r)
	}

	for _, tc := range []struct{ cmd, want string }{
		{fmt.Sprintf("blkwrite 0 %d %d %d", first, count, seed), fmt.Sprintf("^blkwrite ok %d$", count)},
		{fmt.Sprintf("blkverify 0 %d %d %d", first, count, seed), fmt.Sprintf("^blkverify ok %d$", count)},
		{fmt.Sprintf("blkverify 0 %d %d %d", first, count, seed+1), fmt.Sprintf("^blkverify bad %d$", first)},
		{fmt.Sprintf("blkverify 0 %d %d %d", first-1, 2, seed), fmt.Sprintf("^blkverify bad %d$", first-1)},
		{fmt.Sprintf("blkverify 0 %d %d %d", first+count-1, 2, seed), fmt.Sprintf("^blkverify bad %d$", first+count)},
		{"blkread 0 " + strconv.Itoa(first), "^" + regexp.QuoteMeta(blkReadLine(first, blkPattern(seed, first))) + "$"},
		{"blkread 0 " + strconv.Itoa(first+count), "^" + regexp.QuoteMeta(blkReadLine(first+count, blkBackground("rw", first+count))) + "$"},
		{"blkread 0 " + strconv.Itoa(sectors-1), "^" + regexp.QuoteMeta(blkReadLine(sectors-1, blkBackground("rw", sectors-1))) + "$"},
		{"blkread 1 7", "^" + regexp.QuoteMeta(blkReadLine(7, blkBackground("ro", 7))) + "$"},
		{"blkflush 0", "^blkflush ok$"},
		{fmt.Sprintf("blkwrite 0 %d 3 1", sectors-2), "^error blkwrite: sectors .* outside the disk"},
		{"blkread 0 " + strconv.Itoa(sectors), "^error blkread: sectors .* outside the disk"},
		{"blkwrite 0 0 0 1", "^error blkwrite: COUNT must be at least 1$"},
		{"blkwrite 1 0 1 1", "^error blkwrite: .*read-only"},
		{"blkwrite 2 0 1 1", `^error blkwrite: no disk 2 \(2 found\)$`},
		{"blkwrite 0 1", "^error blkwrite: usage"},
	} {
		got, err := c.Command(tc.cmd, 60*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(tc.want).MatchString(got) {
			t.Errorf("%q: reply %q, want a match for %s", tc.cmd, got, tc.want)
		}
	}

	if err := c.Send("poweroff"); err != nil {
		t.Fatal(err)
	}
	code, err := g.wait(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Errorf("qemu exit status after poweroff = %d, want 0", code)
	}

	// The host's view: exactly the pattern in [first, first+count), the
	// background everywhere else, and the read-only disk untouched.
	got := readImage(t, disk, format, dir)
	for s := uint64(first); s < first+count; s++ {
		copy(want[s*blkSectorSize:], blkPattern(seed, s))
	}
	compareImage(t, "disk 0", got, want)
	roGot, err := os.ReadFile(ro)
	if err != nil {
		t.Fatal(err)
	}
	compareImage(t, "read-only disk 1", roGot, roWant)
}

// readImage returns the guest-visible bytes of a disk image.
func readImage(t *testing.T, path, format, dir string) []byte {
	t.Helper()
	if format != "raw" {
		out := filepath.Join(dir, "converted.raw")
		qemuImg(t, "convert", "-f", format, "-O", "raw", path, out)
		path = out
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// compareImage reports the first few sectors where got and want differ.
func compareImage(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d bytes, want %d", what, len(got), len(want))
		return
	}
	bad := 0
	for s := 0; s < len(want)/blkSectorSize; s++ {
		g, w := got[s*blkSectorSize:(s+1)*blkSectorSize], want[s*blkSectorSize:(s+1)*blkSectorSize]
		if !bytes.Equal(g, w) {
			if bad < 5 {
				t.Errorf("%s: sector %d differs: starts %x, want %x", what, s, g[:16], w[:16])
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d sectors differ", what, bad)
	}
}

// TestGuestQEMUBlkLegacy checks that the guest names a legacy (virtio-mmio
// version 1) transport, QEMU microvm's default, instead of driving it.
func TestGuestQEMUBlkLegacy(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(img, blkImage("legacy", 64), 0o644); err != nil {
		t.Fatal(err)
	}
	args, cmdline := blkDrive(0, img, "raw", false)
	// Also: an empty transport (legacy too), a window where there is no
	// device at all, and a malformed word, which is ignored.
	cmdline += " virtio_mmio.device=512@0xfeb01000:32 virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=junk"
	g := startQEMU(t, "guest.bzImage", 1, "blk-legacy"+cmdline, 60*time.Second, args...)
	c := g.con
	if _, err := c.Expect(`^chsnap-guest ready cpus=1$`, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ cmd, want string }{
		{"blk", `^blk devs=0 virtio=3 skipped=0xfeb00000:legacy-virtio-mmio-version-1-unsupported ` +
			`skipped=0xfeb01000:legacy-virtio-mmio-version-1-unsupported skipped=0xd0000000:bad-magic$`},
		{"blkread 0 0", `^error blkread: no disk 0 \(0 found\)$`},
	} {
		got, err := c.Command(tc.cmd, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(tc.want).MatchString(got) {
			t.Errorf("%q: reply %q, want a match for %s", tc.cmd, got, tc.want)
		}
	}
	if err := c.Send("poweroff"); err != nil {
		t.Fatal(err)
	}
	if code, err := g.wait(30 * time.Second); err != nil || code != 0 {
		t.Errorf("qemu exit after poweroff: status %d, %v; want 0", code, err)
	}
}
