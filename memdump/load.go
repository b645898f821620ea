package memdump

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/chsnap/chsnap/formats"
	"github.com/klauspost/compress/zstd"
)

// LoadOptions tunes a Loader. The zero value gives the defaults.
type LoadOptions struct {
	// Workers is the number of chunks decoded in parallel; 0 means
	// runtime.GOMAXPROCS(0).
	Workers int
	// Progress, if set, is called with the bytes of RAM restored so far and
	// the total. It may be called from several goroutines, never at once.
	Progress func(done, total uint64)
}

// arrival is what Add learnt of one chunk's section; only Add writes it,
// before the chunk is queued.
type arrival struct {
	arrived   bool
	frameLen  uint32 // bytes of zstd frame
	payload   uint32 // bytes of section payload
	zeroPages uint32 // pages the bitmap marks zero
}

// result is what the chunk's worker found; only that worker writes it.
type result struct {
	decoded bool
	hash    uint64 // xxhash64 of the chunk's RAM after decoding
}

// loadJob is one validated chunk for a worker to decode.
type loadJob struct {
	id     int
	bitmap []byte
	frame  []byte
}

// Loader restores guest RAM from memory-chunk and memory-index sections.
//
// Sections may come in any order (Dump writes the index last). Add checks a
// chunk's header against the configured memory before any byte of it is
// decoded, then hands it to a worker that decodes it straight into RAM and
// hashes the result; the hash is compared with the index's once both are
// known. So RAM may hold bytes of a chunk that later fails its check: the
// memory must not be used unless Finish returns nil.
//
// Add and Finish must be called from one goroutine, not concurrently, and
// Finish must be called (it waits for the workers) before mem is closed,
// whatever Add returned.
type Loader struct {
	mem     *Memory
	regions []Region
	grid    []chunkRef
	opt     LoadOptions
	workers int
	jobs    chan loadJob
	wg      sync.WaitGroup
	// arrivals[i] is written by Add before chunk i is queued; results[i]
	// by chunk i's worker; Finish reads both after wg.Wait.
	arrivals []arrival
	results  []result
	index    []indexEntry // nil until the index arrives
	finished bool

	mu sync.Mutex
	// err is the first error; guarded by mu.
	err error
	// done is the RAM restored so far, for Progress; guarded by mu.
	done uint64
}

// NewLoader returns a Loader that restores into mem. mem must be fresh (all
// zero) and sized from the snapshot's configuration; the index must describe
// exactly this memory. Pages the archive marks zero are neither written nor
// read (reading a hole of the memfd would allocate it), so a memory that is
// not fresh is not detected there.
func NewLoader(mem *Memory, opt LoadOptions) *Loader {
	l := &Loader{mem: mem, regions: mem.Regions(), opt: opt}
	grid, err := chunkGrid(l.regions)
	if err != nil {
		l.err = err
		return l
	}
	l.grid = grid
	l.arrivals = make([]arrival, len(grid))
	l.results = make([]result, len(grid))
	l.workers = opt.Workers
	if l.workers <= 0 {
		l.workers = runtime.GOMAXPROCS(0)
	}
	l.workers = max(1, min(l.workers, len(grid)))
	l.jobs = make(chan loadJob, 2*l.workers)
	for range l.workers {
		dec, err := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxWindow(ChunkSize),
			zstd.WithDecoderMaxMemory(ChunkSize),
			zstd.WithDecodeAllCapLimit(true),
			zstd.WithDecoderLowmem(false),
		)
		if err != nil {
			l.err = fmt.Errorf("memdump: zstd decoder: %w", err)
			break
		}
		l.wg.Add(1)
		go l.worker(dec)
	}
	return l
}

// fail records err as the Loader's error unless one is already recorded,
// and returns the recorded one.
func (l *Loader) fail(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.err = err
	}
	return l.err
}

// failed returns the recorded error, if any.
func (l *Loader) failed() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Add takes one memory-chunk or memory-index section. A chunk is checked and
// queued for decoding (Add blocks while 2×Workers chunks wait); the index is
// checked against the configured memory and against the chunks seen so far.
// Add returns the first error of any chunk decoded so far, too. The Loader
// keeps s.Payload until Finish returns.
func (l *Loader) Add(s formats.Section) error {
	if l.finished {
		return errors.New("memdump: loader already finished")
	}
	if err := l.failed(); err != nil {
		return err
	}
	switch s.Kind {
	case formats.KindMemoryChunk:
		return l.addChunk(s.ID, s.Payload)
	case formats.KindMemoryIndex:
		return l.addIndex(s.ID, s.Payload)
	}
	return fmt.Errorf("memdump: section %s %d is not a memory section", s.Kind, s.ID)
}

// addChunk validates a chunk section's header and queues its frame.
func (l *Loader) addChunk(id uint32, p []byte) error {
	if uint64(id) >= uint64(len(l.grid)) {
		return l.fail(fmt.Errorf("memdump: memory-chunk %d: configured memory has only %d chunks: %w", id, len(l.grid), formats.ErrCorrupt))
	}
	c := l.grid[id]
	bad := func(format string, args ...any) error {
		return l.fail(fmt.Errorf("memdump: memory-chunk %d at gpa %#x: %s: %w", id, c.gpa, fmt.Sprintf(format, args...), formats.ErrCorrupt))
	}
	if l.arrivals[id].arrived {
		return bad("duplicate chunk")
	}
	if len(p) < chunkHeaderSize {
		return bad("payload of %d bytes is shorter than the %d-byte header", len(p), chunkHeaderSize)
	}
	gpa, length, pages := le.Uint64(p), le.Uint32(p[8:]), le.Uint32(p[12:])
	if gpa != c.gpa || length != c.length {
		return bad("header says [%#x, +%#x), the chunk covers [%#x, +%#x)", gpa, length, c.gpa, c.length)
	}
	if uint64(pages) != uint64(c.pages()) {
		return bad("header says %d pages, the chunk has %d", pages, c.pages())
	}
	bitmapLen := (c.pages() + 7) / 8
	if len(p) <= chunkHeaderSize+bitmapLen {
		return bad("payload of %d bytes has no frame after the %d-byte bitmap", len(p), bitmapLen)
	}
	bitmap := p[chunkHeaderSize : chunkHeaderSize+bitmapLen]
	zero := 0
	for pg := range c.pages() {
		if bitmap[pg/8]&(1<<(pg%8)) != 0 {
			zero++
		}
	}
	if tail := c.pages() % 8; tail != 0 && bitmap[bitmapLen-1]>>tail != 0 {
		return bad("bitmap has bits set past the last page")
	}
	if zero == c.pages() {
		return bad("stored chunk has every page marked zero")
	}
	frame := p[chunkHeaderSize+bitmapLen:]
	if uint64(len(frame)) > 1<<32-1 {
		return bad("frame of %d bytes is too long", len(frame))
	}
	if l.index != nil {
		if err := checkAgainstIndex(l.index[id], int(id), uint32(len(frame))); err != nil {
			return l.fail(err)
		}
	}
	l.arrivals[id] = arrival{arrived: true, frameLen: uint32(len(frame)), payload: uint32(len(p)), zeroPages: uint32(zero)}
	l.jobs <- loadJob{id: int(id), bitmap: bitmap, frame: frame}
	return nil
}

// checkAgainstIndex checks an arrived chunk against its index entry.
func checkAgainstIndex(e indexEntry, id int, frameLen uint32) error {
	if !e.stored {
		return fmt.Errorf("memdump: memory-chunk %d at gpa %#x: the index says the chunk is all zero and not stored: %w", id, e.gpa, formats.ErrCorrupt)
	}
	if e.compressed != frameLen {
		return fmt.Errorf("memdump: memory-chunk %d at gpa %#x: frame is %d bytes, the index says %d: %w", id, e.gpa, frameLen, e.compressed, formats.ErrCorrupt)
	}
	return nil
}

// addIndex parses the memory index and checks the chunks that came before it.
func (l *Loader) addIndex(id uint32, p []byte) error {
	if id != 0 {
		return l.fail(fmt.Errorf("memdump: memory-index has id %d, want 0: %w", id, formats.ErrCorrupt))
	}
	if l.index != nil {
		return l.fail(fmt.Errorf("memdump: duplicate memory-index: %w", formats.ErrCorrupt))
	}
	entries, err := decodeIndex(p, l.mem.Size(), l.regions, l.grid)
	if err != nil {
		return l.fail(fmt.Errorf("memdump: %w", err))
	}
	var zeroBytes uint64
	for i, e := range entries {
		if a := l.arrivals[i]; a.arrived {
			if err := checkAgainstIndex(e, i, a.frameLen); err != nil {
				return l.fail(err)
			}
		}
		if !e.stored {
			zeroBytes += uint64(e.length)
		}
	}
	l.index = entries
	l.progress(zeroBytes)
	return nil
}

// progress adds n bytes of restored RAM and reports it.
func (l *Loader) progress(n uint64) {
	if l.opt.Progress == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done += n
	l.opt.Progress(l.done, l.mem.Size())
}

// worker decodes queued chunks until the queue closes. After an error it
// keeps draining the queue without decoding.
func (l *Loader) worker(dec *zstd.Decoder) {
	defer l.wg.Done()
	defer dec.Close()
	var scratch []byte
	for j := range l.jobs {
		if l.failed() != nil {
			continue
		}
		if err := l.decode(dec, &scratch, j); err != nil {
			c := l.grid[j.id]
			l.fail(fmt.Errorf("memdump: memory-chunk %d at gpa %#x: %w", j.id, c.gpa, err))
			continue
		}
		l.progress(uint64(l.grid[j.id].length))
	}
}

// decode decodes one chunk's frame into RAM and hashes the chunk. The frame
// must decode to exactly the non-zero pages: the decoder writes no further
// than the capacity it is given (WithDecodeAllCapLimit), which is the chunk's
// own range of RAM or a scratch buffer of that many bytes.
func (l *Loader) decode(dec *zstd.Decoder, scratch *[]byte, j loadJob) error {
	c := l.grid[j.id]
	zeroPages := int(l.arrivals[j.id].zeroPages)
	ram, err := l.mem.Slice(c.gpa, uint64(c.length))
	if err != nil {
		return err
	}
	want := int(c.length) - zeroPages*PageSize
	if zeroPages == 0 {
		populate(ram)
		out, err := dec.DecodeAll(j.frame, ram[:0])
		if err != nil {
			return fmt.Errorf("decode frame: %w: %w", formats.ErrCorrupt, err)
		}
		if len(out) != want {
			return fmt.Errorf("frame decodes to %d bytes, want %d: %w", len(out), want, formats.ErrCorrupt)
		}
		if &out[0] != &ram[0] { // the decoder never reallocates under the cap limit; stay correct if it did
			copy(ram, out)
		}
	} else {
		if cap(*scratch) < want {
			*scratch = make([]byte, 0, ChunkSize)
		}
		out, err := dec.DecodeAll(j.frame, (*scratch)[:0:want])
		if err != nil {
			return fmt.Errorf("decode frame: %w: %w", formats.ErrCorrupt, err)
		}
		if len(out) != want {
			return fmt.Errorf("frame decodes to %d bytes, want %d: %w", len(out), want, formats.ErrCorrupt)
		}
		// Copy each run of non-zero pages in one go.
		k, pages := 0, c.pages()
		for pg := 0; pg < pages; {
			if j.bitmap[pg/8]&(1<<(pg%8)) != 0 {
				pg++
				continue
			}
			end := pg + 1
			for end < pages && j.bitmap[end/8]&(1<<(end%8)) == 0 {
				end++
			}
			run := ram[pg*PageSize : end*PageSize]
			populate(run)
			k += copy(run, out[k:])
			pg = end
		}
	}
	l.results[j.id] = result{decoded: true, hash: hashChunk(ram, j.bitmap, zeroPages)}
	return nil
}

// Finish waits for every queued chunk to decode and then checks the whole:
// the index arrived, every chunk it lists as stored arrived once and decoded
// to bytes with the hash it lists. It returns what was loaded.
func (l *Loader) Finish() (DumpStats, error) {
	var st DumpStats
	if l.finished {
		return st, errors.New("memdump: loader already finished")
	}
	l.finished = true
	if l.jobs != nil {
		close(l.jobs)
	}
	l.wg.Wait()
	if err := l.failed(); err != nil {
		return st, err
	}
	if l.index == nil {
		return st, fmt.Errorf("memdump: no memory-index section: %w", formats.ErrCorrupt)
	}
	st.Bytes = l.mem.Size()
	for i, e := range l.index {
		a, r := l.arrivals[i], l.results[i]
		st.Chunks++
		if !e.stored {
			st.ZeroChunks++
			st.ZeroBytes += uint64(e.length)
			continue
		}
		if !a.arrived {
			return st, fmt.Errorf("memdump: memory-chunk %d at gpa %#x is missing: %w", i, e.gpa, formats.ErrCorrupt)
		}
		if !r.decoded {
			return st, fmt.Errorf("memdump: memory-chunk %d at gpa %#x was not decoded", i, e.gpa)
		}
		if r.hash != e.hash {
			return st, fmt.Errorf("memdump: memory-chunk %d at gpa %#x: xxhash64 of the restored bytes is %#x, the index says %#x: %w", i, e.gpa, r.hash, e.hash, formats.ErrChecksum)
		}
		zb := uint64(a.zeroPages) * PageSize
		st.ZeroBytes += zb
		st.StoredBytes += uint64(e.length) - zb
		st.CompressedBytes += uint64(a.payload)
	}
	return st, nil
}
