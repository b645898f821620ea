package memdump

import (
	"flag"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/chsnap/chsnap/formats"
	"github.com/klauspost/compress/zstd"
)

var benchSize = flag.Uint64("memdump.benchsize", 256<<20, "bytes of guest RAM in the memdump benchmarks")

// benchPatterns are the memory contents benchmarked: the mix (half
// zero pages, a quarter text-like, a quarter random), all random, and all
// zero pages that were written (so the memfd has no holes to skip).
var benchPatterns = []struct {
	name string
	kind func(pg int) pageKind
}{
	{"mix", mixKind},
	{"random", func(int) pageKind { return pageRandom }},
	{"zero", func(int) pageKind { return pageZero }},
}

var (
	benchMemMu sync.Mutex
	benchMem   = map[string]*Memory{}
)

// benchMemory returns the memory for a pattern, built once per process.
func benchMemory(b *testing.B, name string, kind func(int) pageKind) *Memory {
	benchMemMu.Lock()
	defer benchMemMu.Unlock()
	if m, ok := benchMem[name]; ok {
		return m
	}
	m, err := New("memdump-bench", *benchSize)
	if err != nil {
		b.Fatal(err)
	}
	fillPages(m, 11, kind)
	benchMem[name] = m
	return m
}

func BenchmarkDump(b *testing.B) {
	for _, p := range benchPatterns {
		for _, bc := range []struct {
			name           string
			workers, level int
		}{
			{"w1", 1, 0}, {"wmax", 0, 0}, {"w1-level3", 1, 3}, {"wmax-level3", 0, 3},
		} {
			b.Run(p.name+"/"+bc.name, func(b *testing.B) {
				m := benchMemory(b, p.name, p.kind)
				b.SetBytes(int64(m.Size()))
				b.ReportAllocs()
				var st DumpStats
				b.ResetTimer()
				for b.Loop() {
					w, err := formats.NewWriter(io.Discard)
					if err != nil {
						b.Fatal(err)
					}
					if st, err = Dump(m, w, DumpOptions{Workers: bc.workers, Level: bc.level}); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(st.CompressedBytes)/float64(st.Bytes), "ratio")
			})
		}
	}
}

func BenchmarkLoad(b *testing.B) {
	for _, p := range benchPatterns {
		for _, bc := range []struct {
			name    string
			workers int
			warm    bool
		}{{"w1", 1, false}, {"wmax", 0, false}, {"w1-warm", 1, true}, {"wmax-warm", 0, true}} {
			b.Run(p.name+"/"+bc.name, func(b *testing.B) {
				src := benchMemory(b, p.name, p.kind)
				archive, _ := dumpArchive(b, src, DumpOptions{})
				secs := readSections(b, archive)
				b.SetBytes(int64(src.Size()))
				b.ReportAllocs()
				// Warm: load again and again into one memory, already faulted
				// in (it holds the same bytes, so the hashes still match):
				// decoding and hashing alone. Otherwise a fresh memory each
				// time, as at restore, whose page faults are part of the cost.
				var warm *Memory
				if bc.warm {
					warm = newTestMemory(b, src.Size())
					if _, err := loadSections(warm, secs, LoadOptions{}); err != nil {
						b.Fatal(err)
					}
				}
				b.ResetTimer()
				for b.Loop() {
					dst := warm
					if dst == nil {
						b.StopTimer()
						var err error
						if dst, err = New("memdump-bench-load", src.Size()); err != nil {
							b.Fatal(err)
						}
						b.StartTimer()
					}
					if _, err := loadSections(dst, secs, LoadOptions{Workers: bc.workers}); err != nil {
						b.Fatal(err)
					}
					if warm == nil {
						b.StopTimer()
						dst.Close()
						b.StartTimer()
					}
				}
			})
		}
	}
}

// BenchmarkZstdRaw compresses the same bytes, zero pages included, in
// ChunkSize pieces on one core: the host's single-core zstd limit.
func BenchmarkZstdRaw(b *testing.B) {
	for _, p := range benchPatterns {
		for _, level := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault} {
			b.Run(fmt.Sprintf("%s/%s", p.name, level), func(b *testing.B) {
				m := benchMemory(b, p.name, p.kind)
				enc, err := newEncoder(level)
				if err != nil {
					b.Fatal(err)
				}
				defer enc.Close()
				data := m.Bytes()
				out := make([]byte, 0, ChunkSize+ChunkSize/8)
				var n int
				b.SetBytes(int64(len(data)))
				b.ResetTimer()
				for b.Loop() {
					n = 0
					for off := 0; off < len(data); off += ChunkSize {
						out = enc.EncodeAll(data[off:min(off+ChunkSize, len(data))], out[:0])
						n += len(out)
					}
				}
				b.ReportMetric(float64(n)/float64(len(data)), "ratio")
			})
		}
	}
}

// BenchmarkZstdRawDecode decodes those pieces on one core.
func BenchmarkZstdRawDecode(b *testing.B) {
	for _, p := range benchPatterns {
		b.Run(p.name, func(b *testing.B) {
			m := benchMemory(b, p.name, p.kind)
			enc, err := newEncoder(zstd.SpeedFastest)
			if err != nil {
				b.Fatal(err)
			}
			data := m.Bytes()
			var frames [][]byte
			for off := 0; off < len(data); off += ChunkSize {
				frames = append(frames, enc.EncodeAll(data[off:min(off+ChunkSize, len(data))], nil))
			}
			enc.Close()
			dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
			if err != nil {
				b.Fatal(err)
			}
			defer dec.Close()
			out := make([]byte, 0, ChunkSize)
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for b.Loop() {
				for _, f := range frames {
					if out, err = dec.DecodeAll(f, out[:0]); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkMemcpy copies the memory into a buffer that is already faulted
// in, and into fresh memfd memory: the host's copy limits.
func BenchmarkMemcpy(b *testing.B) {
	m := benchMemory(b, benchPatterns[0].name, benchPatterns[0].kind)
	b.Run("warm", func(b *testing.B) {
		dst := make([]byte, m.Size())
		copy(dst, m.Bytes())
		b.SetBytes(int64(m.Size()))
		b.ResetTimer()
		for b.Loop() {
			copy(dst, m.Bytes())
		}
	})
	b.Run("fresh-memfd", func(b *testing.B) {
		b.SetBytes(int64(m.Size()))
		for b.Loop() {
			b.StopTimer()
			dst, err := New("memdump-bench-copy", m.Size())
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			copy(dst.Bytes(), m.Bytes())
			b.StopTimer()
			dst.Close()
			b.StartTimer()
		}
	})
}
