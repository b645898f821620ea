package disk

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// backend is the file under a qcow2 image: an *os.File, or memory in the
// fuzz target.
type backend interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Truncate(size int64) error
	Close() error
}

// l2CacheBytes bounds the memory held by cached L2 tables.
const l2CacheBytes = 8 << 20

// qcow2 is an open qcow2 image.
type qcow2 struct {
	path     string
	readOnly bool
	id       Identity

	// mu guards everything below: the tables, the caches, the allocator and
	// the file offsets they describe.
	mu        sync.Mutex
	f         backend // guarded by mu
	h         *header // guarded by mu
	cs        uint64  // cluster size
	l2Entries uint64  // entries per L2 table
	fileSize  uint64  // guarded by mu; size of f as far as we know
	l1        []uint64
	l2Cache   map[uint64][]uint64 // L2 table offset → entries; guarded by mu
	l2Max     int
	backing   Disk // nil without a backing file; guarded by mu
	// lastComp caches the last decompressed cluster (descriptor → bytes).
	lastCompEntry uint64
	lastComp      []byte
	// Write state, set up only for writable images.
	refTable  []uint64          // refcount table entries; guarded by mu
	refBlocks map[uint64][]byte // refcount block index → block; guarded by mu
	refPerBlk uint64
	nextFree  uint64 // next cluster index to allocate; guarded by mu
	growing   bool   // refcount table being replaced: entries go to disk with the new table
	broken    error  // a metadata write failed; later writes are refused
	closed    bool
}

// newQcow2 takes ownership of f; chain ends with f's own link.
func newQcow2(f *os.File, path string, readOnly bool, chain []chainLink) (*qcow2, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat: %w", err)
	}
	size := fi.Size()
	if size < 0 {
		size = 0
	}
	open := func(name, format string) (Disk, error) {
		return openChain(name, format, true, chain)
	}
	q, err := openQcow2(f, uint64(size), path, readOnly, open)
	if err != nil {
		return nil, err
	}
	last := chain[len(chain)-1]
	q.id.Dev, q.id.Inode = last.dev, last.ino
	return q, nil
}

// openQcow2 parses the image in f (of fileSize bytes) and opens its backing
// file through openBacking (nil: a backing file is an error). It does not
// close f on failure.
func openQcow2(f backend, fileSize uint64, path string, readOnly bool, openBacking func(name, format string) (Disk, error)) (*qcow2, error) {
	first := make([]byte, min(fileSize, 1<<maxClusterBits))
	if _, err := f.ReadAt(first, 0); err != nil && err != io.EOF {
		return nil, fmt.Errorf("read qcow2 header: %w", err)
	}
	h, err := parseHeader(first, fileSize)
	if err != nil {
		return nil, err
	}
	q := &qcow2{
		path:      path,
		readOnly:  readOnly,
		f:         f,
		h:         h,
		cs:        h.clusterSize(),
		l2Entries: h.clusterSize() / 8,
		fileSize:  fileSize,
		l2Cache:   map[uint64][]uint64{},
	}
	q.l2Max = max(4, int(l2CacheBytes/q.cs))
	q.id = Identity{Format: FormatQcow2, Size: h.size, HeaderDigest: h.digest()}
	l1 := make([]byte, uint64(h.l1Size)*8)
	if _, err := f.ReadAt(l1, int64(h.l1Offset)); err != nil {
		return nil, fmt.Errorf("read qcow2 L1 table: %w", err)
	}
	q.l1 = make([]uint64, h.l1Size)
	for i := range q.l1 {
		q.l1[i] = binary.BigEndian.Uint64(l1[i*8:])
	}
	if h.backingFile != "" {
		if openBacking == nil {
			return nil, fmt.Errorf("%w: qcow2 backing file %q not allowed here", ErrUnsupported, h.backingFile)
		}
		if strings.HasPrefix(h.backingFile, "json:") {
			return nil, fmt.Errorf("%w: qcow2 backing file %q: json: pseudo-paths", ErrUnsupported, h.backingFile)
		}
		format := h.backingFormat
		if format != "" && format != FormatRaw && format != FormatQcow2 {
			return nil, fmt.Errorf("%w: qcow2 backing file %q has format %q (only raw and qcow2)", ErrUnsupported, h.backingFile, format)
		}
		name := h.backingFile
		if !filepath.IsAbs(name) {
			name = filepath.Join(filepath.Dir(path), name)
		}
		b, err := openBacking(name, format)
		if err != nil {
			if errors.Is(err, ErrBackingChain) {
				return nil, err
			}
			return nil, fmt.Errorf("backing file: %w", err)
		}
		q.backing = b
	}
	if !readOnly {
		if err := q.initWrite(); err != nil {
			if q.backing != nil {
				q.backing.Close()
			}
			return nil, err
		}
	}
	return q, nil
}

// lookup returns the L2 entry that maps virtual cluster vc (0 when no L2
// table covers it).
func (q *qcow2) lookup(vc uint64) (uint64, error) {
	l1i := vc / q.l2Entries
	if l1i >= uint64(len(q.l1)) {
		return 0, nil
	}
	l2off := q.l1[l1i] & l2OffsetMask
	if l2off == 0 {
		return 0, nil
	}
	t, err := q.l2Table(l2off)
	if err != nil {
		return 0, err
	}
	return t[vc%q.l2Entries], nil
}

// l2Table returns the L2 table at host offset off, through the cache.
func (q *qcow2) l2Table(off uint64) ([]uint64, error) {
	if t, ok := q.l2Cache[off]; ok {
		return t, nil
	}
	if off%q.cs != 0 || off > q.fileSize || q.cs > q.fileSize-off {
		return nil, fmt.Errorf("%w: qcow2 L2 table at %#x is unaligned or past the end of the file (%d bytes)", ErrFormat, off, q.fileSize)
	}
	buf := make([]byte, q.cs)
	if _, err := q.f.ReadAt(buf, int64(off)); err != nil {
		return nil, fmt.Errorf("read qcow2 L2 table at %#x: %w", off, err)
	}
	t := make([]uint64, q.l2Entries)
	for i := range t {
		t[i] = binary.BigEndian.Uint64(buf[i*8:])
	}
	if len(q.l2Cache) >= q.l2Max {
		for k := range q.l2Cache {
			delete(q.l2Cache, k)
			break
		}
	}
	q.l2Cache[off] = t
	return t, nil
}

// isZero reports whether a standard L2 entry reads as zeros (v3 only).
func (q *qcow2) isZero(e uint64) bool {
	return q.h.version >= 3 && e&compressedFlag == 0 && e&zeroFlag != 0
}

// readEntry fills p with the bytes of virtual cluster vc, starting intra
// bytes into it, as mapped by L2 entry e.
func (q *qcow2) readEntry(e, vc, intra uint64, p []byte) error {
	switch {
	case e&compressedFlag != 0:
		data, err := q.decompress(e)
		if err != nil {
			return err
		}
		copy(p, data[intra:])
		return nil
	case q.isZero(e):
		clear(p)
		return nil
	case e&l2OffsetMask == 0:
		return q.readBacking(vc*q.cs+intra, p)
	}
	host := e & l2OffsetMask
	if host%q.cs != 0 {
		return fmt.Errorf("%w: qcow2 data cluster %#x for virtual cluster %d is unaligned", ErrFormat, host, vc)
	}
	n, err := q.f.ReadAt(p, int64(host+intra))
	if err == io.EOF {
		// An allocated cluster whose tail was never written reads as zeros,
		// as a sparse file would.
		clear(p[n:])
		err = nil
	}
	if err != nil {
		return fmt.Errorf("read qcow2 data cluster %#x: %w", host, err)
	}
	return nil
}

// readBacking reads virtual bytes at off from the backing file; what lies
// past its end (or everything, without one) reads as zeros.
func (q *qcow2) readBacking(off uint64, p []byte) error {
	if q.backing == nil || off >= q.backing.Size() {
		clear(p)
		return nil
	}
	n := min(uint64(len(p)), q.backing.Size()-off)
	m, err := q.backing.ReadAt(p[:n], int64(off))
	if err != nil && !(err == io.EOF && uint64(m) == n) {
		return fmt.Errorf("read backing file at %d: %w", off, err)
	}
	clear(p[n:])
	return nil
}

// compressedRange returns the host offset and byte length of a compressed
// cluster descriptor (qcow2.txt "Compressed Clusters Descriptor").
func (q *qcow2) compressedRange(e uint64) (off, n uint64) {
	x := 62 - (uint64(q.h.clusterBits) - 8)
	off = e & (1<<x - 1)
	sectors := (e&^(copiedFlag|compressedFlag))>>x + 1
	return off, sectors*512 - off%512
}

// decompress inflates the compressed cluster described by e.
func (q *qcow2) decompress(e uint64) ([]byte, error) {
	if q.lastComp != nil && q.lastCompEntry == e {
		return q.lastComp, nil
	}
	off, n := q.compressedRange(e)
	if off >= q.fileSize {
		return nil, fmt.Errorf("%w: qcow2 compressed cluster at %#x is past the end of the file (%d bytes)", ErrFormat, off, q.fileSize)
	}
	n = min(n, q.fileSize-off)
	src := make([]byte, n)
	m, err := q.f.ReadAt(src, int64(off))
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("read qcow2 compressed cluster at %#x: %w", off, err)
	}
	out := make([]byte, q.cs)
	zr := flate.NewReader(bytes.NewReader(src[:m]))
	defer zr.Close()
	if _, err := io.ReadFull(zr, out); err != nil {
		return nil, fmt.Errorf("%w: qcow2 compressed cluster at %#x+%d: inflate: %w", ErrFormat, off, n, err)
	}
	q.lastCompEntry, q.lastComp = e, out
	return out, nil
}

// ReadAt implements Disk.
func (q *qcow2) ReadAt(p []byte, off int64) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return 0, ErrClosed
	}
	n, rerr := checkRange(off, len(p), q.h.size)
	done := 0
	for done < n {
		pos := uint64(off) + uint64(done)
		vc, intra := pos/q.cs, pos%q.cs
		chunk := min(uint64(n-done), q.cs-intra)
		e, err := q.lookup(vc)
		if err == nil {
			err = q.readEntry(e, vc, intra, p[done:done+int(chunk)])
		}
		if err != nil {
			return done, fmt.Errorf("read %s at %d: %w", q.path, pos, err)
		}
		done += int(chunk)
	}
	return n, rerr
}

// Size implements Disk.
func (q *qcow2) Size() uint64 { return q.id.Size }

// ReadOnly implements Disk.
func (q *qcow2) ReadOnly() bool { return q.readOnly }

// Identity implements Disk.
func (q *qcow2) Identity() Identity { return q.id }

// Discard makes whole clusters inside the range read as zeros. On v3
// images each cluster whose L2 table exists gets the zero flag: a normal
// cluster keeps its host cluster (a preallocated zero cluster, refcount
// unchanged), a compressed one drops its references. Partial clusters,
// clusters without an L2 table (they keep reading their old contents)
// and v2 images, which have no zero flag, are left alone, as virtio-blk
// allows.
func (q *qcow2) Discard(off, n int64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	if q.readOnly {
		return fmt.Errorf("discard %s: %w", q.path, ErrReadOnly)
	}
	if off < 0 || n < 0 || uint64(off) > q.h.size || uint64(n) > q.h.size-uint64(off) {
		return fmt.Errorf("discard %s: %d bytes at %d: %w (size %d)", q.path, n, off, ErrRange, q.h.size)
	}
	if q.broken != nil {
		return fmt.Errorf("discard %s: refused after an earlier metadata write failed: %w", q.path, q.broken)
	}
	if q.h.version < 3 {
		return nil
	}
	first := (uint64(off) + q.cs - 1) / q.cs
	end := (uint64(off) + uint64(n)) / q.cs
	if uint64(off)+uint64(n) == q.h.size {
		end = (q.h.size + q.cs - 1) / q.cs // the last, possibly short, cluster
	}
	for vc := first; vc < end; vc++ {
		if err := q.discardCluster(vc); err != nil {
			return fmt.Errorf("discard %s at %d: %w", q.path, vc*q.cs, err)
		}
	}
	return nil
}

// discardCluster gives virtual cluster vc the zero flag if its L2 table
// exists.
func (q *qcow2) discardCluster(vc uint64) error {
	l1i, l2i := vc/q.l2Entries, vc%q.l2Entries
	l2off := q.l1[l1i] & l2OffsetMask
	if l2off == 0 {
		return nil
	}
	tbl, err := q.l2Table(l2off)
	if err != nil {
		return err
	}
	e := tbl[l2i]
	var ne uint64
	switch {
	case e&compressedFlag != 0:
		ne = zeroFlag
	case q.isZero(e):
		return nil
	case e&l2OffsetMask != 0:
		ne = e&(l2OffsetMask|copiedFlag) | zeroFlag
	default:
		ne = zeroFlag
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], ne)
	if err := q.writeMeta(b[:], l2off+l2i*8, "L2 entry"); err != nil {
		return err
	}
	tbl[l2i] = ne
	if e&compressedFlag != 0 {
		return q.freeCompressed(e)
	}
	return nil
}

// Flush implements Disk.
func (q *qcow2) Flush() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	if q.readOnly {
		return nil
	}
	if err := q.f.Sync(); err != nil {
		return fmt.Errorf("flush %s: %w", q.path, err)
	}
	return nil
}

// Close implements Disk. It closes the backing chain too.
func (q *qcow2) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	q.closed = true
	var errs []error
	if q.backing != nil {
		errs = append(errs, q.backing.Close())
	}
	if err := q.f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close %s: %w", q.path, err))
	}
	return errors.Join(errs...)
}
