package disk

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

const benchSize = 64 << 20

// benchImage creates a benchmark image of the given format, filled with
// data so reads hit allocated clusters.
func benchImage(b *testing.B, format string) string {
	b.Helper()
	dir := b.TempDir()
	rawPath := filepath.Join(dir, "bench.raw")
	f, err := os.Create(rawPath)
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i*7 + 1)
	}
	for off := 0; off < benchSize; off += len(chunk) {
		f.Write(chunk)
	}
	f.Close()
	if format == FormatRaw {
		return rawPath
	}
	needQemu(b)
	img := filepath.Join(dir, "bench.qcow2")
	run(b, "qemu-img", "convert", "-O", "qcow2", rawPath, img)
	return img
}

func benchIO(b *testing.B, format string, write, random bool) {
	p := benchImage(b, format)
	d, err := Open(p, OpenOptions{ReadOnly: !write})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	buf := make([]byte, 4096)
	r := rand.New(rand.NewPCG(1, 1))
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	var off int64
	for i := 0; i < b.N; i++ {
		if random {
			off = int64(r.IntN(benchSize/4096)) * 4096
		} else {
			off = int64(i%(benchSize/4096)) * 4096
		}
		if write {
			_, err = d.WriteAt(buf, off)
		} else {
			_, err = d.ReadAt(buf, off)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRawSeqRead4K(b *testing.B)     { benchIO(b, FormatRaw, false, false) }
func BenchmarkRawRandRead4K(b *testing.B)    { benchIO(b, FormatRaw, false, true) }
func BenchmarkRawSeqWrite4K(b *testing.B)    { benchIO(b, FormatRaw, true, false) }
func BenchmarkRawRandWrite4K(b *testing.B)   { benchIO(b, FormatRaw, true, true) }
func BenchmarkQcow2SeqRead4K(b *testing.B)   { benchIO(b, FormatQcow2, false, false) }
func BenchmarkQcow2RandRead4K(b *testing.B)  { benchIO(b, FormatQcow2, false, true) }
func BenchmarkQcow2SeqWrite4K(b *testing.B)  { benchIO(b, FormatQcow2, true, false) }
func BenchmarkQcow2RandWrite4K(b *testing.B) { benchIO(b, FormatQcow2, true, true) }

// BenchmarkQcow2AllocWrite4K measures 4 KiB writes into an empty image,
// each to a new cluster: the allocation path (refcount, data, L2, L1).
func BenchmarkQcow2AllocWrite4K(b *testing.B) {
	needQemu(b)
	p := filepath.Join(b.TempDir(), "empty.qcow2")
	run(b, "qemu-img", "create", "-f", "qcow2", p, "64G")
	d, err := Open(p, OpenOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	buf := make([]byte, 4096)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.WriteAt(buf, int64(i)*65536); err != nil {
			b.Fatal(err)
		}
	}
}
