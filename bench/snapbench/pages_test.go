package main

import (
	"bytes"
	"github.com/chsnap/chsnap/bench/internal/vmcon"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestFillMixClasses(t *testing.T) {
	buf := fillMix(4, 7)
	var zero, text, random int
	for p := 0; p < len(buf); p += pageSize {
		pg := buf[p : p+pageSize]
		switch {
		case bytes.Count(pg, []byte{0}) == pageSize:
			zero++
		case bytes.IndexFunc(pg, func(r rune) bool { return r != ' ' && r != '\n' && (r < 'a' || r > 'z') }) < 0:
			text++
		default:
			random++
		}
	}
	pages := len(buf) / pageSize
	if zero != pages/2 || text != pages/4 || random != pages/4 {
		t.Errorf("pages: %d zero, %d text, %d random of %d; want exactly 1/2, 1/4, 1/4", zero, text, random, pages)
	}
	if !bytes.Equal(buf, fillMix(4, 7)) {
		t.Error("fillMix is not deterministic")
	}
	if bytes.Equal(buf, fillMix(4, 8)) {
		t.Error("fillMix ignores the seed")
	}
}

// TestGuestFillMixMatches boots the test guest under QEMU (TCG), runs
// fillmix and checks that guest RAM holds exactly the bytes fillMix
// computes, starting at a page boundary.
func TestGuestFillMixMatches(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("SKIPPED: qemu-system-x86_64 not in PATH; install qemu-system-x86 to check fillmix against the guest")
	}
	guest, err := filepath.Abs("../../testdata/guest/build/guest.bzImage")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(guest); err != nil {
		t.Skipf("SKIPPED: no test guest (%v); run make -C testdata/guest", err)
	}
	dir, err := os.MkdirTemp("", "sbt")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	c := config{qemu: qemu, guest: guest, accel: "tcg", memory: "64M", fillMiB: 4, seed: 9}
	sock := filepath.Join(dir, "q.sock")
	p, err := vmcon.Start("qemu", exec.Command(qemu, c.qemuArgs("-qmp", "unix:"+sock+",server=on,wait=off")...))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if err := fillGuest(p, c); err != nil {
		t.Fatal(err)
	}
	if l, err := p.Command("verify", "^verify", time.Minute); err != nil || l.Text != "verify ok" {
		t.Fatalf("verify: %q, %v", l.Text, err)
	}
	q, err := dialQMP(sock, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer q.close()
	dump := filepath.Join(dir, "ram")
	if _, err := q.run("pmemsave", map[string]any{"val": 0, "size": 64 << 20, "filename": dump}); err != nil {
		t.Fatal(err)
	}
	ram, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	want := fillMix(c.fillMiB, c.seed)
	at := bytes.Index(ram, want)
	if at < 0 || at%pageSize != 0 {
		t.Fatalf("guest RAM does not hold fillMix(%d, %d) at a page boundary (index %d)", c.fillMiB, c.seed, at)
	}
	t.Logf("fillmix pages found at guest-physical %#x", at)
}
