package devstate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// ErrVirtqueue is wrapped by every error caused by what the driver put in a
// virtqueue or its configuration: a bad ring address or size, an avail index
// that jumped, a malformed descriptor chain. The device should answer it by
// failing (VirtioTransport.Fail), which sets DEVICE_NEEDS_RESET.
var ErrVirtqueue = errors.New("devstate: malformed virtqueue")

// ErrQueueNotReady is returned by Pop and Push on a queue the driver has not
// made ready (or that was reset).
var ErrQueueNotReady = errors.New("devstate: virtqueue not ready")

// Split virtqueue layout (virtio 1.2 §2.7): the descriptor table, the
// driver area ("avail ring") and the device area ("used ring").
const (
	descSize  = 16 // struct virtq_desc: addr u64, len u32, flags u16, next u16
	usedElem  = 8  // struct virtq_used_elem: id u32, len u32
	ringHdr   = 4  // flags u16, idx u16 at the start of avail and used
	descAlign = 16 // §2.7 alignment table: Descriptor Table 16,
	availAlgn = 2  // Available Ring 2,
	usedAlign = 4  // Used Ring 4.

	descFNext     = 1 // VIRTQ_DESC_F_NEXT
	descFWrite    = 2 // VIRTQ_DESC_F_WRITE
	descFIndirect = 4 // VIRTQ_DESC_F_INDIRECT

	availFNoInterrupt = 1 // VIRTQ_AVAIL_F_NO_INTERRUPT
)

// MaxChainBuffers caps the buffers in one chain, indirect tables included:
// virtio 1.2 §2.7.5.3.1 forbids chains longer than the queue size (which Pop
// enforces), and the largest queue is MaxQueueSize.
const MaxChainBuffers = MaxQueueSize

// descTableBytes, availBytes and usedBytes are the sizes of the three areas
// of a queue of size n, used_event and avail_event included.
func descTableBytes(n uint16) uint64 { return descSize * uint64(n) }
func availBytes(n uint16) uint64     { return ringHdr + 2*uint64(n) + 2 }
func usedBytes(n uint16) uint64      { return ringHdr + usedElem*uint64(n) + 2 }

// memoryBarrier orders this thread's earlier stores to guest memory before
// its later loads and stores, against the guest's vCPUs. Guest memory is
// plain memory shared with another CPU, outside Go's memory model, so the
// Go compiler's ordering of the copies (each is a call through the Memory
// interface and is not reordered) is not enough on its own: x86 may let a
// later load pass an earlier store. A sequentially consistent atomic
// read-modify-write is a full fence on every architecture Go supports (a
// LOCK-prefixed instruction on amd64).
func memoryBarrier() { barrierWord.Add(1) }

var barrierWord atomic.Uint32

// Buffer is one guest buffer of a descriptor chain, already checked to lie
// in guest RAM.
type Buffer struct {
	// GPA is the buffer's guest-physical address.
	GPA uint64
	// Len is its length in bytes, never 0.
	Len uint32
	// Writable is set for device-writable buffers (VIRTQ_DESC_F_WRITE).
	Writable bool
}

// Chain is one descriptor chain popped from a virtqueue: its head index, to
// give back with Push, and its buffers, readable ones first. The buffers'
// addresses and lengths are a checked copy of the descriptors; the bytes
// they point to stay in guest memory, which the guest may still change.
type Chain struct {
	// Head is the index of the chain's first descriptor.
	Head uint16
	// Buffers are the chain's buffers: Readable device-readable ones, then
	// the device-writable ones. At most MaxChainBuffers.
	Buffers []Buffer
	// Readable is how many of Buffers are device-readable.
	Readable int
	// ReadableLen is the total length of the readable buffers.
	ReadableLen uint64
	// WritableLen is the total length of the writable buffers.
	WritableLen uint64

	mem Memory
}

// ReadAt copies the readable part of the chain, from byte off, into p, with
// io.ReaderAt semantics: fewer than len(p) bytes come with io.EOF.
func (c *Chain) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read chain %d: negative offset %d", c.Head, off)
	}
	return c.copyBuffers(p, uint64(off), c.Buffers[:c.Readable], false)
}

// WriteAt copies p into the writable part of the chain from byte off, with
// io.WriterAt semantics: when p does not fit, what fits is written and the
// error is io.ErrShortWrite.
func (c *Chain) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("write chain %d: negative offset %d", c.Head, off)
	}
	return c.copyBuffers(p, uint64(off), c.Buffers[c.Readable:], true)
}

// ReadAll returns the whole readable part of the chain, refusing one longer
// than limit bytes (the device's own ceiling; never a guest number).
func (c *Chain) ReadAll(limit int) ([]byte, error) {
	if limit < 0 || c.ReadableLen > uint64(limit) {
		return nil, fmt.Errorf("read chain %d: %w: %d readable bytes, limit %d", c.Head, ErrVirtqueue, c.ReadableLen, limit)
	}
	p := make([]byte, c.ReadableLen)
	n, err := c.ReadAt(p, 0)
	if err != nil && !(errors.Is(err, io.EOF) && n == len(p)) {
		return nil, err
	}
	return p, nil
}

func (c *Chain) copyBuffers(p []byte, off uint64, bufs []Buffer, write bool) (int, error) {
	done := 0
	for _, b := range bufs {
		if done == len(p) {
			return done, nil
		}
		if off >= uint64(b.Len) {
			off -= uint64(b.Len)
			continue
		}
		n := min(uint64(b.Len)-off, uint64(len(p)-done))
		gpa := int64(b.GPA + off)
		var err error
		if write {
			_, err = c.mem.WriteAt(p[done:done+int(n)], gpa)
		} else {
			_, err = c.mem.ReadAt(p[done:done+int(n)], gpa)
		}
		if err != nil {
			return done, fmt.Errorf("chain %d buffer at %#x: %w: %w", c.Head, b.GPA, ErrVirtqueue, err)
		}
		done += int(n)
		off = 0
	}
	if done < len(p) {
		if write {
			return done, io.ErrShortWrite
		}
		return done, io.EOF
	}
	return done, nil
}

// QueueState is the saveable state of one split virtqueue. The rings'
// contents, avail and used idx included, live in guest RAM and are saved
// with it.
type QueueState struct {
	// MaxSize is the largest size the device allows (QueueNumMax).
	MaxSize uint16
	// Size is the size the driver chose (QueueNum): a power of two, at
	// most MaxSize.
	Size uint16
	// Ready is set once the driver enabled the queue (QueueReady).
	Ready bool
	// DescTable, AvailRing and UsedRing are the guest-physical addresses of
	// the descriptor table, driver area and device area.
	DescTable, AvailRing, UsedRing uint64
	// NextAvail is the avail ring position the device reads next.
	NextAvail uint16
	// NextUsed is the used ring position the device writes next (the used
	// idx it last published).
	NextUsed uint16
	// EventIdx is set when the driver accepted FeatureRingEventIdx.
	EventIdx bool
}

// Queue is a split virtqueue (virtio 1.2 §2.7), device side. The transport
// configures it from the driver's register writes; once the device is
// activated the device pops chains and pushes them back.
//
// Every number read from the rings is copied once, checked, then used:
// Pop reads the avail idx once per call and refuses one that moved by more
// than the queue size, walks at most Size descriptors (loop detection), and
// checks each buffer against guest memory. Methods are safe for concurrent
// use; a queue is normally used by one device goroutine at a time.
type Queue struct {
	mu sync.Mutex
	// Every field below is guarded by mu.
	maxSize   uint16
	size      uint16
	ready     bool
	desc      uint64
	avail     uint64
	used      uint64
	nextAvail uint16
	nextUsed  uint16
	eventIdx  bool
	indirect  bool   // FeatureIndirectDesc accepted
	signalled uint16 // used idx when NeedsInterrupt last answered
	pending   uint32 // pushes since then, saturating
	mem       Memory
	scratch   [descSize]byte // avoids an allocation per guest access
}

func newQueue(maxSize uint16, mem Memory) *Queue {
	q := &Queue{maxSize: maxSize, mem: mem}
	q.resetLocked()
	return q
}

// resetLocked returns the queue to its state after a device reset.
func (q *Queue) resetLocked() {
	q.size, q.ready = q.maxSize, false
	q.desc, q.avail, q.used = 0, 0, 0
	q.nextAvail, q.nextUsed, q.signalled, q.pending = 0, 0, 0, 0
	q.eventIdx, q.indirect = false, false
}

// RestoreQueue rebuilds a queue from st, checking every field as if the
// driver had written it: Size at most MaxSize (itself a power of two up to
// MaxQueueSize) and, for a ready queue, a power of two with the three areas
// aligned as virtio 1.2 §2.7 requires and wholly inside guest RAM. A queue
// that is not ready may hold any addresses: they are checked when the
// driver makes it ready. Indirect descriptors are refused until the
// transport records that FeatureIndirectDesc was accepted.
func RestoreQueue(st QueueState, mem Memory) (*Queue, error) {
	return restoreQueue(st, mem, true)
}

// restoreQueue is RestoreQueue; with checkReady false a ready queue's size
// and areas are not checked either, as for a device not yet activated: the
// driver may have made a bad queue ready, and activation will refuse it.
func restoreQueue(st QueueState, mem Memory, checkReady bool) (*Queue, error) {
	if !validMaxSize(st.MaxSize) {
		return nil, fmt.Errorf("restore queue: %w: max size %d is not a power of two from 1 to %d",
			ErrInvalidState, st.MaxSize, MaxQueueSize)
	}
	if st.Size > st.MaxSize {
		return nil, fmt.Errorf("restore queue: %w: size %d above max %d", ErrInvalidState, st.Size, st.MaxSize)
	}
	if st.Ready && checkReady {
		if err := checkQueueConfig(st.Size, st.MaxSize, st.DescTable, st.AvailRing, st.UsedRing, mem); err != nil {
			return nil, fmt.Errorf("restore queue: %w: %w", ErrInvalidState, err)
		}
	}
	q := &Queue{
		maxSize:   st.MaxSize,
		size:      st.Size,
		ready:     st.Ready,
		desc:      st.DescTable,
		avail:     st.AvailRing,
		used:      st.UsedRing,
		nextAvail: st.NextAvail,
		nextUsed:  st.NextUsed,
		eventIdx:  st.EventIdx,
		signalled: st.NextUsed,
		mem:       mem,
	}
	return q, nil
}

func validMaxSize(n uint16) bool { return n != 0 && n&(n-1) == 0 && n <= MaxQueueSize }

// checkQueueConfig checks a queue's size and areas as virtio 1.2 §2.7 asks.
func checkQueueConfig(size, maxSize uint16, desc, avail, used uint64, mem Memory) error {
	if size == 0 || size&(size-1) != 0 || size > maxSize {
		return fmt.Errorf("%w: size %d is not a power of two from 1 to %d", ErrVirtqueue, size, maxSize)
	}
	areas := [...]struct {
		name       string
		addr, n, a uint64
	}{
		{"descriptor table", desc, descTableBytes(size), descAlign},
		{"avail ring", avail, availBytes(size), availAlgn},
		{"used ring", used, usedBytes(size), usedAlign},
	}
	for _, ar := range areas {
		if ar.addr%ar.a != 0 {
			return fmt.Errorf("%w: %s at %#x is not %d-byte aligned", ErrVirtqueue, ar.name, ar.addr, ar.a)
		}
		if err := checkRange(mem, ar.addr, ar.n); err != nil {
			return fmt.Errorf("%w: %s at %#x (%d bytes): %w", ErrVirtqueue, ar.name, ar.addr, ar.n, err)
		}
	}
	return nil
}

// State returns the queue's saveable state. Preconditions: the device is
// quiesced, so the state does not change under the caller.
func (q *Queue) State() QueueState {
	q.mu.Lock()
	defer q.mu.Unlock()
	return QueueState{
		MaxSize:   q.maxSize,
		Size:      q.size,
		Ready:     q.ready,
		DescTable: q.desc,
		AvailRing: q.avail,
		UsedRing:  q.used,
		NextAvail: q.nextAvail,
		NextUsed:  q.nextUsed,
		EventIdx:  q.eventIdx,
	}
}

// Size returns the queue size the driver chose.
func (q *Queue) Size() uint16 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.size
}

// Ready reports whether the driver enabled the queue.
func (q *Queue) Ready() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.ready
}

func (q *Queue) read16(gpa uint64) (uint16, error) {
	if _, err := q.mem.ReadAt(q.scratch[:2], int64(gpa)); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(q.scratch[:2]), nil
}

func (q *Queue) write16(gpa uint64, v uint16) error {
	binary.LittleEndian.PutUint16(q.scratch[:2], v)
	_, err := q.mem.WriteAt(q.scratch[:2], int64(gpa))
	return err
}

// Pop takes the next available descriptor chain, or reports false when the
// driver has made none available. It allocates a new Chain; PopInto reuses
// one.
func (q *Queue) Pop() (*Chain, bool, error) {
	c := new(Chain)
	ok, err := q.PopInto(c)
	if !ok {
		return nil, false, err
	}
	return c, true, err
}

// PopInto is Pop filling c (its Buffers slice is reused). It returns true
// when a chain was consumed from the avail ring, even if that chain was
// malformed: then the error wraps ErrVirtqueue, c.Head is still valid and
// the device may Push it back with 0 bytes before failing. An avail idx
// that moved by more than the queue size consumes nothing and returns
// false with an error.
//
// With FeatureRingEventIdx, finding the ring empty publishes avail_event so
// the driver notifies on its next buffer, then reads the avail idx once more
// to close the race with a driver that added one meanwhile.
func (q *Queue) PopInto(c *Chain) (bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	c.Head, c.Buffers, c.Readable, c.ReadableLen, c.WritableLen, c.mem = 0, c.Buffers[:0], 0, 0, 0, q.mem
	if !q.ready {
		return false, ErrQueueNotReady
	}
	n, err := q.availableLocked()
	if err != nil {
		return false, err
	}
	if n == 0 && q.eventIdx {
		if err := q.write16(q.used+ringHdr+usedElem*uint64(q.size), q.nextAvail); err != nil {
			return false, fmt.Errorf("write avail_event: %w: %w", ErrVirtqueue, err)
		}
		memoryBarrier()
		if n, err = q.availableLocked(); err != nil {
			return false, err
		}
	}
	if n == 0 {
		return false, nil
	}
	// The avail idx was read before the ring entry: the barrier keeps the
	// entry load after it (loads are ordered on x86; this is for others).
	memoryBarrier()
	slot := uint64(q.nextAvail % q.size)
	head, err := q.read16(q.avail + ringHdr + 2*slot)
	if err != nil {
		return false, fmt.Errorf("read avail ring slot %d: %w: %w", slot, ErrVirtqueue, err)
	}
	q.nextAvail++
	c.Head = head
	if err := q.walkLocked(c); err != nil {
		return true, fmt.Errorf("chain %d: %w", head, err)
	}
	return true, nil
}

// availableLocked reads the avail idx once and returns how many chains are
// waiting, refusing a count above the queue size.
func (q *Queue) availableLocked() (uint16, error) {
	idx, err := q.read16(q.avail + 2)
	if err != nil {
		return 0, fmt.Errorf("read avail idx: %w: %w", ErrVirtqueue, err)
	}
	n := idx - q.nextAvail
	if n > q.size {
		return 0, fmt.Errorf("%w: avail idx %d is %d ahead of next avail %d, more than queue size %d",
			ErrVirtqueue, idx, n, q.nextAvail, q.size)
	}
	return n, nil
}

// desc is a checked-on-use copy of one struct virtq_desc.
type desc struct {
	addr  uint64
	len   uint32
	flags uint16
	next  uint16
}

func (q *Queue) readDesc(table uint64, i uint16) (desc, error) {
	if _, err := q.mem.ReadAt(q.scratch[:descSize], int64(table+descSize*uint64(i))); err != nil {
		return desc{}, fmt.Errorf("read descriptor %d: %w: %w", i, ErrVirtqueue, err)
	}
	b := q.scratch[:descSize]
	return desc{
		addr:  binary.LittleEndian.Uint64(b[0:]),
		len:   binary.LittleEndian.Uint32(b[8:]),
		flags: binary.LittleEndian.Uint16(b[12:]),
		next:  binary.LittleEndian.Uint16(b[14:]),
	}, nil
}

// walkLocked follows the chain from c.Head into c. The loop runs at most
// the table's length in hops, which catches loops and over-long chains.
func (q *Queue) walkLocked(c *Chain) error {
	table, tableLen := q.desc, q.size
	idx := c.Head
	indirect := false
	if idx >= tableLen {
		return fmt.Errorf("%w: head index %d outside queue size %d", ErrVirtqueue, idx, tableLen)
	}
	for hops := 0; ; hops++ {
		if hops >= int(tableLen) {
			return fmt.Errorf("%w: chain longer than %d descriptors (a loop?)", ErrVirtqueue, tableLen)
		}
		d, err := q.readDesc(table, idx)
		if err != nil {
			return err
		}
		if d.flags&descFIndirect != 0 {
			switch {
			case indirect:
				return fmt.Errorf("%w: indirect descriptor %d inside an indirect table", ErrVirtqueue, idx)
			case !q.indirect:
				return fmt.Errorf("%w: indirect descriptor %d but VIRTIO_RING_F_INDIRECT_DESC not negotiated", ErrVirtqueue, idx)
			case d.flags&descFNext != 0:
				return fmt.Errorf("%w: indirect descriptor %d also has VIRTQ_DESC_F_NEXT", ErrVirtqueue, idx)
			case d.len == 0 || d.len%descSize != 0:
				return fmt.Errorf("%w: indirect table length %d is not a positive multiple of %d", ErrVirtqueue, d.len, descSize)
			case d.len/descSize > uint32(q.size):
				return fmt.Errorf("%w: indirect table of %d descriptors exceeds queue size %d", ErrVirtqueue, d.len/descSize, q.size)
			case d.addr%descAlign != 0:
				// §2.7.5.3.1 does not demand alignment of an indirect
				// table, but every driver aligns it; refusing keeps
				// descriptor reads within one guest page.
				return fmt.Errorf("%w: indirect table at %#x is not %d-byte aligned", ErrVirtqueue, d.addr, descAlign)
			}
			if err := checkRangeBuf(q.mem, d.addr, uint64(d.len), q.scratch[:1]); err != nil {
				return fmt.Errorf("%w: indirect table at %#x (%d bytes): %w", ErrVirtqueue, d.addr, d.len, err)
			}
			// §2.7.5.3.2: the device must accept zero or more direct
			// descriptors followed by one indirect one; the table gets its
			// own budget of tableLen hops, and the buffer count stays
			// capped at the queue size below.
			table, tableLen, idx, indirect = d.addr, uint16(d.len/descSize), 0, true
			hops = -1
			continue
		}
		if d.len == 0 {
			return fmt.Errorf("%w: descriptor %d has length 0", ErrVirtqueue, idx)
		}
		if err := checkRangeBuf(q.mem, d.addr, uint64(d.len), q.scratch[:1]); err != nil {
			return fmt.Errorf("%w: descriptor %d buffer %#x+%d: %w", ErrVirtqueue, idx, d.addr, d.len, err)
		}
		writable := d.flags&descFWrite != 0
		if !writable && c.Readable != len(c.Buffers) {
			return fmt.Errorf("%w: readable descriptor %d after a writable one", ErrVirtqueue, idx)
		}
		if len(c.Buffers) >= int(q.size) {
			// §2.7.5.3.1: no chain longer than the queue size.
			return fmt.Errorf("%w: chain has more than queue size %d buffers", ErrVirtqueue, q.size)
		}
		c.Buffers = append(c.Buffers, Buffer{GPA: d.addr, Len: d.len, Writable: writable})
		if writable {
			c.WritableLen += uint64(d.len)
		} else {
			c.Readable++
			c.ReadableLen += uint64(d.len)
		}
		if d.flags&descFNext == 0 {
			return nil
		}
		if d.next >= tableLen {
			return fmt.Errorf("%w: descriptor %d next %d outside table of %d", ErrVirtqueue, idx, d.next, tableLen)
		}
		idx = d.next
	}
}

// UndoPop gives back the most recently popped chain, so the next Pop
// returns it again: for a device that popped a buffer it cannot fill yet.
// It must directly follow that Pop, with no Push in between.
func (q *Queue) UndoPop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.nextAvail--
}

// Push returns chain head to the driver with written bytes stored in its
// writable part. It writes the used element, then (after a barrier, so the
// driver never sees the new idx before the element) the used idx. Call
// NeedsInterrupt, or the transport's SignalUsed, after a batch of pushes.
func (q *Queue) Push(head uint16, written uint32) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.ready {
		return ErrQueueNotReady
	}
	if head >= q.size {
		return fmt.Errorf("push chain %d: %w: head outside queue size %d", head, ErrVirtqueue, q.size)
	}
	slot := uint64(q.nextUsed % q.size)
	binary.LittleEndian.PutUint32(q.scratch[0:], uint32(head))
	binary.LittleEndian.PutUint32(q.scratch[4:], written)
	if _, err := q.mem.WriteAt(q.scratch[:usedElem], int64(q.used+ringHdr+usedElem*slot)); err != nil {
		return fmt.Errorf("push chain %d: write used ring slot %d: %w: %w", head, slot, ErrVirtqueue, err)
	}
	memoryBarrier()
	if err := q.write16(q.used+2, q.nextUsed+1); err != nil {
		return fmt.Errorf("push chain %d: write used idx: %w: %w", head, ErrVirtqueue, err)
	}
	q.nextUsed++
	if q.pending < 1<<16 {
		q.pending++
	}
	return nil
}

// NeedsInterrupt reports whether the driver wants an interrupt for the
// chains pushed since it last answered true or false: none when nothing was
// pushed; with FeatureRingEventIdx, when the used idx crossed used_event
// (virtio 1.2 §2.7.10, vring_need_event); otherwise unless the driver set
// VIRTQ_AVAIL_F_NO_INTERRUPT. It reads the driver's field after a barrier,
// so a driver that just re-enabled interrupts is not missed.
func (q *Queue) NeedsInterrupt() (bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.ready || q.pending == 0 {
		return false, nil
	}
	memoryBarrier()
	old, now, pending := q.signalled, q.nextUsed, q.pending
	q.signalled, q.pending = now, 0
	if q.eventIdx {
		ev, err := q.read16(q.avail + ringHdr + 2*uint64(q.size))
		if err != nil {
			return true, fmt.Errorf("read used_event: %w: %w", ErrVirtqueue, err)
		}
		return pending >= 1<<16 || now-ev-1 < now-old, nil
	}
	flags, err := q.read16(q.avail)
	if err != nil {
		return true, fmt.Errorf("read avail flags: %w: %w", ErrVirtqueue, err)
	}
	return flags&availFNoInterrupt == 0, nil
}
