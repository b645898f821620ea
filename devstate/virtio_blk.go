package devstate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/chsnap/chsnap/formats/disk"
)

// virtio-blk feature bits (virtio 1.2 §5.2.3).
const (
	blkFSizeMax     uint64 = 1 << 1  // VIRTIO_BLK_F_SIZE_MAX: size_max is valid
	blkFSegMax      uint64 = 1 << 2  // VIRTIO_BLK_F_SEG_MAX: seg_max is valid
	blkFRO          uint64 = 1 << 5  // VIRTIO_BLK_F_RO: the device is read-only
	blkFBlkSize     uint64 = 1 << 6  // VIRTIO_BLK_F_BLK_SIZE: blk_size is valid
	blkFFlush       uint64 = 1 << 9  // VIRTIO_BLK_F_FLUSH: FLUSH requests
	blkFConfigWCE   uint64 = 1 << 11 // VIRTIO_BLK_F_CONFIG_WCE: writeback is writable
	blkFDiscard     uint64 = 1 << 13 // VIRTIO_BLK_F_DISCARD: DISCARD requests
	blkFWriteZeroes uint64 = 1 << 14 // VIRTIO_BLK_F_WRITE_ZEROES: WRITE_ZEROES requests
)

// Request types and status values (virtio 1.2 §5.2.6).
const (
	blkTIn          = 0  // VIRTIO_BLK_T_IN
	blkTOut         = 1  // VIRTIO_BLK_T_OUT
	blkTFlush       = 4  // VIRTIO_BLK_T_FLUSH
	blkTGetID       = 8  // VIRTIO_BLK_T_GET_ID
	blkTDiscard     = 11 // VIRTIO_BLK_T_DISCARD
	blkTWriteZeroes = 13 // VIRTIO_BLK_T_WRITE_ZEROES

	blkSOK     = 0 // VIRTIO_BLK_S_OK
	blkSIOErr  = 1 // VIRTIO_BLK_S_IOERR
	blkSUnsupp = 2 // VIRTIO_BLK_S_UNSUPP

	// blkFlagUnmap is VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP, the only flag a
	// discard/write-zeroes segment may carry (and only for write zeroes).
	blkFlagUnmap = 1
)

// Limits of the block device. Each bounds guest-driven work or memory and
// is told to the driver through the config space where the spec has a
// field for it.
const (
	// BlockSectorSize is the virtio-blk sector: capacity and request
	// sectors count 512-byte units whatever the block size (§5.2.4).
	BlockSectorSize = 512

	// VirtioBlockQueueSize is the largest size of the one request queue.
	VirtioBlockQueueSize = 256

	blkHeaderSize = 16 // struct virtio_blk_req header: type u32, reserved u32, sector u64
	blkIDBytes    = 20 // VIRTIO_BLK_ID_BYTES

	// blkSegMax (seg_max) and blkSizeMax (size_max) tell Linux to build
	// requests of at most 126 segments of at most 128 KiB each: with the
	// header and status, 128 descriptors (half the queue) and less than
	// blkMaxRequest bytes of data.
	blkSegMax  = 126
	blkSizeMax = 128 << 10
	// blkMaxRequest caps the data of one IN or OUT request. It bounds how
	// long one request holds the vCPU thread; memory is bounded by
	// blkIOChunk whatever the request size.
	blkMaxRequest = 16 << 20
	// blkIOChunk is the size of the device's one bounce buffer: requests
	// are copied between guest memory and the disk in pieces of at most
	// this many bytes.
	blkIOChunk = 128 << 10

	// blkMaxDiscardSectors (64 MiB) and blkMaxWriteZeroesSectors (16 MiB)
	// cap one segment; Linux splits larger ranges. Write zeroes really
	// writes, so it gets the smaller bound.
	blkMaxDiscardSectors     = 64 << 20 / BlockSectorSize
	blkMaxWriteZeroesSectors = blkMaxRequest / BlockSectorSize
	// blkDiscardAlignment (in sectors) asks for 4 KiB discard granularity.
	blkDiscardAlignment = 8
	// blkMaxDWZSegments is max_discard_seg and max_write_zeroes_seg.
	blkMaxDWZSegments = 1
	blkDWZSegmentSize = 16 // struct virtio_blk_discard_write_zeroes

	// blkConfigSize covers struct virtio_blk_config up to and including
	// unused1 (offset 60); the secure-erase and zoned fields that follow
	// belong to features chsnap does not offer.
	blkConfigSize      = 60
	blkConfigWriteback = 32 // offset of the writeback byte
)

// seg_max × size_max must fit in a request, so that a driver that obeys
// both never sends a request the device refuses for its size.
const _ = uint64(blkMaxRequest - blkSegMax*blkSizeMax)

// VirtioBlockDeps is what a VirtioBlock needs from outside.
type VirtioBlockDeps struct {
	// Disk is the image. It is borrowed: the block device never closes it,
	// and the caller keeps it open for as long as the device lives.
	Disk disk.Disk
	// ID is answered to GET_ID (at most 20 bytes; shorter IDs are padded
	// with NULs, a full one is not NUL-terminated), e.g. "disk0".
	ID string
}

// VirtioBlockState is what a VirtioBlock keeps beyond its transport. The
// queues and negotiated features are in VirtioMMIOState.
type VirtioBlockState struct {
	// Sectors is the capacity shown to the guest in 512-byte sectors.
	// Restore refuses a disk of another size: the guest cached this one.
	Sectors uint64
	// ReadOnly records whether VIRTIO_BLK_F_RO was offered. Restore
	// refuses a disk opened the other way, since the guest negotiated its
	// features from the offer.
	ReadOnly bool
	// Writethrough is set when the driver wrote 0 to the config-space
	// writeback field (VIRTIO_BLK_F_CONFIG_WCE); false is the default
	// writeback mode.
	Writethrough bool
}

// VirtioBlock is a virtio-blk device (virtio 1.2 §5.2) over a disk.Disk,
// with one request queue. It offers VERSION_1, INDIRECT_DESC, EVENT_IDX,
// SIZE_MAX, SEG_MAX, BLK_SIZE (512), FLUSH and CONFIG_WCE, plus DISCARD and
// WRITE_ZEROES on a writable disk or RO on a read-only one.
//
// Requests are processed synchronously inside Notify, on the vCPU thread
// that wrote QueueNotify: every available chain is popped, checked, served
// through one bounded bounce buffer, completed, and the driver is
// interrupted once per batch if it asked to be. That is simple and
// obviously correct at a snapshot (when the vCPUs are paused no request is
// in flight); a worker goroutine woken by an ioeventfd is a later
// optimisation.
//
// Each chain is read as two byte streams, whatever its descriptor layout
// (§2.6.4): the readable part starts with the 16-byte header (followed by
// the data of OUT, DISCARD and WRITE_ZEROES) and the writable part ends
// with the status byte (preceded by the data of IN and GET_ID). A request
// whose shape does not match its type, whose length is not a multiple of
// 512, whose sectors overflow or run past the capacity, or whose data
// exceeds 16 MiB is answered VIRTIO_BLK_S_IOERR without touching the disk;
// an unknown type, or a feature not negotiated, VIRTIO_BLK_S_UNSUPP. A chain
// with no writable byte for the status, or one the queue itself refuses,
// is returned with 0 bytes and the device fails (VirtioTransport.Fail,
// DEVICE_NEEDS_RESET) until the driver resets it.
//
// When the driver did not negotiate FLUSH, or set writeback to 0, every
// write is flushed to the disk before it completes (writethrough).
//
// Methods are safe for concurrent use; one mutex serialises request
// processing, config access, Flush and State.
type VirtioBlock struct {
	disk     disk.Disk
	id       [blkIDBytes]byte
	sectors  uint64
	readOnly bool
	offer    uint64

	mu sync.Mutex
	// Every field below is guarded by mu.
	writethrough bool          // config writeback == 0
	active       bool          // activated and not reset
	failed       bool          // Fail was called since activation
	ctx          VirtioContext // valid while active
	chain        Chain         // reused by every pop
	buf          []byte        // the bounce buffer, blkIOChunk bytes
	// Scratch copies of guest structures, kept here so that passing them
	// through the Memory interface does not allocate per request.
	hdr    [blkHeaderSize]byte
	seg    [blkDWZSegmentSize]byte
	status [1]byte
}

// ErrVirtioBlock is wrapped by NewVirtioBlock and RestoreVirtioBlock errors
// about the deps (a missing disk, an ID too long, a disk too large).
var ErrVirtioBlock = errors.New("devstate: virtio-blk")

// NewVirtioBlock builds a block device over deps.Disk, in its reset state.
// A disk whose size is not a multiple of 512 shows only its whole sectors.
func NewVirtioBlock(deps VirtioBlockDeps) (*VirtioBlock, error) {
	if deps.Disk == nil {
		return nil, fmt.Errorf("%w %q: no disk", ErrVirtioBlock, deps.ID)
	}
	if len(deps.ID) > blkIDBytes {
		return nil, fmt.Errorf("%w %q: id is %d bytes, at most %d", ErrVirtioBlock, deps.ID, len(deps.ID), blkIDBytes)
	}
	size := deps.Disk.Size()
	if size > math.MaxInt64 {
		return nil, fmt.Errorf("%w %q: disk size %d above %d", ErrVirtioBlock, deps.ID, size, int64(math.MaxInt64))
	}
	b := &VirtioBlock{
		disk:     deps.Disk,
		sectors:  size / BlockSectorSize,
		readOnly: deps.Disk.ReadOnly(),
		buf:      make([]byte, blkIOChunk),
	}
	copy(b.id[:], deps.ID)
	b.offer = FeatureVersion1 | FeatureIndirectDesc | FeatureRingEventIdx |
		blkFSizeMax | blkFSegMax | blkFBlkSize | blkFFlush | blkFConfigWCE
	if b.readOnly {
		b.offer |= blkFRO
	} else {
		b.offer |= blkFDiscard | blkFWriteZeroes
	}
	return b, nil
}

// RestoreVirtioBlock rebuilds a block device from st over deps.Disk,
// refusing a disk whose size or read-only mode differs from the saved one.
// The device comes back inactive; RestoreVirtioMMIO activates it.
func RestoreVirtioBlock(st VirtioBlockState, deps VirtioBlockDeps) (*VirtioBlock, error) {
	b, err := NewVirtioBlock(deps)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if st.Sectors != b.sectors {
		return nil, fmt.Errorf("restore virtio-blk %s: %w: saved with %d sectors, disk has %d",
			deps.ID, ErrInvalidState, st.Sectors, b.sectors)
	}
	if st.ReadOnly != b.readOnly {
		return nil, fmt.Errorf("restore virtio-blk %s: %w: saved with read-only %v, disk is read-only %v",
			deps.ID, ErrInvalidState, st.ReadOnly, b.readOnly)
	}
	b.writethrough = st.Writethrough
	return b, nil
}

// State returns the device's saveable state. Preconditions: the vCPUs are
// paused, so no request is being processed and none is in flight.
func (b *VirtioBlock) State() VirtioBlockState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return VirtioBlockState{Sectors: b.sectors, ReadOnly: b.readOnly, Writethrough: b.writethrough}
}

// Flush makes every write the device completed durable (disk.Flush). It
// waits for a Notify in progress, so it is safe at any time; before a
// snapshot the vm calls it after pausing the vCPUs (and any goroutine that
// calls Notify), so no request completes after it.
func (b *VirtioBlock) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.disk.Flush(); err != nil {
		return fmt.Errorf("flush virtio-blk %s: %w", b.idString(), err)
	}
	return nil
}

func (b *VirtioBlock) idString() string {
	n := 0
	for n < len(b.id) && b.id[n] != 0 {
		n++
	}
	return string(b.id[:n])
}

// DeviceID implements VirtioDevice.
func (b *VirtioBlock) DeviceID() uint32 { return VirtioIDBlock }

// Features implements VirtioDevice.
func (b *VirtioBlock) Features() uint64 { return b.offer }

// QueueMaxSizes implements VirtioDevice: one request queue.
func (b *VirtioBlock) QueueMaxSizes() []uint16 { return []uint16{VirtioBlockQueueSize} }

// config renders struct virtio_blk_config (§5.2.4) with mu held.
func (b *VirtioBlock) config() [blkConfigSize]byte {
	var c [blkConfigSize]byte
	le := binary.LittleEndian
	le.PutUint64(c[0:], b.sectors)  // capacity
	le.PutUint32(c[8:], blkSizeMax) // size_max
	le.PutUint32(c[12:], blkSegMax) // seg_max
	// geometry (16..19) and topology (24..31) stay 0: not offered.
	le.PutUint32(c[20:], BlockSectorSize) // blk_size
	if !b.writethrough {
		c[blkConfigWriteback] = 1
	}
	le.PutUint16(c[34:], 1) // num_queues (meaningful only with MQ)
	if !b.readOnly {
		le.PutUint32(c[36:], blkMaxDiscardSectors)     // max_discard_sectors
		le.PutUint32(c[40:], blkMaxDWZSegments)        // max_discard_seg
		le.PutUint32(c[44:], blkDiscardAlignment)      // discard_sector_alignment
		le.PutUint32(c[48:], blkMaxWriteZeroesSectors) // max_write_zeroes_sectors
		le.PutUint32(c[52:], blkMaxDWZSegments)        // max_write_zeroes_seg
		// write_zeroes_may_unmap (56) stays 0: zeroes are always written.
	}
	return c
}

// ReadConfig implements VirtioDevice.
func (b *VirtioBlock) ReadConfig(off uint32, data []byte) {
	b.mu.Lock()
	c := b.config()
	b.mu.Unlock()
	if off < uint32(len(c)) {
		copy(data, c[off:])
	}
}

// WriteConfig implements VirtioDevice. Only the writeback byte is
// writable (VIRTIO_BLK_F_CONFIG_WCE, offered always), with 0 or 1.
func (b *VirtioBlock) WriteConfig(off uint32, data []byte) {
	if off != blkConfigWriteback || len(data) != 1 || data[0] > 1 {
		return
	}
	b.mu.Lock()
	b.writethrough = data[0] == 0
	b.mu.Unlock()
}

// Activate implements VirtioDevice.
func (b *VirtioBlock) Activate(ctx VirtioContext) error {
	if len(ctx.Queues) != 1 || ctx.Queues[0] == nil || ctx.Transport == nil {
		return fmt.Errorf("virtio-blk %s: activate with %d queues and transport %v, want 1 queue and a transport",
			b.idString(), len(ctx.Queues), ctx.Transport != nil)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ctx, b.active, b.failed = ctx, true, false
	return nil
}

// Reset implements VirtioDevice. The writeback mode returns to its
// default, as after power-on.
func (b *VirtioBlock) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ctx, b.active, b.failed = VirtioContext{}, false, false
	b.writethrough = false
	b.chain = Chain{Buffers: b.chain.Buffers[:0]}
}

// Notify implements VirtioDevice: it serves every available request on the
// calling (vCPU) thread. The loop runs until the ring is empty; a driver
// can keep it going only by adding requests from other vCPUs, which stops
// once those are paused, so a pause always gets through.
func (b *VirtioBlock) Notify(queue int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.active || b.failed || queue != 0 || !b.ctx.Queues[0].Ready() {
		return
	}
	q := b.ctx.Queues[0]
	for {
		ok, err := q.PopInto(&b.chain)
		if err != nil {
			if ok {
				_ = q.Push(b.chain.Head, 0)
			}
			b.failLocked(err)
			break
		}
		if !ok {
			break
		}
		if err := b.serveLocked(q, &b.chain); err != nil {
			b.failLocked(err)
			break
		}
	}
	if err := b.ctx.Transport.SignalUsed(0); err != nil {
		b.failLocked(err)
	}
}

func (b *VirtioBlock) failLocked(err error) {
	if b.failed {
		return
	}
	b.failed = true
	b.ctx.Transport.Fail(fmt.Errorf("virtio-blk %s: %w", b.idString(), err))
}

// serveLocked answers one chain and pushes it back. An error means the
// chain could not be answered (no status byte, or guest memory refused the
// status or the used ring): the device must fail.
func (b *VirtioBlock) serveLocked(q *Queue, c *Chain) error {
	if c.WritableLen == 0 {
		_ = q.Push(c.Head, 0)
		return fmt.Errorf("request %d: %w: no writable status byte", c.Head, ErrVirtqueue)
	}
	statusOff := c.WritableLen - 1
	status, written := b.executeLocked(c, statusOff)
	b.status[0] = status
	if _, err := c.WriteAt(b.status[:], int64(statusOff)); err != nil {
		_ = q.Push(c.Head, 0)
		return fmt.Errorf("request %d: write status: %w", c.Head, err)
	}
	// Used len is a prefix the device wrote (§2.7.8.2): the data, and the
	// status only when it directly follows all of it.
	if written == statusOff {
		written++
	}
	return q.Push(c.Head, uint32(written))
}

// executeLocked performs the request and returns its status and how many
// bytes at the start of the writable part it filled.
func (b *VirtioBlock) executeLocked(c *Chain, dataLen uint64) (status byte, written uint64) {
	hdr := b.hdr[:]
	if c.ReadableLen < blkHeaderSize {
		return blkSIOErr, 0
	}
	if _, err := c.ReadAt(hdr, 0); err != nil {
		return blkSIOErr, 0
	}
	typ := binary.LittleEndian.Uint32(hdr[0:])
	sector := binary.LittleEndian.Uint64(hdr[8:])
	payload := c.ReadableLen - blkHeaderSize // readable bytes after the header
	switch typ {
	case blkTIn:
		if payload != 0 {
			return blkSIOErr, 0
		}
		return b.readLocked(c, sector, dataLen)
	case blkTOut:
		if dataLen != 0 || b.readOnly {
			return blkSIOErr, 0
		}
		return b.writeLocked(c, sector, payload), 0
	case blkTFlush:
		if payload != 0 || dataLen != 0 {
			return blkSIOErr, 0
		}
		if err := b.disk.Flush(); err != nil {
			return blkSIOErr, 0
		}
		return blkSOK, 0
	case blkTGetID:
		if payload != 0 || dataLen < blkIDBytes {
			return blkSIOErr, 0
		}
		if _, err := c.WriteAt(b.id[:], 0); err != nil {
			return blkSIOErr, 0
		}
		return blkSOK, blkIDBytes
	case blkTDiscard, blkTWriteZeroes:
		feature := blkFDiscard
		if typ == blkTWriteZeroes {
			feature = blkFWriteZeroes
		}
		if b.ctx.Features&feature == 0 {
			return blkSUnsupp, 0
		}
		if b.readOnly || dataLen != 0 {
			return blkSIOErr, 0
		}
		return b.discardLocked(c, typ == blkTWriteZeroes, payload), 0
	}
	return blkSUnsupp, 0
}

// rangeOK reports whether n bytes at sector are whole sectors inside the
// disk, without overflow: sector + n/512 ≤ capacity.
func (b *VirtioBlock) rangeOK(sector, n uint64) bool {
	return n%BlockSectorSize == 0 && sector <= b.sectors && n/BlockSectorSize <= b.sectors-sector
}

// readLocked serves IN: n bytes from sector into the writable part.
func (b *VirtioBlock) readLocked(c *Chain, sector, n uint64) (byte, uint64) {
	if n > blkMaxRequest || !b.rangeOK(sector, n) {
		return blkSIOErr, 0
	}
	base := sector * BlockSectorSize // ≤ disk size ≤ MaxInt64
	for off := uint64(0); off < n; {
		k := min(n-off, uint64(len(b.buf)))
		p := b.buf[:k]
		m, err := b.disk.ReadAt(p, int64(base+off))
		if m != len(p) || err != nil && !errors.Is(err, io.EOF) {
			return blkSIOErr, off
		}
		if _, err := c.WriteAt(p, int64(off)); err != nil {
			return blkSIOErr, off
		}
		off += k
	}
	return blkSOK, n
}

// writeLocked serves OUT: n bytes of the readable part, after the header,
// to sector.
func (b *VirtioBlock) writeLocked(c *Chain, sector, n uint64) byte {
	if n > blkMaxRequest || !b.rangeOK(sector, n) {
		return blkSIOErr
	}
	base := sector * BlockSectorSize
	for off := uint64(0); off < n; {
		k := min(n-off, uint64(len(b.buf)))
		p := b.buf[:k]
		if _, err := c.ReadAt(p, int64(blkHeaderSize+off)); err != nil {
			return blkSIOErr
		}
		if _, err := b.disk.WriteAt(p, int64(base+off)); err != nil {
			return blkSIOErr
		}
		off += k
	}
	return b.syncLocked()
}

// syncLocked completes a write: in writethrough mode it flushes first.
func (b *VirtioBlock) syncLocked() byte {
	if b.writethrough || b.ctx.Features&blkFFlush == 0 {
		if err := b.disk.Flush(); err != nil {
			return blkSIOErr
		}
	}
	return blkSOK
}

// discardLocked serves DISCARD and WRITE_ZEROES: payload readable bytes of
// struct virtio_blk_discard_write_zeroes segments (§5.2.6.2).
func (b *VirtioBlock) discardLocked(c *Chain, zeroes bool, payload uint64) byte {
	if payload == 0 || payload%blkDWZSegmentSize != 0 {
		return blkSIOErr
	}
	if payload > blkMaxDWZSegments*blkDWZSegmentSize {
		return blkSUnsupp // as QEMU: more segments than max_*_seg
	}
	seg := b.seg[:]
	if _, err := c.ReadAt(seg, blkHeaderSize); err != nil {
		return blkSIOErr
	}
	sector := binary.LittleEndian.Uint64(seg[0:])
	num := uint64(binary.LittleEndian.Uint32(seg[8:]))
	flags := binary.LittleEndian.Uint32(seg[12:])
	// §5.2.6.2: unknown flags, and unmap on a discard, are UNSUPP.
	if flags&^blkFlagUnmap != 0 || !zeroes && flags != 0 {
		return blkSUnsupp
	}
	limit := uint64(blkMaxDiscardSectors)
	if zeroes {
		limit = blkMaxWriteZeroesSectors
	}
	if num > limit || !b.rangeOK(sector, num*BlockSectorSize) {
		return blkSIOErr
	}
	off, n := sector*BlockSectorSize, num*BlockSectorSize
	if !zeroes {
		if err := b.disk.Discard(int64(off), int64(n)); err != nil {
			return blkSIOErr
		}
		return b.syncLocked()
	}
	// Discard may leave old contents (qcow2 v2), so zeroes are written;
	// the unmap flag only permits deallocation, it never requires it.
	zero := b.buf[:min(n, uint64(len(b.buf)))]
	clear(zero)
	for done := uint64(0); done < n; {
		k := min(n-done, uint64(len(zero)))
		if _, err := b.disk.WriteAt(zero[:k], int64(off+done)); err != nil {
			return blkSIOErr
		}
		done += k
	}
	return b.syncLocked()
}
