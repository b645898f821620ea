package vm

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/chsnap/chsnap/formats"
)

// goldenPath is the archive format 1.0 fixture (see scripts/make-golden.sh).
var goldenPath = filepath.Join("..", "testdata", "golden", "guest-v1.0.chs")

// TestVerifyGolden reads the golden archive as a restore would, without KVM:
// every section, every state section decoded strictly, memory decompressed
// and every chunk hash checked. A chsnap that cannot read it would not
// restore the snapshots its users already have.
func TestVerifyGolden(t *testing.T) {
	f, err := os.Open(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := VerifyArchive(f)
	if err != nil {
		t.Fatalf("golden archive: %v", err)
	}
	if rep.CPUs != 1 || rep.Memory != 16<<20 {
		t.Errorf("golden archive describes %d vCPUs and %d bytes, want 1 and 16 MiB", rep.CPUs, rep.Memory)
	}
	if rep.Memstat.Chunks-rep.Memstat.ZeroChunks == 0 {
		t.Errorf("golden archive stores no memory: %+v", rep.Memstat)
	}
}

// TestVerifyRefusesDamage flips a byte in each section of the golden archive
// and truncates it: every variant is refused with a sentinel error.
func TestVerifyRefusesDamage(t *testing.T) {
	good, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	_, _, table, err := formats.ReadTable(bytes.NewReader(good), int64(len(good)))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range table {
		b := bytes.Clone(good)
		b[s.Offset+24+int64(s.Length)/2] ^= 0x01
		_, err := VerifyArchive(bytes.NewReader(b))
		if !errors.Is(err, formats.ErrChecksum) {
			t.Errorf("flip in %s %d: error %v, want ErrChecksum", s.Kind, s.ID, err)
		}
	}
	for _, n := range []int{0, 10, 100, len(good) / 2, len(good) - 1} {
		if _, err := VerifyArchive(bytes.NewReader(good[:n])); err == nil {
			t.Errorf("archive truncated to %d bytes accepted", n)
		}
	}
}
