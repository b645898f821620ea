package memdump

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chsnap/chsnap/formats"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		size uint64
		kind func(pg int) pageKind
		// wantZeroChunks, if >= 0, is the number of all-zero chunks.
		wantZeroChunks int
	}{
		{"all-zero", 8 << 20, func(int) pageKind { return pageZero }, 4},
		{"all-random", 8 << 20, func(int) pageKind { return pageRandom }, 0},
		{"all-text", 8 << 20, func(int) pageKind { return pageText }, 0},
		{"half-zero-pages", 8 << 20, func(pg int) pageKind { return pageKind(pg % 2) }, 0},
		{"mix", 16 << 20, mixKind, 0},
		// Chunk 1 all zero, chunk 0 with zero pages at both ends (one run),
		// chunk 2 with zero pages in the middle (several runs).
		{"runs", 6 << 20, func(pg int) pageKind {
			switch {
			case pg < 512:
				return pageKind(b2i(pg >= 10 && pg < 500))
			case pg < 1024:
				return pageZero
			}
			return pageKind(b2i(pg%7 != 0)) * pageText
		}, 1},
		{"size-not-chunk-multiple", 6<<20 + 3*PageSize, mixKind, 0},
		{"one-page", PageSize, func(int) pageKind { return pageRandom }, 0},
		{"one-zero-page", PageSize, func(int) pageKind { return pageZero }, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newTestMemory(t, tt.size)
			fillPages(src, 1, tt.kind)
			var progress []uint64
			archive, dst := dumpArchive(t, src, DumpOptions{Workers: 3, Progress: func(done, total uint64) {
				if total != tt.size {
					t.Errorf("dump progress total %d, want %d", total, tt.size)
				}
				progress = append(progress, done)
			}})
			if n := len(progress); n == 0 || progress[n-1] != tt.size {
				t.Errorf("dump progress %v does not end at %d", progress, tt.size)
			}
			if dst.Bytes != tt.size || dst.ZeroBytes+dst.StoredBytes != tt.size {
				t.Errorf("dump stats %+v do not add up to %d bytes", dst, tt.size)
			}
			if tt.wantZeroChunks >= 0 && dst.ZeroChunks != tt.wantZeroChunks {
				t.Errorf("dump stats: %d zero chunks, want %d", dst.ZeroChunks, tt.wantZeroChunks)
			}
			secs := readSections(t, archive)
			if got := len(secs); got != dst.Chunks-dst.ZeroChunks+1 {
				t.Errorf("archive has %d sections, want %d chunks + index", got, dst.Chunks-dst.ZeroChunks)
			}
			if last := secs[len(secs)-1]; last.Kind != formats.KindMemoryIndex {
				t.Errorf("last section is %s, want the memory index", last.Kind)
			}

			for _, workers := range []int{1, 4} {
				dstMem := newTestMemory(t, tt.size)
				var last uint64
				lst, err := loadSections(dstMem, secs, LoadOptions{Workers: workers, Progress: func(done, total uint64) {
					last = done
				}})
				if err != nil {
					t.Fatalf("load with %d workers: %v", workers, err)
				}
				if !bytes.Equal(dstMem.Bytes(), src.Bytes()) {
					t.Fatalf("load with %d workers: restored RAM differs from the original", workers)
				}
				if lst != dst {
					t.Errorf("load stats %+v, dump stats %+v", lst, dst)
				}
				if last != tt.size {
					t.Errorf("load progress ended at %d, want %d", last, tt.size)
				}
			}
		})
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestDumpDeterministic(t *testing.T) {
	m := newTestMemory(t, 24<<20+5*PageSize)
	fillPages(m, 3, mixKind)
	want, _ := dumpArchive(t, m, DumpOptions{Workers: 1})
	for _, workers := range []int{2, 8, 0} {
		got, _ := dumpArchive(t, m, DumpOptions{Workers: workers})
		if !bytes.Equal(got, want) {
			t.Errorf("dump with %d workers differs from dump with 1 worker (%d vs %d bytes)", workers, len(got), len(want))
		}
	}
	// The level is part of the output; a different level gives other bytes
	// but the same RAM back.
	other, _ := dumpArchive(t, m, DumpOptions{Workers: 2, Level: 3})
	if bytes.Equal(other, want) {
		t.Errorf("level 3 gave the same bytes as level %d", DefaultLevel)
	}
	dst := newTestMemory(t, m.Size())
	if _, err := loadSections(dst, readSections(t, other), LoadOptions{}); err != nil {
		t.Fatalf("load level-3 dump: %v", err)
	}
	if !bytes.Equal(dst.Bytes(), m.Bytes()) {
		t.Fatalf("level-3 round trip differs")
	}
}

func TestDumpBadLevel(t *testing.T) {
	m := newTestMemory(t, PageSize)
	w, err := formats.NewWriter(&bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	for _, level := range []int{-1, 23} {
		if _, err := Dump(m, w, DumpOptions{Level: level}); err == nil {
			t.Errorf("Dump with level %d: no error", level)
		}
	}
}

// TestLayoutWithHole dumps a 5 GiB memory (3 GiB below the MMIO hole, 2 GiB
// above) in which only a few pages were written. The memfd stays sparse on
// both sides: Dump skips its holes instead of reading them, and the Loader
// writes only the stored pages.
func TestLayoutWithHole(t *testing.T) {
	const size = 5 << 30
	src := newTestMemory(t, size)
	regions := src.Regions()
	if len(regions) != 2 || regions[1].GPA != HighRAMBase {
		t.Fatalf("regions %+v, want two with the second at 4 GiB", regions)
	}
	touched := []uint64{0, 5 * PageSize, LowRAMLimit - PageSize, HighRAMBase, HighRAMBase + 123*ChunkSize + 7*PageSize, HighRAMBase + (size - LowRAMLimit) - PageSize}
	for i, gpa := range touched {
		page := bytes.Repeat([]byte{byte(i + 1)}, PageSize)
		copy(page, "page at gpa")
		if _, err := src.WriteAt(page, int64(gpa)); err != nil {
			t.Fatal(err)
		}
	}
	archive, st := dumpArchive(t, src, DumpOptions{})
	if want := len(touched) - 1; st.Chunks-st.ZeroChunks != want { // gpa 0 and 5 pages share chunk 0
		t.Errorf("%d chunks stored, want %d", st.Chunks-st.ZeroChunks, want)
	}
	if st.Chunks != size/ChunkSize {
		t.Errorf("%d chunks, want %d", st.Chunks, size/ChunkSize)
	}
	if got := dataBytes(src); got != uint64(len(touched))*PageSize {
		t.Errorf("after the dump the source memfd holds %d bytes of data, want %d: Dump read holes", got, len(touched)*PageSize)
	}
	if len(archive) > 1<<20 {
		t.Errorf("archive of a nearly empty 5 GiB memory is %d bytes", len(archive))
	}

	dst := newTestMemory(t, size)
	if _, err := loadSections(dst, readSections(t, archive), LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, gpa := range touched {
		a, _ := src.Slice(gpa, PageSize)
		b, _ := dst.Slice(gpa, PageSize)
		if !bytes.Equal(a, b) {
			t.Errorf("page at gpa %#x differs after the round trip", gpa)
		}
	}
	if got := dataBytes(dst); got != uint64(len(touched))*PageSize {
		t.Errorf("restored memfd holds %d bytes of data, want %d", got, len(touched)*PageSize)
	}
	// A memory of another size refuses the archive.
	other := newTestMemory(t, size-ChunkSize)
	if _, err := loadSections(other, readSections(t, archive), LoadOptions{}); err == nil {
		t.Errorf("archive of a 5 GiB memory loaded into %d bytes", other.Size())
	}
}

// dataBytes returns how many bytes of m's memfd are allocated (not holes).
func dataBytes(m *Memory) uint64 {
	var n uint64
	for _, r := range m.dataRuns(0, int64(m.Size()), nil) {
		n += uint64(r[1] - r[0])
	}
	return n
}

func TestDataRuns(t *testing.T) {
	m := newTestMemory(t, 64*PageSize)
	if runs := m.dataRuns(0, 64*PageSize, nil); len(runs) != 0 {
		t.Fatalf("fresh memory has data runs %v", runs)
	}
	m.Bytes()[3*PageSize] = 1
	m.Bytes()[4*PageSize+9] = 1
	m.Bytes()[40*PageSize] = 1
	got := m.dataRuns(PageSize, 60*PageSize, nil)
	want := [][2]int64{{3 * PageSize, 5 * PageSize}, {40 * PageSize, 41 * PageSize}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("dataRuns = %v, want %v", got, want)
	}
	if got := m.dataRuns(41*PageSize, 10*PageSize, nil); len(got) != 0 {
		t.Fatalf("dataRuns over a hole = %v", got)
	}
	// One scanner, asked about chunk-sized pieces in order and then again
	// from the start, gives the same runs as fresh scanners.
	h := newHoleScanner(m)
	var all [][2]int64
	for _, off := range []int64{0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 0} {
		all = h.runs(off*PageSize, 4*PageSize, all)
	}
	want = [][2]int64{{3 * PageSize, 4 * PageSize}, {4 * PageSize, 5 * PageSize}, {40 * PageSize, 41 * PageSize}, {3 * PageSize, 4 * PageSize}}
	if fmt.Sprint(all) != fmt.Sprint(want) {
		t.Fatalf("scanner runs = %v, want %v", all, want)
	}
}

// failingWriter fails every write after the first n bytes.
type failingWriter struct{ n int }

var errDiskFull = errors.New("disk full")

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, errDiskFull
	}
	w.n -= len(p)
	return len(p), nil
}

// TestDumpWriteError checks that a failing archive stops Dump with the
// writer's error, naming the chunk, and leaves no goroutine behind.
func TestDumpWriteError(t *testing.T) {
	m := newTestMemory(t, 32<<20)
	fillPages(m, 4, func(int) pageKind { return pageRandom })
	before := runtime.NumGoroutine()
	for _, limit := range []int{100, 3 << 20, 9 << 20} {
		w, err := formats.NewWriter(&failingWriter{n: limit})
		if err != nil {
			t.Fatal(err)
		}
		_, err = Dump(m, w, DumpOptions{Workers: 4})
		if !errors.Is(err, errDiskFull) {
			t.Fatalf("Dump into a writer failing after %d bytes: error %v, want %v", limit, err, errDiskFull)
		}
		if !strings.Contains(err.Error(), "memdump: write chunk") {
			t.Errorf("error %q does not name the chunk", err)
		}
	}
	// Goroutines exit before Dump returns; give the runtime a moment to
	// account for them.
	for range 100 {
		if runtime.NumGoroutine() <= before {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after failed dumps, %d before", n, before)
	}
}

func TestChunkGridLimit(t *testing.T) {
	// 64 TiB would need 32 Mi chunks: more than one index section holds.
	// The count is refused before anything is allocated for it.
	_, err := chunkGrid([]Region{{GPA: 0, Size: 64 << 40}})
	if err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("chunkGrid(64 TiB) error = %v, want a limit error", err)
	}
	max := maxChunksFor(1)
	if _, err := chunkGrid([]Region{{Size: max * ChunkSize}}); err != nil {
		t.Errorf("chunkGrid at the limit (%d chunks): %v", max, err)
	}
	if _, err := chunkGrid([]Region{{Size: max*ChunkSize + PageSize}}); err == nil {
		t.Errorf("chunkGrid one chunk over the limit: no error")
	}
	if got := indexFixedSize + indexRegionSize + indexEntrySize*max; got > formats.MaxSectionSize {
		t.Errorf("index at the limit is %d bytes, more than %d", got, formats.MaxSectionSize)
	}
}
