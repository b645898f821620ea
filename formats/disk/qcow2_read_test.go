package disk

import (
	"os"
	"path/filepath"
	"testing"
)

// TestQcow2ReadMatchesQemu converts a patterned raw file to qcow2 in many
// shapes and checks that every byte we read equals qemu-img convert -O raw.
func TestQcow2ReadMatchesQemu(t *testing.T) {
	needQemu(t)
	const size = 3<<20 + 23*512 // sectors, but not a multiple of any larger cluster
	src := pattern(1, size)
	dir := t.TempDir()
	rawPath := filepath.Join(dir, "src.raw")
	if err := os.WriteFile(rawPath, src, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		compat     string
		cluster    string
		compressed bool
		zeroWrites bool
	}{
		{"v2-64k", "0.10", "65536", false, false},
		{"v2-512", "0.10", "512", false, false},
		{"v3-4k", "1.1", "4096", false, false},
		{"v3-2m", "1.1", "2097152", false, false},
		{"v3-64k-compressed", "1.1", "65536", true, false},
		{"v2-4k-compressed", "0.10", "4096", true, false},
		{"v3-64k-zero", "1.1", "65536", false, true},
		{"v3-4k-compressed-zero", "1.1", "4096", true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), tc.name+".qcow2")
			args := []string{"convert", "-f", "raw", "-O", "qcow2", "-o", "compat=" + tc.compat + ",cluster_size=" + tc.cluster}
			if tc.compressed {
				args = append(args, "-c")
			}
			run(t, "qemu-img", append(args, rawPath, img)...)
			if tc.zeroWrites {
				// Zero clusters (v3 L2 bit 0), over data and over holes,
				// partly unaligned so qemu also writes partial clusters.
				qemuIO(t, img, "write -z 0 1M", "write -z 2M 256k", "write -P 0x5a 1100k 3000")
			}
			want := qemuRaw(t, img)
			d, err := Open(img, OpenOptions{ReadOnly: true})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer d.Close()
			if d.Size() != uint64(len(want)) {
				t.Fatalf("Size() = %d, want %d", d.Size(), len(want))
			}
			for _, chunk := range []int{512, 12345, 1 << 20} {
				if diff := firstDiff(readAll(t, d, chunk), want); diff != "" {
					t.Fatalf("read in %d-byte chunks: %s", chunk, diff)
				}
			}
			if !tc.zeroWrites && firstDiff(want, src) != "" {
				t.Fatalf("oracle disagrees with the source: %s", firstDiff(want, src))
			}
		})
	}
}

// TestQcow2BackingChains reads chains of two and three levels with raw and
// qcow2 bases, named relative to the image.
func TestQcow2BackingChains(t *testing.T) {
	needQemu(t)
	const size = 2 << 20
	for _, tc := range []struct {
		name     string
		baseRaw  bool
		levels   int
		smallBas bool // base shorter than the overlay
	}{
		{"raw-base-2", true, 2, false},
		{"qcow2-base-2", false, 2, false},
		{"raw-base-3", true, 3, false},
		{"qcow2-base-3", false, 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			baseSize := size
			if tc.smallBas {
				baseSize = size / 2
			}
			base := pattern(3, baseSize)
			var prev, prevFmt string
			if tc.baseRaw {
				prev, prevFmt = "base.raw", "raw"
				if err := os.WriteFile(filepath.Join(dir, prev), base, 0o444); err != nil {
					t.Fatal(err)
				}
			} else {
				prev, prevFmt = "base.qcow2", "qcow2"
				rawPath := filepath.Join(t.TempDir(), "b.raw")
				os.WriteFile(rawPath, base, 0o644)
				run(t, "qemu-img", "convert", "-O", "qcow2", "-o", "cluster_size=4096", rawPath, filepath.Join(dir, prev))
			}
			for i := 1; i < tc.levels; i++ {
				name := "level" + string(rune('0'+i)) + ".qcow2"
				p := filepath.Join(dir, name)
				// Relative backing names: resolved against the image's directory.
				run(t, "qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=65536", "-b", prev, "-F", prevFmt, p, "2M")
				qemuIO(t, p, "write -P 0x"+string("abcdef"[i])+string("abcdef"[i])+" 100000 70000", "write -P 0x11 1536k 4096")
				prev, prevFmt = name, "qcow2"
			}
			top := filepath.Join(dir, prev)
			want := qemuRaw(t, top)
			d, err := Open(top, OpenOptions{ReadOnly: true})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer d.Close()
			if diff := firstDiff(readAll(t, d, 7000), want); diff != "" {
				t.Fatal(diff)
			}
		})
	}
}
