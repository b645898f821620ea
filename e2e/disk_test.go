//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// needQemuImg skips t loudly when qemu-img, the disk-format oracle, is
// missing.
func needQemuImg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("SKIPPED: qemu-img not found; install qemu-utils to run the disk tests")
	}
}

// qemuImgOut runs qemu-img and returns its output, failing the test on error.
func qemuImgOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("qemu-img", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestDisks attaches a raw disk, a qcow2 disk, a qcow2 overlay on a raw
// base and the base itself read-only; the guest writes a seeded pattern to
// each writable one and verifies it; the VM is saved and restored and the
// data is still there; after the guest powers off, qemu-img finds the qcow2
// images clean and their contents exactly what the guest wrote.
func TestDisks(t *testing.T) {
	needKVM(t)
	needQemuImg(t)
	dir := shortDir(t)
	const sectors = 16 << 20 / 512
	raw := filepath.Join(dir, "raw.img")
	if err := os.WriteFile(raw, blkImage("raw", sectors), 0o644); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "base.img")
	if err := os.WriteFile(base, blkImage("base", sectors), 0o444); err != nil {
		t.Fatal(err)
	}
	q := filepath.Join(dir, "fresh.qcow2")
	qemuImgOut(t, "create", "-q", "-f", "qcow2", q, "16M")
	overlay := filepath.Join(dir, "overlay.qcow2")
	qemuImgOut(t, "create", "-q", "-f", "qcow2", "-b", "base.img", "-F", "raw", overlay)

	sock := filepath.Join(dir, "d.sock")
	p := startChsnap(t, "run", "--kernel", guestImage(t), "--memory", "128M", "--api-socket", sock,
		"--disk", "id=disk0,path="+raw,
		"--disk", "id=disk1,path="+q+",format=qcow2",
		"--disk", "id=disk2,path="+overlay,
		"--disk", "id=ro,path="+base+",readonly=on")
	if _, err := p.con.Expect(`^chsnap-guest ready`, time.Minute); err != nil {
		t.Fatalf("%v\nconsole:\n%s\nstderr:\n%s", err, p.con.Transcript(), p.stderr)
	}
	info := p.command(t, "blk", "blk ")
	if !strings.Contains(info, "devs=4") || !strings.Contains(info, fmt.Sprintf("sectors:%d,ro:1", sectors)) {
		t.Fatalf("blk: %s", info)
	}
	for dev := 0; dev < 3; dev++ {
		p.command(t, fmt.Sprintf("blkwrite %d 100 37 %d", dev, 5+dev), "blkwrite ok 37")
		p.command(t, fmt.Sprintf("blkverify %d 100 37 %d", dev, 5+dev), "blkverify ok 37")
	}
	if r := p.command(t, "blkwrite 3 0 1 9", "error"); !strings.Contains(r, "read-only") && !strings.Contains(r, "ro") {
		t.Errorf("write to the read-only disk: %s", r)
	}
	if got, want := p.command(t, "blkread 3 7", "blkread"), blkReadLine(7, blkBackground("base", 7)); got != want {
		t.Errorf("read-only base sector 7: %q, want %q", got, want)
	}
	p.command(t, "blkflush 1", "blkflush ok")

	// Save, kill, restore: what the guest wrote before the save is there.
	snap := filepath.Join(dir, "disks.snap")
	chsnapOK(t, "save", "--api-socket", sock, snap)
	p.cmd.Process.Kill()
	p.wait(t, 10*time.Second)
	if out := chsnapOK(t, "inspect", snap); !strings.Contains(out, "disk2") {
		t.Errorf("inspect does not list the disks:\n%s", out)
	}
	r := startChsnap(t, "restore", snap, "--api-socket", filepath.Join(dir, "r.sock"))
	for dev := 0; dev < 3; dev++ {
		r.command(t, fmt.Sprintf("blkverify %d 100 37 %d", dev, 5+dev), "blkverify ok 37")
	}
	r.command(t, "blkwrite 2 300 8 11", "blkwrite ok 8")
	r.send(t, "poweroff")
	if st := r.wait(t, 30*time.Second); st != 0 {
		t.Fatalf("restored VM exit %d; stderr:\n%s", st, r.stderr)
	}

	// The oracle: qemu-img sees clean images holding exactly what was written.
	for _, img := range []string{q, overlay} {
		out, err := exec.Command("qemu-img", "check", img).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "No errors were found") {
			t.Errorf("qemu-img check %s: %v\n%s", filepath.Base(img), err, out)
		}
	}
	want := map[string][]byte{raw: blkImage("raw", sectors), q: make([]byte, sectors*512), overlay: blkImage("base", sectors)}
	for i, img := range []string{raw, q, overlay} {
		for s := uint64(100); s < 137; s++ {
			copy(want[img][s*512:], blkPattern(uint64(5+i), s))
		}
	}
	for s := uint64(300); s < 308; s++ {
		copy(want[overlay][s*512:], blkPattern(11, s))
	}
	for img, data := range want {
		if img == raw {
			if got, err := os.ReadFile(raw); err != nil || !bytes.Equal(got, data) {
				t.Errorf("raw image differs from what the guest wrote (%v)", err)
			}
			continue
		}
		exp := filepath.Join(dir, filepath.Base(img)+".expected")
		if err := os.WriteFile(exp, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "qcow2", exp, img).CombinedOutput(); err != nil {
			t.Errorf("%s differs from what the guest wrote: %v\n%s", filepath.Base(img), err, out)
		}
	}
	got, err := os.ReadFile(base)
	if err != nil || !bytes.Equal(got, blkImage("base", sectors)) {
		t.Errorf("the read-only base changed (%v)", err)
	}
}

// TestDiskIdentityOnRestore: a restore refuses a disk that is another file
// than the one saved, and accepts a copy named with --disk ID=PATH.
func TestDiskIdentityOnRestore(t *testing.T) {
	needKVM(t)
	dir := shortDir(t)
	img := filepath.Join(dir, "a.img")
	if err := os.WriteFile(img, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "i.sock")
	p := startChsnap(t, "run", "--kernel", guestImage(t), "--memory", "64M", "--api-socket", sock, "--disk", "id=disk0,path="+img)
	if _, err := p.con.Expect(`^chsnap-guest ready`, time.Minute); err != nil {
		t.Fatalf("%v\n%s", err, p.stderr)
	}
	p.command(t, "blkwrite 0 8 4 3", "blkwrite ok 4")
	snap := filepath.Join(dir, "i.snap")
	chsnapOK(t, "save", "--api-socket", sock, snap)
	p.cmd.Process.Kill()
	p.wait(t, 10*time.Second)

	// Replace the image by a copy at the same path: another inode.
	data, _ := os.ReadFile(img)
	copyPath := filepath.Join(dir, "copy.img")
	os.WriteFile(copyPath, data, 0o644)
	os.Remove(img)
	os.WriteFile(img, data, 0o644)
	status, stderr := runChsnap(t, nil, "restore", snap, "--api-socket", filepath.Join(dir, "x.sock"))
	checkOneLineError(t, status, stderr, 1, "another file")
	status, stderr = runChsnap(t, nil, "restore", snap, "--disk", "nosuch="+copyPath, "--api-socket", filepath.Join(dir, "y.sock"))
	checkOneLineError(t, status, stderr, 1, "no disk nosuch")

	r := startChsnap(t, "restore", snap, "--disk", "disk0="+copyPath, "--api-socket", filepath.Join(dir, "z.sock"))
	r.command(t, "blkverify 0 8 4 3", "blkverify ok 4")
	r.send(t, "poweroff")
	if st := r.wait(t, 30*time.Second); st != 0 {
		t.Errorf("exit %d; stderr:\n%s", st, r.stderr)
	}
}

// TestDiskBadInput checks that bad disks are refused before any guest
// starts, each with one clear line: a missing image, a backing chain that
// loops, a bad format name and a malformed --disk.
func TestDiskBadInput(t *testing.T) {
	needQemuImg(t)
	dir := shortDir(t)
	a, b := filepath.Join(dir, "a.qcow2"), filepath.Join(dir, "b.qcow2")
	qemuImgOut(t, "create", "-q", "-f", "qcow2", a, "1M")
	qemuImgOut(t, "create", "-q", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", b)
	// Point a at b: a -> b -> a.
	qemuImgOut(t, "rebase", "-q", "-u", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", a)
	guest := guestImage(t)
	for _, tc := range []struct {
		name   string
		disk   string
		status int
		want   string
	}{
		{"missing image", "id=d0,path=" + filepath.Join(dir, "nope.img"), 1, "no such file"},
		{"backing loop", "id=d0,path=" + b, 1, "loops"},
		{"bad format", "id=d0,path=" + a + ",format=vmdk", 2, "vmdk"},
		{"no path", "id=d0", 2, "path="},
		{"bad id", "id=a/b,path=" + a, 2, "disk id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, stderr := runChsnap(t, nil, "run", "--kernel", guest, "--disk", tc.disk, "--kvm-device", filepath.Join(dir, "no-kvm"))
			checkOneLineError(t, status, stderr, tc.status, tc.want)
		})
	}
}
