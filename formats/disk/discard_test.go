package disk

import (
	"os"
	"path/filepath"
	"testing"
)

// TestQcow2Discard checks that discard zeroes whole clusters on v3 (plain
// and compressed), leaves partial clusters and v2 images alone, and keeps
// qemu-img check clean.
func TestQcow2Discard(t *testing.T) {
	needQemu(t)
	const cs = 4096
	src := pattern(21, 1<<20)
	for i := range src {
		src[i] |= 1 // no zero bytes, so "zeroed" is unambiguous
	}
	for _, tc := range []struct {
		name       string
		compat     string
		compressed bool
	}{
		{"v3", "1.1", false},
		{"v3-compressed", "1.1", true},
		{"v2", "0.10", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			rawPath := filepath.Join(dir, "src.raw")
			os.WriteFile(rawPath, src, 0o644)
			img := filepath.Join(dir, "img.qcow2")
			args := []string{"convert", "-O", "qcow2", "-o", "compat=" + tc.compat + ",cluster_size=4096"}
			if tc.compressed {
				args = append(args, "-c")
			}
			run(t, "qemu-img", append(args, rawPath, img)...)
			d, err := Open(img, OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want := append([]byte(nil), src...)
			// 10 full clusters from 8192, plus partial edges; and the tail.
			if err := d.Discard(8192-100, 10*cs+200); err != nil {
				t.Fatal(err)
			}
			if err := d.Discard(1<<20-3*cs, 3*cs); err != nil {
				t.Fatal(err)
			}
			if tc.compat == "1.1" {
				clear(want[8192 : 8192+10*cs])
				clear(want[1<<20-3*cs:])
			}
			// Writing into a discarded (zero, preallocated) cluster.
			patch := []byte("after discard")
			if _, err := d.WriteAt(patch, 8192+cs+10); err != nil {
				t.Fatal(err)
			}
			copy(want[8192+cs+10:], patch)
			if diff := firstDiff(readAll(t, d, 65536), want); diff != "" {
				t.Fatal(diff)
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			qemuCheck(t, img)
			qemuCompare(t, img, want)
		})
	}
}
