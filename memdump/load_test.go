package memdump

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/chsnap/chsnap/formats"
)

// rejectFixture is a small memory and its dump: chunk 0 mixed pages, chunk 1
// all zero, chunk 2 all random, chunk 3 a 3-page tail with text.
type rejectFixture struct {
	size uint64
	src  *Memory
	secs []formats.Section
}

func newRejectFixture(t *testing.T) rejectFixture {
	t.Helper()
	const size = 3*ChunkSize + 3*PageSize
	src := newTestMemory(t, size)
	fillPages(src, 9, func(pg int) pageKind {
		switch pg / pagesPerChunk {
		case 0:
			return mixKind(pg)
		case 1:
			return pageZero
		case 2:
			return pageRandom
		}
		return pageText
	})
	archive, st := dumpArchive(t, src, DumpOptions{Workers: 2})
	if st.Chunks != 4 || st.ZeroChunks != 1 {
		t.Fatalf("fixture: %d chunks, %d zero; want 4 and 1", st.Chunks, st.ZeroChunks)
	}
	return rejectFixture{size: size, src: src, secs: readSections(t, archive)}
}

// viaArchive writes secs into a fresh archive (so every section checksum is
// right for the bytes, corrupted or not) and reads them back.
func viaArchive(t *testing.T, secs []formats.Section) []formats.Section {
	t.Helper()
	var buf bytes.Buffer
	w, err := formats.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secs {
		if err := w.WriteSection(s.Kind, s.ID, s.Payload); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return readSections(t, buf.Bytes())
}

// chunkFrame returns the offset of the frame in a chunk payload.
func chunkFrame(p []byte) int {
	pages := int(le.Uint32(p[12:]))
	return chunkHeaderSize + (pages+7)/8
}

// nonZeroPages counts the pages a chunk payload's bitmap marks stored.
func nonZeroPages(p []byte) int {
	pages := int(le.Uint32(p[12:]))
	n := 0
	for pg := range pages {
		if p[chunkHeaderSize+pg/8]&(1<<(pg%8)) == 0 {
			n++
		}
	}
	return n
}

// indexEntryOff returns the offset of chunk i's entry in an index payload.
func indexEntryOff(p []byte, i int) int {
	nreg := int(le.Uint32(p[8:]))
	return indexFixedSize + indexRegionSize*nreg + indexEntrySize*i
}

// frameOf compresses data as Dump would.
func frameOf(t *testing.T, data []byte) []byte {
	t.Helper()
	enc, err := newEncoder(1)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(data, nil)
}

func TestLoadRejects(t *testing.T) {
	fx := newRejectFixture(t)
	const chunk0 = "memory-chunk 0 at gpa 0x0"
	const chunk3 = "memory-chunk 3 at gpa 0x600000"
	idx := func(secs []formats.Section) []byte {
		return secs[sectionOf(t, secs, formats.KindMemoryIndex, 0)].Payload
	}
	chunk := func(secs []formats.Section, id uint32) []byte {
		return secs[sectionOf(t, secs, formats.KindMemoryChunk, id)].Payload
	}
	// setChunk replaces a chunk's payload and keeps the index's frame
	// length in step, so that the chunk itself is what gets refused.
	setChunk := func(secs []formats.Section, id uint32, p []byte) {
		secs[sectionOf(t, secs, formats.KindMemoryChunk, id)].Payload = p
		if len(p) > chunkHeaderSize {
			ix := idx(secs)
			le.PutUint32(ix[indexEntryOff(ix, int(id))+16:], uint32(max(0, len(p)-chunkFrame(p))))
		}
	}
	drop := func(secs []formats.Section, kind formats.SectionKind, id uint32) []formats.Section {
		i := sectionOf(t, secs, kind, id)
		return append(secs[:i:i], secs[i+1:]...)
	}
	tests := []struct {
		name   string
		mutate func([]formats.Section) []formats.Section
		want   error  // sentinel; nil means any error
		msg    string // substring of the message
	}{
		{"bitmap-bit-flipped", func(s []formats.Section) []formats.Section {
			chunk(s, 0)[chunkHeaderSize+3] ^= 0x10
			return s
		}, formats.ErrCorrupt, chunk0},
		{"frame-truncated", func(s []formats.Section) []formats.Section {
			p := chunk(s, 0)
			setChunk(s, 0, p[:len(p)-7])
			return s
		}, formats.ErrCorrupt, chunk0},
		{"frame-decodes-long", func(s []formats.Section) []formats.Section {
			p := chunk(s, 3)
			n := 4 * PageSize // the tail chunk has 3 non-zero pages
			setChunk(s, 3, append(p[:chunkFrame(p):chunkFrame(p)], frameOf(t, bytes.Repeat([]byte("x"), n))...))
			return s
		}, formats.ErrCorrupt, chunk3},
		{"frame-decodes-short", func(s []formats.Section) []formats.Section {
			p := chunk(s, 3)
			setChunk(s, 3, append(p[:chunkFrame(p):chunkFrame(p)], frameOf(t, bytes.Repeat([]byte("x"), 2*PageSize))...))
			return s
		}, formats.ErrCorrupt, chunk3},
		{"frame-decodes-short-with-zero-pages", func(s []formats.Section) []formats.Section {
			p := chunk(s, 0)
			n := (nonZeroPages(p) - 1) * PageSize
			setChunk(s, 0, append(p[:chunkFrame(p):chunkFrame(p)], frameOf(t, bytes.Repeat([]byte("y"), n))...))
			return s
		}, formats.ErrCorrupt, chunk0 + ": frame decodes to"},
		{"frame-decodes-long-with-zero-pages", func(s []formats.Section) []formats.Section {
			p := chunk(s, 0)
			n := (nonZeroPages(p) + 1) * PageSize
			setChunk(s, 0, append(p[:chunkFrame(p):chunkFrame(p)], frameOf(t, bytes.Repeat([]byte("y"), n))...))
			return s
		}, formats.ErrCorrupt, chunk0 + ": decode frame"},
		{"frame-missing", func(s []formats.Section) []formats.Section {
			p := chunk(s, 0)
			setChunk(s, 0, p[:chunkFrame(p)])
			return s
		}, formats.ErrCorrupt, chunk0},
		{"frame-not-zstd", func(s []formats.Section) []formats.Section {
			p := chunk(s, 0)
			setChunk(s, 0, append(p[:chunkFrame(p):chunkFrame(p)], "not a zstd frame"...))
			return s
		}, formats.ErrCorrupt, chunk0},
		{"header-gpa", func(s []formats.Section) []formats.Section {
			le.PutUint64(chunk(s, 0), PageSize)
			return s
		}, formats.ErrCorrupt, chunk0},
		{"header-length", func(s []formats.Section) []formats.Section {
			le.PutUint32(chunk(s, 3)[8:], 4*PageSize)
			return s
		}, formats.ErrCorrupt, chunk3},
		{"header-pages", func(s []formats.Section) []formats.Section {
			le.PutUint32(chunk(s, 0)[12:], 1)
			return s
		}, formats.ErrCorrupt, chunk0},
		{"header-short", func(s []formats.Section) []formats.Section {
			setChunk(s, 0, chunk(s, 0)[:10])
			return s
		}, formats.ErrCorrupt, chunk0},
		{"bitmap-bits-past-last-page", func(s []formats.Section) []formats.Section {
			chunk(s, 3)[chunkHeaderSize] |= 0x80
			return s
		}, formats.ErrCorrupt, chunk3},
		{"bitmap-all-zero-pages", func(s []formats.Section) []formats.Section {
			chunk(s, 3)[chunkHeaderSize] = 0x07
			return s
		}, formats.ErrCorrupt, chunk3},
		{"chunk-id-out-of-range", func(s []formats.Section) []formats.Section {
			s[sectionOf(t, s, formats.KindMemoryChunk, 2)].ID = 4
			return s
		}, formats.ErrCorrupt, "memory-chunk 4: configured memory has only 4 chunks"},
		{"chunk-id-swapped", func(s []formats.Section) []formats.Section {
			s[sectionOf(t, s, formats.KindMemoryChunk, 2)].ID = 1
			return s
		}, formats.ErrCorrupt, "memory-chunk 1 at gpa 0x200000"},
		{"chunk-missing", func(s []formats.Section) []formats.Section {
			return drop(s, formats.KindMemoryChunk, 2)
		}, formats.ErrCorrupt, "memory-chunk 2 at gpa 0x400000 is missing"},
		{"chunk-duplicate", func(s []formats.Section) []formats.Section {
			i := sectionOf(t, s, formats.KindMemoryChunk, 0)
			return append(s[:i+1:i+1], s[i:]...)
		}, formats.ErrCorrupt, chunk0 + ": duplicate chunk"},
		{"index-missing", func(s []formats.Section) []formats.Section {
			return drop(s, formats.KindMemoryIndex, 0)
		}, formats.ErrCorrupt, "no memory-index"},
		{"index-duplicate", func(s []formats.Section) []formats.Section {
			return append(s, s[len(s)-1])
		}, formats.ErrCorrupt, "duplicate memory-index"},
		{"index-id", func(s []formats.Section) []formats.Section {
			s[len(s)-1].ID = 1
			return s
		}, formats.ErrCorrupt, "memory-index has id 1"},
		{"index-memory-size", func(s []formats.Section) []formats.Section {
			le.PutUint64(idx(s), fx.size+ChunkSize)
			return s
		}, formats.ErrCorrupt, fmt.Sprintf("memory size %d", fx.size+ChunkSize)},
		{"index-region-count", func(s []formats.Section) []formats.Section {
			le.PutUint32(idx(s)[8:], 2)
			return s
		}, formats.ErrCorrupt, "2 regions"},
		{"index-region-size", func(s []formats.Section) []formats.Section {
			le.PutUint64(idx(s)[20:], fx.size-PageSize)
			return s
		}, formats.ErrCorrupt, "region 0"},
		{"index-chunk-count", func(s []formats.Section) []formats.Section {
			p := idx(s)
			le.PutUint32(p[indexEntryOff(p, 0)-4:], 5)
			return s
		}, formats.ErrCorrupt, "5 chunks"},
		{"index-truncated", func(s []formats.Section) []formats.Section {
			s[len(s)-1].Payload = idx(s)[:len(idx(s))-1]
			return s
		}, formats.ErrCorrupt, "memory index"},
		{"index-entry-gpa", func(s []formats.Section) []formats.Section {
			p := idx(s)
			le.PutUint64(p[indexEntryOff(p, 2):], 0)
			return s
		}, formats.ErrCorrupt, "chunk 2 covers"},
		{"index-hash", func(s []formats.Section) []formats.Section {
			p := idx(s)
			p[indexEntryOff(p, 0)+20] ^= 1
			return s
		}, formats.ErrChecksum, chunk0 + ": xxhash64"},
		{"index-zero-chunk-hash", func(s []formats.Section) []formats.Section {
			p := idx(s)
			p[indexEntryOff(p, 1)+20] ^= 1
			return s
		}, formats.ErrChecksum, "chunk 1 at gpa 0x200000 is all zero"},
		{"index-says-all-zero", func(s []formats.Section) []formats.Section {
			p := idx(s)
			e := p[indexEntryOff(p, 0):]
			e[12] = 0
			le.PutUint32(e[16:], 0)
			le.PutUint64(e[20:], hashZeros(ChunkSize))
			return s
		}, formats.ErrCorrupt, chunk0 + ": the index says the chunk is all zero"},
		{"index-says-stored", func(s []formats.Section) []formats.Section {
			p := idx(s)
			e := p[indexEntryOff(p, 1):]
			e[12] = 1
			le.PutUint32(e[16:], 100)
			return s
		}, formats.ErrCorrupt, "memory-chunk 1 at gpa 0x200000 is missing"},
		{"index-compressed-length", func(s []formats.Section) []formats.Section {
			p := idx(s)
			e := p[indexEntryOff(p, 2):]
			le.PutUint32(e[16:], le.Uint32(e[16:])+1)
			return s
		}, formats.ErrCorrupt, "memory-chunk 2 at gpa 0x400000: frame is"},
		{"index-stored-flag", func(s []formats.Section) []formats.Section {
			p := idx(s)
			p[indexEntryOff(p, 0)+12] = 2
			return s
		}, formats.ErrCorrupt, "stored flag 2"},
		{"index-reserved", func(s []formats.Section) []formats.Section {
			p := idx(s)
			p[indexEntryOff(p, 3)+14] = 1
			return s
		}, formats.ErrCorrupt, "reserved"},
		{"not-a-memory-section", func(s []formats.Section) []formats.Section {
			return append(s, formats.Section{Kind: formats.KindConfig, Payload: []byte("{}")})
		}, nil, "config 0 is not a memory section"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secs := viaArchive(t, tt.mutate(cloneSections(fx.secs)))
			dst := newTestMemory(t, fx.size)
			_, err := loadSections(dst, secs, LoadOptions{Workers: 2})
			if err == nil {
				t.Fatalf("load succeeded, want an error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error %q does not wrap %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
		})
	}
}

// TestLoadFrameBitFlips flips single bits all over the frames of a stored
// chunk of each kind (mixed, random, text tail): every flip is refused,
// either as a frame that does not decode to its size (ErrCorrupt) or as
// restored bytes whose xxhash64 differs from the index (ErrChecksum).
func TestLoadFrameBitFlips(t *testing.T) {
	fx := newRejectFixture(t)
	dst := newTestMemory(t, fx.size)
	for _, id := range []uint32{0, 2, 3} {
		p := fx.secs[sectionOf(t, fx.secs, formats.KindMemoryChunk, id)].Payload
		start := chunkFrame(p)
		step := max(1, (len(p)-start)/23)
		for off := start; off < len(p); off += step {
			for _, bit := range []byte{0x01, 0x80} {
				secs := cloneSections(fx.secs)
				secs[sectionOf(t, secs, formats.KindMemoryChunk, id)].Payload[off] ^= bit
				clear(dst.Bytes())
				_, err := loadSections(dst, viaArchive(t, secs), LoadOptions{Workers: 2})
				if err == nil {
					t.Fatalf("chunk %d: bit %#x flipped at payload byte %d: load succeeded", id, bit, off)
				}
				if !errors.Is(err, formats.ErrCorrupt) && !errors.Is(err, formats.ErrChecksum) {
					t.Errorf("chunk %d: flip at %d: error %q wraps neither ErrCorrupt nor ErrChecksum", id, off, err)
				}
				if want := fmt.Sprintf("memory-chunk %d at gpa %#x", id, uint64(id)*ChunkSize); !strings.Contains(err.Error(), want) {
					t.Errorf("chunk %d: flip at %d: error %q does not name %q", id, off, err, want)
				}
			}
		}
	}
}

// TestLoadOrders loads the chunks in other orders than Dump writes them.
func TestLoadOrders(t *testing.T) {
	fx := newRejectFixture(t)
	n := len(fx.secs)
	orders := map[string][]formats.Section{
		"index-first": append([]formats.Section{fx.secs[n-1]}, fx.secs[:n-1]...),
		"reversed":    nil,
		"index-middle": append(append(append([]formats.Section{}, fx.secs[:1]...), fx.secs[n-1]),
			fx.secs[1:n-1]...),
	}
	for i := n - 1; i >= 0; i-- {
		orders["reversed"] = append(orders["reversed"], fx.secs[i])
	}
	for name, secs := range orders {
		t.Run(name, func(t *testing.T) {
			dst := newTestMemory(t, fx.size)
			if _, err := loadSections(dst, secs, LoadOptions{Workers: 3}); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dst.Bytes(), fx.src.Bytes()) {
				t.Fatal("restored RAM differs")
			}
		})
	}
}

func TestLoaderMisuse(t *testing.T) {
	fx := newRejectFixture(t)
	dst := newTestMemory(t, fx.size)
	l := NewLoader(dst, LoadOptions{})
	for _, s := range fx.secs {
		if err := l.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Finish(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Finish(); err == nil {
		t.Error("second Finish: no error")
	}
	if err := l.Add(fx.secs[0]); err == nil {
		t.Error("Add after Finish: no error")
	}
	// After a failed Add, later Adds keep failing and Finish reports it.
	l = NewLoader(newTestMemory(t, fx.size), LoadOptions{})
	if err := l.Add(formats.Section{Kind: formats.KindMemoryChunk, ID: 99}); err == nil {
		t.Fatal("Add of chunk 99: no error")
	}
	if err := l.Add(fx.secs[0]); err == nil {
		t.Error("Add after a failed Add: no error")
	}
	if _, err := l.Finish(); err == nil {
		t.Error("Finish after a failed Add: no error")
	}
}
