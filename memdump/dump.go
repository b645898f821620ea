package memdump

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/chsnap/chsnap/formats"
	"github.com/klauspost/compress/zstd"
)

// DefaultLevel is the zstd level Dump uses when DumpOptions.Level is 0. It
// maps to zstd.SpeedFastest. On the benchmark mix (half zero pages,
// a quarter text-like, a quarter random) level 3 (SpeedDefault) makes the
// memory 2.8% smaller (ratio 0.262 against 0.269) at less than half the speed
// (BenchmarkDump/mix: 340 against 780 MB/s on one core), and a save is
// bounded by that speed, not by the archive size.
const DefaultLevel = 1

// DumpOptions tunes Dump. The zero value gives the defaults.
type DumpOptions struct {
	// Workers is the number of chunks compressed in parallel; 0 means
	// runtime.GOMAXPROCS(0). The output does not depend on it.
	Workers int
	// Level is a zstd compression level as the zstd tool counts them
	// (1–22), mapped by zstd.EncoderLevelFromZstd to the four speeds
	// klauspost/compress implements (1–2 fastest, 3–5 default, 6–9 better,
	// 10–22 best); 0 means DefaultLevel. The output depends on it.
	Level int
	// Progress, if set, is called from Dump's goroutine after each chunk
	// with the bytes of RAM handled so far and the total.
	Progress func(done, total uint64)
}

// DumpStats describes a dump (or, from Loader.Finish, a load).
type DumpStats struct {
	// Bytes is the size of guest RAM.
	Bytes uint64
	// ZeroBytes is the RAM in all-zero pages, which is not stored.
	ZeroBytes uint64
	// StoredBytes is the RAM in non-zero pages, which goes into frames.
	StoredBytes uint64
	// CompressedBytes is the total of the memory-chunk payloads (headers,
	// bitmaps and frames), without the archive's section framing.
	CompressedBytes uint64
	// Chunks is the number of chunks of RAM; ZeroChunks of them were all
	// zero and have no section.
	Chunks, ZeroChunks int
}

// dumpSlot holds one chunk's result between its worker and the in-order
// writer. Slot i%window belongs to chunk i; the window guarantees chunk
// i-window has been written before chunk i is handed out.
type dumpSlot struct {
	done      chan struct{} // one token per chunk, sent by the worker
	runs      [][2]int64    // the chunk's data runs in the memfd, set by the producer
	payload   []byte        // section payload, reused across generations
	entry     indexEntry
	zeroPages int
	err       error
}

// dumpWorker owns one encoder and one gather buffer.
type dumpWorker struct {
	enc     *zstd.Encoder
	scratch []byte
}

// newEncoder returns the encoder every worker uses. Concurrency 1 and
// EncodeAll make the frame a pure function of the input and the level, which
// is what makes Dump deterministic. The frame's own CRC is left out: the
// index already carries an xxhash64 of every chunk, and the archive one of
// every section.
func newEncoder(level zstd.EncoderLevel) (*zstd.Encoder, error) {
	return zstd.NewWriter(nil,
		zstd.WithEncoderLevel(level),
		zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(ChunkSize),
		zstd.WithEncoderCRC(false),
		zstd.WithZeroFrames(true),
	)
}

// Dump writes guest RAM to w: one memory-chunk section per chunk that is not
// all zero, in chunk order, then the memory index. Chunks are scanned and
// compressed by opt.Workers goroutines; at most 2×Workers chunks are in
// flight, so besides the index Dump holds a few ChunkSize buffers per worker
// (2 payloads, 1 gather buffer, the encoder's history).
//
// Preconditions: the guest does not run (all vCPUs paused) and no device
// writes RAM, or the dump is not a consistent image. Dump does not close w.
func Dump(mem *Memory, w *formats.Writer, opt DumpOptions) (DumpStats, error) {
	var st DumpStats
	if opt.Level < 0 || opt.Level > 22 {
		return st, fmt.Errorf("memdump: zstd level %d is outside 1–22 (0 for the default)", opt.Level)
	}
	level := opt.Level
	if level == 0 {
		level = DefaultLevel
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	regions := mem.Regions()
	grid, err := chunkGrid(regions)
	if err != nil {
		return st, err
	}
	workers = max(1, min(workers, len(grid)))
	window := 2 * workers

	ws := make([]*dumpWorker, workers)
	for i := range ws {
		enc, err := newEncoder(zstd.EncoderLevelFromZstd(level))
		if err != nil {
			return st, fmt.Errorf("memdump: zstd encoder: %w", err)
		}
		defer enc.Close()
		ws[i] = &dumpWorker{enc: enc}
	}
	slots := make([]dumpSlot, window)
	for i := range slots {
		slots[i].done = make(chan struct{}, 1)
		// Room for an incompressible chunk (zstd stores it as raw blocks of
		// 128 KiB, 3 header bytes each), so that EncodeAll never grows it.
		slots[i].payload = make([]byte, 0, chunkHeaderSize+pagesPerChunk/8+ChunkSize+ChunkSize/1024+64)
	}

	jobs := make(chan int, window)
	tokens := make(chan struct{}, window)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1 + workers)
	go func() { // producer: hands out chunk numbers while the window has room
		defer wg.Done()
		defer close(jobs)
		holes := newHoleScanner(mem)
		for i, c := range grid {
			select {
			case tokens <- struct{}{}:
			case <-stop:
				return
			}
			s := &slots[i%window]
			s.runs = holes.runs(int64(c.off), int64(c.length), s.runs[:0])
			jobs <- i // never blocks: at most window jobs are outstanding
		}
	}()
	for _, dw := range ws {
		go func() {
			defer wg.Done()
			for i := range jobs {
				s := &slots[i%window]
				select {
				case <-stop:
					s.err = errStopped
				default:
					s.err = dw.chunk(mem, grid[i], s)
				}
				s.done <- struct{}{}
			}
		}()
	}
	finish := func(err error) (DumpStats, error) {
		close(stop)
		wg.Wait()
		return st, err
	}

	entries := make([]indexEntry, len(grid))
	total := mem.Size()
	var done uint64
	for i, c := range grid {
		s := &slots[i%window]
		<-s.done
		if s.err != nil {
			return finish(fmt.Errorf("memdump: chunk %d at gpa %#x: %w", i, c.gpa, s.err))
		}
		entries[i] = s.entry
		st.Chunks++
		if s.entry.stored {
			if err := w.WriteSection(formats.KindMemoryChunk, uint32(i), s.payload); err != nil {
				return finish(fmt.Errorf("memdump: write chunk %d at gpa %#x: %w", i, c.gpa, err))
			}
			st.CompressedBytes += uint64(len(s.payload))
			st.ZeroBytes += uint64(s.zeroPages) * PageSize
			st.StoredBytes += uint64(c.length) - uint64(s.zeroPages)*PageSize
		} else {
			st.ZeroChunks++
			st.ZeroBytes += uint64(c.length)
		}
		<-tokens
		done += uint64(c.length)
		if opt.Progress != nil {
			opt.Progress(done, total)
		}
	}
	close(stop)
	wg.Wait()
	st.Bytes = total
	if err := w.WriteSection(formats.KindMemoryIndex, 0, encodeIndex(total, regions, entries)); err != nil {
		return st, fmt.Errorf("memdump: write memory index: %w", err)
	}
	return st, nil
}

// errStopped marks chunks skipped after Dump failed; it is never returned.
var errStopped = fmt.Errorf("memdump: dump stopped")

// chunk scans one chunk of RAM, and unless it is all zero builds its section
// payload in s.payload: header, zero-page bitmap, one zstd frame of the
// non-zero pages in address order.
func (dw *dumpWorker) chunk(mem *Memory, c chunkRef, s *dumpSlot) error {
	ram, err := mem.Slice(c.gpa, uint64(c.length))
	if err != nil {
		return err
	}
	pages := c.pages()
	bitmapLen := (pages + 7) / 8
	p := s.payload[:0]
	p = le.AppendUint64(p, c.gpa)
	p = le.AppendUint32(p, c.length)
	p = le.AppendUint32(p, uint32(pages))
	bm := len(p)
	p = append(p, make([]byte, bitmapLen)...)
	bitmap := p[bm:]

	// The zero-page bitmap. Pages in holes of the memfd are zero without
	// being read (reading would allocate them); the others are compared.
	for pg := range pages {
		bitmap[pg/8] |= 1 << (pg % 8)
	}
	zero := pages
	for _, r := range s.runs {
		p0 := int((uint64(r[0]) - c.off) / PageSize)
		p1 := int((uint64(r[1]) - c.off + PageSize - 1) / PageSize)
		for pg := p0; pg < min(p1, pages); pg++ {
			if bitmap[pg/8]&(1<<(pg%8)) != 0 && !isZeroPage(ram[pg*PageSize:(pg+1)*PageSize]) {
				bitmap[pg/8] &^= 1 << (pg % 8)
				zero--
			}
		}
	}
	// The non-zero pages: if they form one run, the frame is compressed
	// straight from RAM.
	first, last, runs := -1, -1, 0
	for pg := range pages {
		if bitmap[pg/8]&(1<<(pg%8)) != 0 {
			continue
		}
		if first < 0 || last != pg-1 {
			runs++
		}
		if first < 0 {
			first = pg
		}
		last = pg
	}
	s.zeroPages = zero
	s.entry = indexEntry{gpa: c.gpa, length: c.length}
	if zero == pages {
		s.entry.hash = zeroHashOf(c.length)
		s.payload = p
		return nil
	}
	s.entry.stored = true
	s.entry.hash = hashChunk(ram, bitmap, zero)

	var src []byte
	if runs == 1 {
		src = ram[first*PageSize : (last+1)*PageSize]
	} else {
		need := (pages - zero) * PageSize
		if cap(dw.scratch) < need {
			dw.scratch = make([]byte, 0, ChunkSize)
		}
		src = dw.scratch[:0]
		for pg := 0; pg < pages; pg++ {
			if bitmap[pg/8]&(1<<(pg%8)) == 0 {
				src = append(src, ram[pg*PageSize:(pg+1)*PageSize]...)
			}
		}
	}
	start := len(p)
	p = dw.enc.EncodeAll(src, p)
	s.entry.compressed = uint32(len(p) - start)
	s.payload = p
	return nil
}

// fullZeroHash is the xxhash64 of ChunkSize zero bytes, the hash of almost
// every all-zero chunk.
var fullZeroHash = hashZeros(ChunkSize)

// zeroHashOf returns the xxhash64 of n zero bytes; only a region's short
// last chunk needs it computed.
func zeroHashOf(n uint32) uint64 {
	if n == ChunkSize {
		return fullZeroHash
	}
	return hashZeros(n)
}
