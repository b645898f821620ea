package disk

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// writeCase describes an image to create and the writes to make to it.
type writeCase struct {
	name    string
	create  func(t *testing.T, dir string) string // returns the image path
	writes  func(r *rand.Rand, size int) [][2]int // offset, length pairs
	minRefs int                                   // minimum allocated clusters after writes
}

// randomWrites returns n writes of random offset and length up to maxLen.
func randomWrites(n, maxLen int) func(r *rand.Rand, size int) [][2]int {
	return func(r *rand.Rand, size int) [][2]int {
		var w [][2]int
		for range n {
			l := 1 + r.IntN(maxLen)
			off := r.IntN(size - l)
			w = append(w, [2]int{off, l})
		}
		return w
	}
}

func createQcow2(opts, size string) func(t *testing.T, dir string) string {
	return func(t *testing.T, dir string) string {
		p := filepath.Join(dir, "img.qcow2")
		run(t, "qemu-img", "create", "-f", "qcow2", "-o", opts, p, size)
		return p
	}
}

// TestQcow2WritesQemuCheck makes writes through Disk, mirrors them into a
// byte slice, and then has qemu-img check the image (no errors, no leaks)
// and qemu-img compare it with the mirror.
func TestQcow2WritesQemuCheck(t *testing.T) {
	needQemu(t)
	cases := []writeCase{
		{name: "v2-64k-random", create: createQcow2("compat=0.10,cluster_size=65536", "8M"), writes: randomWrites(200, 100000)},
		{name: "v3-4k-random", create: createQcow2("compat=1.1,cluster_size=4096", "4M"), writes: randomWrites(300, 20000)},
		{name: "v3-2m-random", create: createQcow2("compat=1.1,cluster_size=2M", "8M"), writes: randomWrites(30, 5000)},
		{
			// 512-byte clusters: 256 clusters per refcount block and 64
			// blocks per table cluster, so 12 MiB of writes needs new
			// refcount blocks and a bigger refcount table.
			name: "v3-512-refcount-growth", create: createQcow2("compat=1.1,cluster_size=512", "16M"),
			writes: func(r *rand.Rand, size int) [][2]int {
				return [][2]int{{0, 12 << 20}, {13<<20 + 100, 7000}, {5000, 3}}
			},
			minRefs: 12 << 11,
		},
		{
			name: "v3-over-backing-partial", writes: randomWrites(150, 9000),
			create: func(t *testing.T, dir string) string {
				base := filepath.Join(dir, "base.raw")
				if err := os.WriteFile(base, pattern(5, 4<<20), 0o644); err != nil {
					t.Fatal(err)
				}
				p := filepath.Join(dir, "img.qcow2")
				run(t, "qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=8192", "-b", "base.raw", "-F", "raw", p, "4M")
				return p
			},
		},
		{
			name: "v2-over-qcow2-backing", writes: randomWrites(100, 30000),
			create: func(t *testing.T, dir string) string {
				src := filepath.Join(dir, "src.raw")
				os.WriteFile(src, pattern(6, 3<<20), 0o644)
				run(t, "qemu-img", "convert", "-O", "qcow2", "-c", src, filepath.Join(dir, "base.qcow2"))
				p := filepath.Join(dir, "img.qcow2")
				run(t, "qemu-img", "create", "-f", "qcow2", "-o", "compat=0.10", "-b", "base.qcow2", "-F", "qcow2", p, "3M")
				return p
			},
		},
		{
			// Rewriting compressed clusters allocates new ones and drops the
			// references to the compressed data.
			name: "v3-compressed-rewrite", writes: randomWrites(120, 20000),
			create: func(t *testing.T, dir string) string {
				src := filepath.Join(dir, "src.raw")
				os.WriteFile(src, pattern(7, 2<<20), 0o644)
				p := filepath.Join(dir, "img.qcow2")
				run(t, "qemu-img", "convert", "-O", "qcow2", "-c", "-o", "cluster_size=4096", src, p)
				return p
			},
		},
		{
			name: "v3-zero-clusters-rewrite", writes: randomWrites(100, 10000),
			create: func(t *testing.T, dir string) string {
				p := filepath.Join(dir, "img.qcow2")
				run(t, "qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=4096", p, "2M")
				qemuIO(t, p, "write -P 0x77 0 2M", "write -z 64k 512k", "write -z -u 1M 256k")
				return p
			},
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			img := tc.create(t, dir)
			want := qemuRaw(t, img)
			d, err := Open(img, OpenOptions{})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			r := rand.New(rand.NewPCG(uint64(i), 99))
			for _, w := range tc.writes(r, len(want)) {
				buf := make([]byte, w[1])
				for j := range buf {
					buf[j] = byte(r.Uint32() | 1)
				}
				if n, err := d.WriteAt(buf, int64(w[0])); err != nil || n != len(buf) {
					t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", len(buf), w[0], n, err)
				}
				copy(want[w[0]:], buf)
			}
			// Read back through our own code before closing.
			if diff := firstDiff(readAll(t, d, 65536), want); diff != "" {
				t.Fatalf("read back: %s", diff)
			}
			if err := d.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			res := qemuCheck(t, img)
			if res.Allocated < tc.minRefs {
				t.Errorf("allocated clusters = %d, want at least %d", res.Allocated, tc.minRefs)
			}
			qemuCompare(t, img, want)
			// And once more through our reader after reopening.
			d, err = Open(img, OpenOptions{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if diff := firstDiff(readAll(t, d, 1<<20), want); diff != "" {
				t.Fatalf("after reopen: %s", diff)
			}
		})
	}
}

// TestQcow2OverlayOnReadOnlyRawBase writes through an overlay whose raw
// base is mode 0444 and checks that the base is untouched.
func TestQcow2OverlayOnReadOnlyRawBase(t *testing.T) {
	needQemu(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "base.raw")
	orig := pattern(9, 1<<20)
	if err := os.WriteFile(base, orig, 0o444); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "overlay.qcow2")
	run(t, "qemu-img", "create", "-f", "qcow2", "-b", "base.raw", "-F", "raw", img, "1M")
	d, err := Open(img, OpenOptions{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	want := bytes.Clone(orig)
	patch := bytes.Repeat([]byte{0xab}, 5000)
	for _, off := range []int{0, 70000, 1<<20 - 5000} {
		if _, err := d.WriteAt(patch, int64(off)); err != nil {
			t.Fatal(err)
		}
		copy(want[off:], patch)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(base)
	if !bytes.Equal(got, orig) {
		t.Fatal("the read-only base changed")
	}
	qemuCheck(t, img)
	qemuCompare(t, img, want)
}
