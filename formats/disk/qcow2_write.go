package disk

import (
	"encoding/binary"
	"fmt"
)

// initWrite loads the refcount table and sets up the allocator. Only
// images with 16-bit refcounts and no internal snapshots are writable:
// with no snapshots every referenced cluster has refcount 1 and may be
// written in place.
func (q *qcow2) initWrite() error {
	h := q.h
	if h.refcountOrder != 4 {
		return fmt.Errorf("%w: writing qcow2 with refcount_order %d (only 4); open read-only", ErrUnsupported, h.refcountOrder)
	}
	if h.nbSnapshots != 0 {
		return fmt.Errorf("%w: writing qcow2 with %d internal snapshots; open read-only", ErrUnsupported, h.nbSnapshots)
	}
	buf := make([]byte, uint64(h.refTableClusters)*q.cs)
	if _, err := q.f.ReadAt(buf, int64(h.refTableOffset)); err != nil {
		return fmt.Errorf("read qcow2 refcount table: %w", err)
	}
	q.refTable = make([]uint64, len(buf)/8)
	for i := range q.refTable {
		q.refTable[i] = binary.BigEndian.Uint64(buf[i*8:])
	}
	q.refBlocks = map[uint64][]byte{}
	q.refPerBlk = q.cs * 8 / 16
	q.nextFree = (q.fileSize + q.cs - 1) / q.cs
	if h.autoclear != 0 {
		// Autoclear features (bitmaps, raw external data) describe state we
		// do not maintain; the spec asks a writer that does not know them to
		// clear the bits.
		var z [8]byte
		if _, err := q.f.WriteAt(z[:], 88); err != nil {
			return fmt.Errorf("clear qcow2 autoclear features: %w", err)
		}
		h.autoclear = 0
	}
	return nil
}

// WriteAt implements Disk.
func (q *qcow2) WriteAt(p []byte, off int64) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return 0, ErrClosed
	}
	if q.readOnly {
		return 0, fmt.Errorf("write %s: %w", q.path, ErrReadOnly)
	}
	if q.broken != nil {
		return 0, fmt.Errorf("write %s: refused after an earlier metadata write failed: %w", q.path, q.broken)
	}
	if n, err := checkRange(off, len(p), q.h.size); err != nil || n != len(p) {
		return 0, fmt.Errorf("write %s: %d bytes at %d: %w (size %d)", q.path, len(p), off, ErrRange, q.h.size)
	}
	done := 0
	for done < len(p) {
		pos := uint64(off) + uint64(done)
		vc, intra := pos/q.cs, pos%q.cs
		chunk := min(uint64(len(p)-done), q.cs-intra)
		if err := q.writeCluster(vc, intra, p[done:done+int(chunk)]); err != nil {
			return done, fmt.Errorf("write %s at %d: %w", q.path, pos, err)
		}
		done += int(chunk)
	}
	return done, nil
}

// writeCluster writes data into virtual cluster vc at intra, allocating in
// the order the package doc gives: refcounts, data, L2, L1.
func (q *qcow2) writeCluster(vc, intra uint64, data []byte) error {
	l1i, l2i := vc/q.l2Entries, vc%q.l2Entries
	l2off := q.l1[l1i] & l2OffsetMask
	var tbl []uint64
	if l2off != 0 {
		t, err := q.l2Table(l2off)
		if err != nil {
			return err
		}
		tbl = t
	}
	var e uint64
	if tbl != nil {
		e = tbl[l2i]
	}
	if e&compressedFlag == 0 && !q.isZero(e) && e&l2OffsetMask != 0 {
		host := e & l2OffsetMask
		if host%q.cs != 0 || host >= q.fileSize {
			return fmt.Errorf("%w: qcow2 data cluster %#x for virtual cluster %d is unaligned or past the end of the file (%d bytes)", ErrFormat, host, vc, q.fileSize)
		}
		if _, err := q.f.WriteAt(data, int64(host+intra)); err != nil {
			return fmt.Errorf("write data cluster %#x: %w", host, err)
		}
		q.grew(host + intra + uint64(len(data)))
		return nil
	}

	// A new (or rewritten) cluster. Every byte of it must be defined: a
	// fresh cluster lies past the old end of the file, so when its base
	// is zeros it is enough to write the data and extend the file over
	// the rest; otherwise the whole cluster is built and written.
	var host uint64
	fresh := true
	if q.isZero(e) && e&l2OffsetMask != 0 && (e&l2OffsetMask)%q.cs == 0 && e&l2OffsetMask < q.fileSize {
		host = e & l2OffsetMask // a preallocated zero cluster: reuse it
		fresh = false
	} else {
		h, err := q.alloc(1)
		if err != nil {
			return err
		}
		host = h
	}
	if fresh && q.zeroBase(e, vc) {
		if err := q.writeMeta(data, host+intra, "data cluster"); err != nil {
			return err
		}
		if q.fileSize < host+q.cs {
			if err := q.f.Truncate(int64(host + q.cs)); err != nil {
				q.broken = fmt.Errorf("extend qcow2 file to %d: %w", host+q.cs, err)
				return q.broken
			}
			q.grew(host + q.cs)
		}
	} else {
		buf := make([]byte, q.cs)
		if uint64(len(data)) < q.cs {
			if err := q.readEntry(e, vc, 0, buf); err != nil {
				return err
			}
		}
		copy(buf[intra:], data)
		if err := q.writeMeta(buf, host, "data cluster"); err != nil {
			return err
		}
	}
	newEntry := host | copiedFlag
	if tbl == nil {
		tbl = make([]uint64, q.l2Entries)
		tbl[l2i] = newEntry
		l2host, err := q.alloc(1)
		if err != nil {
			return err
		}
		raw := make([]byte, q.cs)
		binary.BigEndian.PutUint64(raw[l2i*8:], newEntry)
		if err := q.writeMeta(raw, l2host, "L2 table"); err != nil {
			return err
		}
		q.cacheL2(l2host, tbl)
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], l2host|copiedFlag)
		if err := q.writeMeta(b[:], q.h.l1Offset+l1i*8, "L1 entry"); err != nil {
			return err
		}
		q.l1[l1i] = l2host | copiedFlag
	} else {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], newEntry)
		if err := q.writeMeta(b[:], l2off+l2i*8, "L2 entry"); err != nil {
			return err
		}
		tbl[l2i] = newEntry
	}
	if e&compressedFlag != 0 {
		return q.freeCompressed(e)
	}
	return nil
}

// zeroBase reports whether virtual cluster vc, mapped by e, reads as zeros
// without looking at any data: a zero cluster, or an unallocated one with
// no backing file behind it.
func (q *qcow2) zeroBase(e, vc uint64) bool {
	if e&compressedFlag != 0 {
		return false
	}
	if q.isZero(e) {
		return true
	}
	return e&l2OffsetMask == 0 && (q.backing == nil || vc*q.cs >= q.backing.Size())
}

// cacheL2 adds a table to the L2 cache, evicting one if it is full.
func (q *qcow2) cacheL2(off uint64, t []uint64) {
	if len(q.l2Cache) >= q.l2Max {
		for k := range q.l2Cache {
			delete(q.l2Cache, k)
			break
		}
	}
	q.l2Cache[off] = t
}

// writeMeta writes b at host offset off; a failure marks the image broken,
// since the in-memory tables may no longer match the file.
func (q *qcow2) writeMeta(b []byte, off uint64, what string) error {
	if _, err := q.f.WriteAt(b, int64(off)); err != nil {
		q.broken = fmt.Errorf("write qcow2 %s at %#x: %w", what, off, err)
		return q.broken
	}
	q.grew(off + uint64(len(b)))
	return nil
}

// grew records that the file now extends at least to end.
func (q *qcow2) grew(end uint64) {
	q.fileSize = max(q.fileSize, end)
}

// alloc takes n contiguous clusters at the end of the file, sets their
// refcounts to 1 and returns the host offset of the first.
func (q *qcow2) alloc(n uint64) (uint64, error) {
	start := q.nextFree
	q.nextFree += n
	for c := start; c < start+n; c++ {
		if err := q.setRef(c, 1); err != nil {
			return 0, err
		}
	}
	return start * q.cs, nil
}

// refBlock returns refcount block bi, or nil when the table has none.
func (q *qcow2) refBlock(bi uint64) ([]byte, error) {
	if b, ok := q.refBlocks[bi]; ok {
		return b, nil
	}
	off := q.refTable[bi] & refTableOffsetMask
	if off == 0 {
		return nil, nil
	}
	if off%q.cs != 0 || off > q.fileSize || q.cs > q.fileSize-off {
		return nil, fmt.Errorf("%w: qcow2 refcount block %d at %#x is unaligned or past the end of the file", ErrFormat, bi, off)
	}
	b := make([]byte, q.cs)
	if _, err := q.f.ReadAt(b, int64(off)); err != nil {
		return nil, fmt.Errorf("read qcow2 refcount block at %#x: %w", off, err)
	}
	q.refBlocks[bi] = b
	return b, nil
}

// getRef returns the refcount of cluster c.
func (q *qcow2) getRef(c uint64) (uint64, error) {
	bi := c / q.refPerBlk
	if bi >= uint64(len(q.refTable)) {
		return 0, nil
	}
	b, err := q.refBlock(bi)
	if err != nil || b == nil {
		return 0, err
	}
	return uint64(binary.BigEndian.Uint16(b[(c%q.refPerBlk)*2:])), nil
}

// setRef sets the refcount of cluster c to v, creating the refcount block
// (and growing the table) when needed.
func (q *qcow2) setRef(c, v uint64) error {
	if v > 0xffff {
		return fmt.Errorf("%w: qcow2 refcount of cluster %d would exceed 16 bits", ErrUnsupported, c)
	}
	bi := c / q.refPerBlk
	if bi >= uint64(len(q.refTable)) {
		if err := q.growRefTable(bi); err != nil {
			return err
		}
	}
	idx := c % q.refPerBlk
	b, err := q.refBlock(bi)
	if err != nil {
		return err
	}
	if b != nil {
		binary.BigEndian.PutUint16(b[idx*2:], uint16(v))
		return q.writeMeta(b[idx*2:idx*2+2], q.refTable[bi]&refTableOffsetMask+idx*2, "refcount")
	}
	// No block yet: take the next cluster for it. When the block covers
	// its own cluster it carries its own refcount; otherwise that refcount
	// goes into a later block, set before the table points at this one.
	nb := q.nextFree
	q.nextFree++
	b = make([]byte, q.cs)
	binary.BigEndian.PutUint16(b[idx*2:], uint16(v))
	self := nb/q.refPerBlk == bi
	if self {
		binary.BigEndian.PutUint16(b[(nb%q.refPerBlk)*2:], 1)
	}
	if err := q.writeMeta(b, nb*q.cs, "refcount block"); err != nil {
		return err
	}
	q.refBlocks[bi] = b
	if !self {
		if err := q.setRef(nb, 1); err != nil {
			return err
		}
	}
	q.refTable[bi] = nb * q.cs
	if q.growing {
		return nil // written with the whole new table
	}
	var e [8]byte
	binary.BigEndian.PutUint64(e[:], nb*q.cs)
	return q.writeMeta(e[:], q.h.refTableOffset+bi*8, "refcount table entry")
}

// growRefTable replaces the refcount table with one that has room for
// block index bi and for the clusters the new table itself takes. The new
// table is written whole, then one header write switches to it, then the
// old table's clusters are freed.
func (q *qcow2) growRefTable(bi uint64) error {
	if q.growing {
		return fmt.Errorf("%w: qcow2 refcount table grew twice at once (block %d)", ErrFormat, bi)
	}
	perCluster := q.cs / 8
	entries := max(uint64(len(q.refTable))*2, bi+1)
	var clusters uint64
	for {
		clusters = (entries + perCluster - 1) / perCluster
		// Room for everything allocated so far, the table, and the blocks
		// that describe them.
		if entries*q.refPerBlk >= q.nextFree+clusters+64 {
			break
		}
		entries *= 2
	}
	if clusters*q.cs > maxRefTableBytes {
		return fmt.Errorf("%w: qcow2 refcount table would need %d clusters, above the %d-byte limit", ErrUnsupported, clusters, maxRefTableBytes)
	}
	oldOff, oldClusters := q.h.refTableOffset, uint64(q.h.refTableClusters)
	table := make([]uint64, clusters*perCluster)
	copy(table, q.refTable)
	q.refTable = table
	start := q.nextFree
	q.nextFree += clusters
	q.growing = true
	for c := start; c < start+clusters; c++ {
		if err := q.setRef(c, 1); err != nil {
			q.growing = false
			return err
		}
	}
	q.growing = false
	raw := make([]byte, clusters*q.cs)
	for i, e := range table {
		binary.BigEndian.PutUint64(raw[i*8:], e)
	}
	if err := q.writeMeta(raw, start*q.cs, "refcount table"); err != nil {
		return err
	}
	var hdr [12]byte
	binary.BigEndian.PutUint64(hdr[:], start*q.cs)
	binary.BigEndian.PutUint32(hdr[8:], uint32(clusters))
	if err := q.writeMeta(hdr[:], 48, "header refcount table pointer"); err != nil {
		return err
	}
	q.h.refTableOffset, q.h.refTableClusters = start*q.cs, uint32(clusters)
	for c := oldOff / q.cs; c < oldOff/q.cs+oldClusters; c++ {
		if err := q.setRef(c, 0); err != nil {
			return err
		}
	}
	return nil
}

// freeCompressed drops one reference from each host cluster the compressed
// descriptor e spans, as qemu-img check counts them.
func (q *qcow2) freeCompressed(e uint64) error {
	off, n := q.compressedRange(e)
	for c := off / q.cs; c <= (off+n-1)/q.cs; c++ {
		r, err := q.getRef(c)
		if err != nil {
			return err
		}
		if r == 0 {
			return fmt.Errorf("%w: qcow2 compressed cluster at %#x has refcount 0", ErrFormat, off)
		}
		if err := q.setRef(c, r-1); err != nil {
			return err
		}
	}
	return nil
}
