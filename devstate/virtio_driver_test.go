package devstate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// sliceMem is guest RAM as one byte slice starting at guest-physical 0.
type sliceMem struct{ b []byte }

var errOutside = errors.New("outside test memory")

func (m *sliceMem) check(n int, gpa int64) error {
	if gpa < 0 || uint64(gpa) > uint64(len(m.b)) || uint64(n) > uint64(len(m.b))-uint64(gpa) {
		return fmt.Errorf("%w: %#x+%d", errOutside, gpa, n)
	}
	return nil
}

func (m *sliceMem) ReadAt(p []byte, gpa int64) (int, error) {
	if err := m.check(len(p), gpa); err != nil {
		return 0, err
	}
	return copy(p, m.b[gpa:]), nil
}

func (m *sliceMem) WriteAt(p []byte, gpa int64) (int, error) {
	if err := m.check(len(p), gpa); err != nil {
		return 0, err
	}
	return copy(m.b[gpa:], p), nil
}

// slicingMem adds memdump.Memory's Slice, so checkRange checks whole ranges.
type slicingMem struct{ sliceMem }

func (m *slicingMem) Slice(gpa, n uint64) ([]byte, error) {
	if gpa > uint64(len(m.b)) || n > uint64(len(m.b))-gpa {
		return nil, fmt.Errorf("%w: %#x+%d", errOutside, gpa, n)
	}
	return m.b[gpa : gpa+n], nil
}

// Test memory layout: rings low, data buffers from dataBase.
const (
	testMemSize = 1 << 20
	testDesc    = 0x1000
	testAvail   = 0x3000
	testUsed    = 0x4000
	dataBase    = 0x10000
)

// driver plays the guest driver's side of one split virtqueue in memory.
type driver struct {
	t        testing.TB
	mem      *sliceMem
	size     uint16
	desc     uint64
	avail    uint64
	used     uint64
	availIdx uint16
	nextDesc uint16
	nextData uint64
}

func newDriver(t testing.TB, mem *sliceMem, size uint16) *driver {
	return &driver{t: t, mem: mem, size: size, desc: testDesc, avail: testAvail, used: testUsed, nextData: dataBase}
}

func (d *driver) put16(gpa uint64, v uint16) { binary.LittleEndian.PutUint16(d.mem.b[gpa:], v) }
func (d *driver) get16(gpa uint64) uint16    { return binary.LittleEndian.Uint16(d.mem.b[gpa:]) }

// setDesc writes descriptor i of the table at table.
func (d *driver) setDescAt(table uint64, i uint16, addr uint64, n uint32, flags, next uint16) {
	b := d.mem.b[table+16*uint64(i):]
	binary.LittleEndian.PutUint64(b[0:], addr)
	binary.LittleEndian.PutUint32(b[8:], n)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
}

func (d *driver) setDesc(i uint16, addr uint64, n uint32, flags, next uint16) {
	d.setDescAt(d.desc, i, addr, n, flags, next)
}

// publish puts head in the next avail slot and bumps the avail idx.
func (d *driver) publish(head uint16) {
	d.put16(d.avail+4+2*uint64(d.availIdx%d.size), head)
	d.availIdx++
	d.put16(d.avail+2, d.availIdx)
}

// buf describes one buffer of a chain the driver builds: readable data, or
// a writable buffer of n bytes.
type buf struct {
	data     []byte
	n        uint32
	writable bool
}

func (d *driver) alloc(n uint32) uint64 {
	a := d.nextData
	d.nextData += (uint64(n) + 15) &^ 15
	if d.nextData > uint64(len(d.mem.b)) {
		d.t.Fatalf("test driver out of data memory")
	}
	return a
}

// chain writes bufs as a direct descriptor chain and returns its head.
func (d *driver) chain(bufs ...buf) uint16 {
	head := d.nextDesc
	for i, b := range bufs {
		idx := d.nextDesc
		d.nextDesc = (d.nextDesc + 1) % d.size
		n, flags := uint32(len(b.data)), uint16(0)
		if b.writable {
			n, flags = b.n, descFWrite
		}
		addr := d.alloc(n)
		copy(d.mem.b[addr:], b.data)
		if i < len(bufs)-1 {
			flags |= descFNext
		}
		d.setDesc(idx, addr, n, flags, d.nextDesc)
	}
	return head
}

// indirect writes bufs as an indirect table behind one descriptor.
func (d *driver) indirect(bufs ...buf) uint16 {
	table := d.alloc(16 * uint32(len(bufs)))
	for i, b := range bufs {
		n, flags := uint32(len(b.data)), uint16(0)
		if b.writable {
			n, flags = b.n, descFWrite
		}
		addr := d.alloc(n)
		copy(d.mem.b[addr:], b.data)
		if i < len(bufs)-1 {
			flags |= descFNext
		}
		d.setDescAt(table, uint16(i), addr, n, flags, uint16(i+1))
	}
	head := d.nextDesc
	d.nextDesc = (d.nextDesc + 1) % d.size
	d.setDesc(head, table, 16*uint32(len(bufs)), descFIndirect, 0)
	return head
}

func (d *driver) usedIdx() uint16 { return d.get16(d.used + 2) }

// usedElem returns used ring entry i (mod size).
func (d *driver) usedElem(i uint16) (id, n uint32) {
	b := d.mem.b[d.used+4+8*uint64(i%d.size):]
	return binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])
}

// queue returns a ready queue over the driver's rings.
func (d *driver) queue(features uint64) *Queue {
	d.t.Helper()
	q, err := RestoreQueue(QueueState{
		MaxSize: d.size, Size: d.size, Ready: true,
		DescTable: d.desc, AvailRing: d.avail, UsedRing: d.used,
		EventIdx: features&FeatureRingEventIdx != 0,
	}, d.mem)
	if err != nil {
		d.t.Fatalf("RestoreQueue: %v", err)
	}
	q.indirect = features&FeatureIndirectDesc != 0
	return q
}

// echoDev is a toy virtio device: it copies each chain's readable bytes into
// its writable part and returns the chain with the count written.
type echoDev struct {
	mu          sync.Mutex
	features    uint64
	sizes       []uint16
	config      [8]byte
	ctx         VirtioContext
	active      bool
	activations int
	resets      int
	notifies    []int
	activateErr error
}

func newEchoDev(features uint64, sizes ...uint16) *echoDev {
	return &echoDev{features: features, sizes: sizes, config: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}}
}

func (e *echoDev) DeviceID() uint32        { return 42 }
func (e *echoDev) Features() uint64        { return e.features }
func (e *echoDev) QueueMaxSizes() []uint16 { return e.sizes }

func (e *echoDev) ReadConfig(off uint32, data []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if off < uint32(len(e.config)) {
		copy(data, e.config[off:])
	}
}

func (e *echoDev) WriteConfig(off uint32, data []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if off < uint32(len(e.config)) {
		copy(e.config[off:], data)
	}
}

func (e *echoDev) Activate(ctx VirtioContext) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.activateErr != nil {
		return e.activateErr
	}
	e.ctx, e.active = ctx, true
	e.activations++
	return nil
}

func (e *echoDev) Reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.active = false
	e.ctx = VirtioContext{}
	e.resets++
}

func (e *echoDev) Notify(queue int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.notifies = append(e.notifies, queue)
	if !e.active {
		return
	}
	q := e.ctx.Queues[queue]
	for range q.Size() {
		c, ok, err := q.Pop()
		if err != nil {
			if ok {
				_ = q.Push(c.Head, 0)
			}
			e.ctx.Transport.Fail(err)
			return
		}
		if !ok {
			break
		}
		data, err := c.ReadAll(1 << 16)
		if err != nil {
			e.ctx.Transport.Fail(err)
			return
		}
		n, _ := c.WriteAt(data, 0)
		if err := q.Push(c.Head, uint32(n)); err != nil {
			e.ctx.Transport.Fail(err)
			return
		}
	}
	if err := e.ctx.Transport.SignalUsed(queue); err != nil {
		e.ctx.Transport.Fail(err)
	}
}

// mmioDriver plays the guest's virtio-mmio driver.
type mmioDriver struct {
	t    testing.TB
	tr   *VirtioMMIO
	base uint64
}

func (m *mmioDriver) r32(off uint64) uint32 {
	var b [4]byte
	m.tr.ReadMMIO(m.base+off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

func (m *mmioDriver) w32(off uint64, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	m.tr.WriteMMIO(m.base+off, b[:])
}

func (m *mmioDriver) w64(lo uint64, v uint64) {
	m.w32(lo, uint32(v))
	m.w32(lo+4, uint32(v>>32))
}

// negotiate runs §3.1.1 up to FEATURES_OK and returns the status read back.
func (m *mmioDriver) negotiate(features uint64) uint32 {
	m.w32(mmioStatus, 0)
	m.w32(mmioStatus, StatusAcknowledge)
	m.w32(mmioStatus, StatusAcknowledge|StatusDriver)
	m.w32(mmioDriverFeaturesSel, 0)
	m.w32(mmioDriverFeatures, uint32(features))
	m.w32(mmioDriverFeaturesSel, 1)
	m.w32(mmioDriverFeatures, uint32(features>>32))
	m.w32(mmioStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK)
	return m.r32(mmioStatus)
}

// setupQueue configures queue sel with a driver's rings and makes it ready.
func (m *mmioDriver) setupQueue(sel uint32, d *driver) {
	m.w32(mmioQueueSel, sel)
	if m.r32(mmioQueueReady) != 0 {
		m.t.Fatalf("queue %d ready before setup", sel)
	}
	m.w32(mmioQueueNum, uint32(d.size))
	m.w64(mmioQueueDescLow, d.desc)
	m.w64(mmioQueueDriverLow, d.avail)
	m.w64(mmioQueueDeviceLow, d.used)
	m.w32(mmioQueueReady, 1)
}

const testBase = 0xd000_0000

// newTestTransport builds an echo device behind a transport with one queue
// of size 16 over fresh memory.
func newTestTransport(t testing.TB, features uint64) (*VirtioMMIO, *echoDev, *fakeIRQ, *sliceMem) {
	t.Helper()
	mem := &sliceMem{b: make([]byte, testMemSize)}
	dev := newEchoDev(features, 16)
	irq := &fakeIRQ{}
	tr, err := NewVirtioMMIO(VirtioMMIODeps{Base: testBase, Device: dev, Mem: mem, IRQ: irq})
	if err != nil {
		t.Fatalf("NewVirtioMMIO: %v", err)
	}
	return tr, dev, irq, mem
}
