package memdump

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/cespare/xxhash/v2"
	"github.com/chsnap/chsnap/formats"
)

// ChunkSize is the span of guest-physical address space one memory-chunk
// section covers. The last chunk of a region may be shorter.
const ChunkSize = 2 << 20

// pagesPerChunk is the number of PageSize pages in a full chunk.
const pagesPerChunk = ChunkSize / PageSize

// Byte sizes of the binary memory payloads (formats/SPEC.md lays them out).
const (
	chunkHeaderSize  = 16 // gpa u64 · length u32 · page count u32
	indexFixedSize   = 16 // memory size u64 · region count u32 · chunk count u32
	indexRegionSize  = 16 // gpa u64 · size u64
	indexEntrySize   = 28 // gpa u64 · length u32 · stored u8 · reserved [3] · compressed length u32 · xxhash64 u64
	indexStoredZero  = 0
	indexStoredFrame = 1
)

var le = binary.LittleEndian

// chunkRef is one chunk of the chunk grid: every chunk of guest RAM, stored
// or not, in chunk-number order.
type chunkRef struct {
	gpa    uint64
	off    uint64 // offset of gpa in the memfd
	length uint32
}

// pages returns the number of PageSize pages the chunk covers.
func (c chunkRef) pages() int { return int(c.length / PageSize) }

// maxChunksFor returns the largest chunk count an index for nregions regions
// can hold without exceeding formats.MaxSectionSize.
func maxChunksFor(nregions int) uint64 {
	fixed := uint64(indexFixedSize + indexRegionSize*nregions)
	if fixed >= formats.MaxSectionSize {
		return 0
	}
	return (formats.MaxSectionSize - fixed) / indexEntrySize
}

// chunkGrid cuts regions into chunks of at most ChunkSize bytes, numbered in
// address order across regions. It refuses a memory whose index would not
// fit in one section; the count is checked before anything is allocated.
func chunkGrid(regions []Region) ([]chunkRef, error) {
	var n uint64
	for _, r := range regions {
		if r.Size%PageSize != 0 || r.GPA%PageSize != 0 {
			return nil, fmt.Errorf("memdump: region [%#x, +%#x) is not page aligned", r.GPA, r.Size)
		}
		n += (r.Size + ChunkSize - 1) / ChunkSize
	}
	if max := maxChunksFor(len(regions)); n > max {
		return nil, fmt.Errorf("memdump: memory needs %d chunks, more than the %d one index section can describe", n, max)
	}
	grid := make([]chunkRef, 0, n)
	for _, r := range regions {
		for off := uint64(0); off < r.Size; off += ChunkSize {
			l := min(r.Size-off, ChunkSize)
			grid = append(grid, chunkRef{gpa: r.GPA + off, off: r.Offset + off, length: uint32(l)})
		}
	}
	return grid, nil
}

// indexEntry is one chunk's line in the memory index.
type indexEntry struct {
	gpa        uint64
	length     uint32
	stored     bool
	compressed uint32 // length of the zstd frame; 0 when not stored
	hash       uint64 // xxhash64 of the chunk's length bytes of RAM
}

// encodeIndex builds the memory-index payload.
func encodeIndex(size uint64, regions []Region, entries []indexEntry) []byte {
	b := make([]byte, 0, indexFixedSize+indexRegionSize*len(regions)+indexEntrySize*len(entries))
	b = le.AppendUint64(b, size)
	b = le.AppendUint32(b, uint32(len(regions)))
	for _, r := range regions {
		b = le.AppendUint64(b, r.GPA)
		b = le.AppendUint64(b, r.Size)
	}
	b = le.AppendUint32(b, uint32(len(entries)))
	for _, e := range entries {
		b = le.AppendUint64(b, e.gpa)
		b = le.AppendUint32(b, e.length)
		stored := byte(indexStoredZero)
		if e.stored {
			stored = indexStoredFrame
		}
		b = append(b, stored, 0, 0, 0)
		b = le.AppendUint32(b, e.compressed)
		b = le.AppendUint64(b, e.hash)
	}
	return b
}

// decodeIndex parses a memory-index payload and checks it against the
// memory it is loaded into: same size, same regions, the same chunk grid.
// It allocates nothing sized by the payload: the entries slice has the
// length of grid, which comes from the configured memory.
func decodeIndex(p []byte, size uint64, regions []Region, grid []chunkRef) ([]indexEntry, error) {
	if len(p) < indexFixedSize {
		return nil, fmt.Errorf("memory index: %d bytes is shorter than its %d-byte header: %w", len(p), indexFixedSize, formats.ErrCorrupt)
	}
	if got := le.Uint64(p); got != size {
		return nil, fmt.Errorf("memory index: memory size %d (%#x) does not match the configured %d (%#x): %w", got, got, size, size, formats.ErrCorrupt)
	}
	nreg := le.Uint32(p[8:])
	if uint64(nreg) != uint64(len(regions)) {
		return nil, fmt.Errorf("memory index: %d regions, configured memory has %d: %w", nreg, len(regions), formats.ErrCorrupt)
	}
	want := indexFixedSize + indexRegionSize*len(regions) + indexEntrySize*len(grid)
	off := 12
	for i, r := range regions {
		if len(p) < off+indexRegionSize {
			return nil, fmt.Errorf("memory index: truncated in region %d: %w", i, formats.ErrCorrupt)
		}
		gpa, sz := le.Uint64(p[off:]), le.Uint64(p[off+8:])
		if gpa != r.GPA || sz != r.Size {
			return nil, fmt.Errorf("memory index: region %d is [%#x, +%#x), configured memory has [%#x, +%#x): %w", i, gpa, sz, r.GPA, r.Size, formats.ErrCorrupt)
		}
		off += indexRegionSize
	}
	if len(p) < off+4 {
		return nil, fmt.Errorf("memory index: truncated before the chunk count: %w", formats.ErrCorrupt)
	}
	if n := le.Uint32(p[off:]); uint64(n) != uint64(len(grid)) {
		return nil, fmt.Errorf("memory index: %d chunks, configured memory has %d: %w", n, len(grid), formats.ErrCorrupt)
	}
	off += 4
	if len(p) != want {
		return nil, fmt.Errorf("memory index: %d bytes, want %d for %d regions and %d chunks: %w", len(p), want, len(regions), len(grid), formats.ErrCorrupt)
	}
	entries := make([]indexEntry, len(grid))
	for i, c := range grid {
		q := p[off : off+indexEntrySize]
		off += indexEntrySize
		e := indexEntry{
			gpa:        le.Uint64(q),
			length:     le.Uint32(q[8:]),
			compressed: le.Uint32(q[16:]),
			hash:       le.Uint64(q[20:]),
		}
		if e.gpa != c.gpa || e.length != c.length {
			return nil, fmt.Errorf("memory index: chunk %d covers [%#x, +%#x), configured memory has [%#x, +%#x): %w", i, e.gpa, e.length, c.gpa, c.length, formats.ErrCorrupt)
		}
		if q[13] != 0 || q[14] != 0 || q[15] != 0 {
			return nil, fmt.Errorf("memory index: chunk %d at gpa %#x: reserved bytes are not zero: %w", i, c.gpa, formats.ErrCorrupt)
		}
		switch q[12] {
		case indexStoredZero:
			if e.compressed != 0 {
				return nil, fmt.Errorf("memory index: chunk %d at gpa %#x is all zero but has compressed length %d: %w", i, c.gpa, e.compressed, formats.ErrCorrupt)
			}
			if z := zeroHashOf(c.length); e.hash != z {
				return nil, fmt.Errorf("memory index: chunk %d at gpa %#x is all zero but its hash is %#x, want %#x: %w", i, c.gpa, e.hash, z, formats.ErrChecksum)
			}
		case indexStoredFrame:
			e.stored = true
			if e.compressed == 0 {
				return nil, fmt.Errorf("memory index: chunk %d at gpa %#x is stored with compressed length 0: %w", i, c.gpa, formats.ErrCorrupt)
			}
		default:
			return nil, fmt.Errorf("memory index: chunk %d at gpa %#x: stored flag %d is neither 0 nor 1: %w", i, c.gpa, q[12], formats.ErrCorrupt)
		}
		entries[i] = e
	}
	return entries, nil
}

// hashZeros returns the xxhash64 of n zero bytes.
func hashZeros(n uint32) uint64 {
	d := xxhash.New()
	for left := n; left > 0; {
		k := min(left, PageSize)
		d.Write(zeroPage[:k])
		left -= k
	}
	return d.Sum64()
}

// zeroPage is one page of zeros to compare and hash against.
var zeroPage [PageSize]byte

// isZeroPage reports whether p (at most PageSize bytes) is all zero.
// bytes.Equal runs the runtime's vectorised memequal.
func isZeroPage(p []byte) bool {
	return bytes.Equal(p, zeroPage[:len(p)])
}

// hashChunk returns the xxhash64 of a chunk's bytes. Pages the bitmap marks
// zero are hashed from zeroPage rather than read, so that hashing never
// touches (and so never allocates) a hole in the memfd.
func hashChunk(ram, bitmap []byte, zeroPages int) uint64 {
	if zeroPages == 0 {
		return xxhash.Sum64(ram)
	}
	d := xxhash.New()
	for pg := 0; pg*PageSize < len(ram); pg++ {
		if bitmap[pg/8]&(1<<(pg%8)) != 0 {
			d.Write(zeroPage[:])
		} else {
			d.Write(ram[pg*PageSize : (pg+1)*PageSize])
		}
	}
	return d.Sum64()
}
