//go:build e2e

package e2e

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// goldenArchive is the archive format 1.0 fixture every later chsnap must
// keep restoring. scripts/make-golden.sh regenerates it (only when the
// format's major version changes).
func goldenArchive() string {
	if d := os.Getenv("CHSNAP_GOLDEN_DIR"); d != "" {
		return filepath.Join(d, "guest-v1.0.chs")
	}
	return filepath.Join(repoRoot, "testdata", "golden", "guest-v1.0.chs")
}

// TestGoldenArchive restores the committed golden archive and checks the
// guest in it answers: its memory verifies, it has its vCPU, its timer runs,
// and it powers off cleanly. With CHSNAP_GOLDEN_EMIT=1 it instead makes a new
// golden archive and prints it, base64, between GOLDEN-BEGIN/GOLDEN-END lines.
func TestGoldenArchive(t *testing.T) {
	needKVM(t)
	if os.Getenv("CHSNAP_GOLDEN_EMIT") == "1" {
		emitGolden(t)
		return
	}
	golden := goldenArchive()
	if _, err := os.Stat(golden); err != nil {
		t.Fatalf("golden archive missing: %v", err)
	}
	dir := shortDir(t)
	r := startChsnap(t, "restore", golden, "--api-socket", filepath.Join(dir, "g.sock"))
	r.command(t, "verify", "verify ok")
	r.command(t, "cpus", "cpus 1")
	t1 := ticksOf(t, r)
	time.Sleep(300 * time.Millisecond)
	if t2 := ticksOf(t, r); t2 <= t1 {
		t.Errorf("restored golden guest's timer does not run: %d then %d", t1, t2)
	}
	r.send(t, "poweroff")
	if st := r.wait(t, 30*time.Second); st != 0 {
		t.Errorf("exit status %d after poweroff; stderr:\n%s", st, r.stderr)
	}
}

func emitGolden(t *testing.T) {
	dir := shortDir(t)
	p, sock := bootFilledSized(t, dir, 1, "16M", 1)
	snap := filepath.Join(dir, "golden.chs")
	chsnapOK(t, "save", "--api-socket", sock, snap)
	p.send(t, "poweroff")
	p.wait(t, 30*time.Second)
	data, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.StdEncoding.EncodeToString(data)
	fmt.Println("GOLDEN-BEGIN")
	for len(enc) > 0 {
		n := min(76, len(enc))
		fmt.Println(enc[:n])
		enc = enc[n:]
	}
	fmt.Println("GOLDEN-END")
}
