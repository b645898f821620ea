package memdump

import (
	"bytes"
	"runtime"
	"testing"

	"github.com/chsnap/chsnap/formats"
)

// fuzzMemSize is the memory the fuzz targets load into: one full chunk and a
// 3-page tail chunk.
const fuzzMemSize = ChunkSize + 3*PageSize

// fuzzAllocLimit bounds what one Add+Finish may allocate, whatever the
// payload claims: decoder buffers and scratch, never a size read from it.
const fuzzAllocLimit = 24 << 20

// fuzzSeeds returns the sections of a dump of a fuzzMemSize memory with a
// few non-zero pages, so that seeds stay small and the fuzzer's minimisation
// quick: chunk 0 has two text pages and a byte pattern in between, the tail
// chunk one text page among zero pages.
func fuzzSeeds(f *testing.F) []formats.Section {
	m := newTestMemory(f, fuzzMemSize)
	fillPages(m, 5, func(pg int) pageKind {
		if pg == 3 || pg == 100 || pg == pagesPerChunk+1 {
			return pageText
		}
		return pageZero
	})
	for i := range PageSize {
		m.Bytes()[7*PageSize+i] = byte(i % 13)
	}
	archive, _ := dumpArchive(f, m, DumpOptions{})
	return readSections(f, archive)
}

// FuzzLoadChunk feeds one arbitrary memory-chunk payload (and, if withIndex,
// an index that lists that chunk as stored) to a Loader over a small memory.
// It checks that nothing panics, that no byte of RAM outside the chunk's own
// range is written, that allocation stays bounded, and that the load never
// succeeds (the other chunk is missing, or the index's hash is wrong).
func FuzzLoadChunk(f *testing.F) {
	secs := fuzzSeeds(f)
	for _, s := range secs {
		if s.Kind == formats.KindMemoryChunk {
			f.Add(s.ID, s.Payload, false)
			f.Add(s.ID, s.Payload, true)
		}
	}
	// A frame header that claims 1 GiB of content.
	huge := le.AppendUint64(nil, 0)
	huge = le.AppendUint32(huge, ChunkSize)
	huge = le.AppendUint32(huge, pagesPerChunk)
	huge = append(huge, make([]byte, pagesPerChunk/8)...)
	huge = append(huge, 0x28, 0xb5, 0x2f, 0xfd, 0xa0, 0, 0, 0, 0x40, 0x02, 0, 0)
	f.Add(uint32(0), huge, true)
	f.Add(uint32(1), []byte{}, false)

	mem := newTestMemory(f, fuzzMemSize)
	grid, err := chunkGrid(mem.Regions())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, id uint32, payload []byte, withIndex bool) {
		var before runtime.MemStats
		runtime.ReadMemStats(&before)

		l := NewLoader(mem, LoadOptions{Workers: 1})
		err := l.Add(formats.Section{Kind: formats.KindMemoryChunk, ID: id, Payload: payload})
		if err == nil && withIndex && int(id) < len(grid) {
			entries := make([]indexEntry, len(grid))
			for i, c := range grid {
				entries[i] = indexEntry{gpa: c.gpa, length: c.length, hash: zeroHashOf(c.length)}
			}
			entries[id].stored = true
			entries[id].compressed = uint32(len(payload) - chunkFrame(payload))
			entries[id].hash = 0 // no chunk of RAM hashes to 0 in practice
			l.Add(formats.Section{Kind: formats.KindMemoryIndex, Payload: encodeIndex(mem.Size(), mem.Regions(), entries)})
		}
		if _, err := l.Finish(); err == nil {
			t.Fatalf("load of chunk %d (index %v) succeeded", id, withIndex)
		}

		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > fuzzAllocLimit+uint64(len(payload)) {
			t.Errorf("Add+Finish of a %d-byte payload allocated %d bytes", len(payload), n)
		}
		// Nothing outside the chunk's range may be written.
		lo, hi := uint64(0), uint64(0)
		if int(id) < len(grid) {
			lo, hi = grid[id].off, grid[id].off+uint64(grid[id].length)
		}
		data := mem.Bytes()
		if !isZeroRange(data[:lo]) || !isZeroRange(data[hi:]) {
			t.Fatalf("chunk %d: RAM outside [%#x, %#x) was written", id, lo, hi)
		}
		clear(data[lo:hi])
	})
}

// FuzzLoadIndex feeds an arbitrary memory-index payload, after the valid
// chunks of a small dump, to a Loader.
func FuzzLoadIndex(f *testing.F) {
	secs := fuzzSeeds(f)
	var chunks []formats.Section
	for _, s := range secs {
		if s.Kind == formats.KindMemoryIndex {
			f.Add(s.Payload)
			p := bytes.Clone(s.Payload)
			p[indexEntryOff(p, 0)+20] ^= 1
			f.Add(p)
		} else {
			chunks = append(chunks, s)
		}
	}
	mem := newTestMemory(f, fuzzMemSize)
	f.Fuzz(func(t *testing.T, index []byte) {
		clear(mem.Bytes())
		l := NewLoader(mem, LoadOptions{Workers: 1})
		for _, s := range chunks {
			l.Add(s)
		}
		l.Add(formats.Section{Kind: formats.KindMemoryIndex, Payload: index})
		_, err := l.Finish()
		if err == nil {
			// Then the index must be, byte for byte, the one Dump wrote:
			// everything in it is checked against the memory and chunks.
			if !bytes.Equal(index, secs[len(secs)-1].Payload) {
				t.Fatalf("a different index of %d bytes was accepted", len(index))
			}
		}
	})
}

// isZeroRange reports whether b is all zero.
func isZeroRange(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), PageSize)
		if !isZeroPage(b[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}
