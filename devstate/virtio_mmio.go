package devstate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// VirtioMMIOSize is the size of one virtio-mmio device window: the common
// registers, then the device config space from VirtioMMIOConfig.
const VirtioMMIOSize = 0x1000

// Register offsets of the virtio-mmio version 2 layout (virtio 1.2 §4.2.2).
const (
	mmioMagic             = 0x000
	mmioVersion           = 0x004
	mmioDeviceID          = 0x008
	mmioVendorID          = 0x00c
	mmioDeviceFeatures    = 0x010
	mmioDeviceFeaturesSel = 0x014
	mmioDriverFeatures    = 0x020
	mmioDriverFeaturesSel = 0x024
	mmioQueueSel          = 0x030
	mmioQueueNumMax       = 0x034
	mmioQueueNum          = 0x038
	mmioQueueReady        = 0x044
	mmioQueueNotify       = 0x050
	mmioInterruptStatus   = 0x060
	mmioInterruptACK      = 0x064
	mmioStatus            = 0x070
	mmioQueueDescLow      = 0x080
	mmioQueueDescHigh     = 0x084
	mmioQueueDriverLow    = 0x090
	mmioQueueDriverHigh   = 0x094
	mmioQueueDeviceLow    = 0x0a0
	mmioQueueDeviceHigh   = 0x0a4
	mmioConfigGeneration  = 0x0fc

	// VirtioMMIOConfig is the offset of the device config space in the
	// window.
	VirtioMMIOConfig = 0x100
	// VirtioMMIONotify is the offset of QueueNotify, where an ioeventfd
	// (datamatch = queue index, 4 bytes) can catch notifications.
	VirtioMMIONotify = mmioQueueNotify

	virtioMMIOMagic   = 0x74726976 // "virt"
	virtioMMIOVersion = 2
	virtioVendorID    = 0 // the spec leaves it free; Firecracker uses 0 too

	// Interrupt status bits (§4.2.2, InterruptStatus).
	// InterruptUsedBuffer is set when a queue has new used buffers.
	InterruptUsedBuffer uint32 = 1
	// InterruptConfigChange is set when the config space or
	// DEVICE_NEEDS_RESET changed.
	InterruptConfigChange uint32 = 2
	interruptMask                = InterruptUsedBuffer | InterruptConfigChange
)

// VirtioMMIODeps is what a VirtioMMIO transport needs from the outside.
type VirtioMMIODeps struct {
	// Base is the guest-physical address of the window (VirtioMMIOSize
	// bytes, page aligned).
	Base uint64
	// Device is the device model behind the transport. The transport
	// borrows it; the caller keeps it alive.
	Device VirtioDevice
	// Mem is guest RAM.
	Mem Memory
	// IRQ is the device's interrupt line: high while InterruptStatus is
	// non-zero. Nil means no line. Set is called with the transport's
	// interrupt lock held, so it must not call back into the transport.
	IRQ IRQ
}

// VirtioMMIOState is the saveable state of a virtio-mmio transport and the
// virtio part of its device (features, queues). The device's own state
// (config space, backend) is saved by the device.
type VirtioMMIOState struct {
	// DeviceStatus is the Status register (Status… bits).
	DeviceStatus uint32
	// FeaturesSel is DeviceFeaturesSel: which 32-bit half DeviceFeatures shows.
	FeaturesSel uint32
	// AckedFeaturesSel is DriverFeaturesSel: which half DriverFeatures sets.
	AckedFeaturesSel uint32
	// QueueSel is the queue the Queue… registers address.
	QueueSel uint32
	// InterruptStatus holds pending Interrupt… bits; the line is high
	// while it is non-zero.
	InterruptStatus uint32
	// ConfigGeneration is the ConfigGeneration register.
	ConfigGeneration uint32
	// AckedFeatures are the features the driver wrote (a subset of the
	// device's offer once FEATURES_OK is set).
	AckedFeatures uint64
	// Queues holds one entry per device queue.
	Queues []QueueState
}

// ErrVirtioMMIO is kept by Err when the device failed or the interrupt line
// could not be set.
var ErrVirtioMMIO = errors.New("devstate: virtio-mmio device failed")

// VirtioMMIO is the virtio-mmio version 2 transport (virtio 1.2 §4.2) for
// one device: it implements MMIO for the window [Base, Base+VirtioMMIOSize).
// Registers are 32 bits wide and must be accessed aligned; other widths
// or alignments read all-ones and are ignored on write, as are writes to
// read-only registers. Reads of write-only or unknown registers give 0. The
// config space from VirtioMMIOConfig is forwarded to the device at any
// width.
//
// The status state machine follows §2.1 and §3.1: bits are only ever added
// in order (ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK) until the driver
// writes 0, which resets the device and the queues; FEATURES_OK sticks only
// when the accepted features are a subset of the offer and include
// VIRTIO_F_VERSION_1; DRIVER_OK checks every ready queue and activates the
// device, setting DEVICE_NEEDS_RESET if either fails. Other writes are
// ignored. Driver features and queue registers are writable only at the
// stage the spec allows (between DRIVER and FEATURES_OK, and between
// FEATURES_OK and DRIVER_OK on a queue that is not ready).
//
// Concurrency: MMIO accesses from any vCPU are serialised by one lock, held
// while device methods run; SignalUsed, SignalConfig and Fail take only a
// second, small lock, so devices may call them from anywhere, including
// from inside Notify, Activate and Reset.
type VirtioMMIO struct {
	base   uint64
	dev    VirtioDevice
	mem    Memory
	offer  uint64
	queues []*Queue // fixed length; each guards itself

	// regMu serialises register accesses and device lifecycle calls.
	regMu       sync.Mutex
	featuresSel uint32 // guarded by regMu
	ackedSel    uint32 // guarded by regMu
	queueSel    uint32 // guarded by regMu
	acked       uint64 // guarded by regMu
	active      bool   // guarded by regMu; Activate succeeded and no Reset since

	// mu guards the status, interrupt and generation; take it after regMu.
	mu        sync.Mutex
	status    uint32 // guarded by mu
	interrupt uint32 // guarded by mu
	gen       uint32 // guarded by mu
	irq       IRQ    // guarded by mu; Set is called with mu held
	level     bool   // guarded by mu; last level IRQ.Set accepted
	err       error  // guarded by mu; first device or IRQ failure
}

// NewVirtioMMIO builds a transport in its reset state for deps.Device,
// checking what the device declares: a VERSION_1 offer with no reserved
// feature bit the transport does not implement, and 1 to 1024 queues
// whose maximum sizes are powers of two up to MaxQueueSize.
func NewVirtioMMIO(deps VirtioMMIODeps) (*VirtioMMIO, error) {
	t, err := newVirtioMMIO(deps)
	if err != nil {
		return nil, fmt.Errorf("virtio-mmio at %#x: %w", deps.Base, err)
	}
	return t, nil
}

// maxVirtioQueues caps how many queues a device may declare.
const maxVirtioQueues = 1024

func newVirtioMMIO(deps VirtioMMIODeps) (*VirtioMMIO, error) {
	if deps.Device == nil || deps.Mem == nil {
		return nil, errors.New("device and memory are required")
	}
	if deps.Base%VirtioMMIOSize != 0 || deps.Base+VirtioMMIOSize < deps.Base {
		return nil, fmt.Errorf("base %#x is not a %#x-aligned window", deps.Base, VirtioMMIOSize)
	}
	offer := deps.Device.Features()
	if offer&FeatureVersion1 == 0 {
		return nil, fmt.Errorf("device offers features %#x without VIRTIO_F_VERSION_1", offer)
	}
	if bad := offer &^ (featuresDeviceMask | featuresTransport); bad != 0 {
		return nil, fmt.Errorf("device offers reserved feature bits %#x the transport does not implement", bad)
	}
	sizes := deps.Device.QueueMaxSizes()
	if len(sizes) == 0 || len(sizes) > maxVirtioQueues {
		return nil, fmt.Errorf("device declares %d queues, want 1 to %d", len(sizes), maxVirtioQueues)
	}
	t := &VirtioMMIO{base: deps.Base, dev: deps.Device, mem: deps.Mem, offer: offer, irq: deps.IRQ}
	for i, n := range sizes {
		if !validMaxSize(n) {
			return nil, fmt.Errorf("queue %d max size %d is not a power of two from 1 to %d", i, n, MaxQueueSize)
		}
		t.queues = append(t.queues, newQueue(n, deps.Mem))
	}
	return t, nil
}

// Base returns the guest-physical address of the window.
func (t *VirtioMMIO) Base() uint64 { return t.base }

// NotifyAddr returns the guest-physical address of QueueNotify, for an
// ioeventfd per queue (4-byte write, datamatch = queue index) that calls
// Notify.
func (t *VirtioMMIO) NotifyAddr() uint64 { return t.base + VirtioMMIONotify }

// VirtioMMIOCmdline returns the kernel command-line parameter that
// describes a virtio-mmio window at base on interrupt line gsi, for guests
// that do not read the ACPI DSDT: "virtio_mmio.device=4K@0xd0000000:5"
// (Linux drivers/virtio/virtio_mmio.c, vm_cmdline_set).
func VirtioMMIOCmdline(base uint64, gsi uint32) string {
	return fmt.Sprintf("virtio_mmio.device=4K@%#x:%d", base, gsi)
}

// NumQueues returns how many queues the device has.
func (t *VirtioMMIO) NumQueues() int { return len(t.queues) }

// Err returns the first device failure (Fail) or interrupt line error.
func (t *VirtioMMIO) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// Status returns the Status register.
func (t *VirtioMMIO) Status() uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.status
}

// Notify delivers a queue notification as a QueueNotify write would: to the
// device, if it is active and queue is a ready queue. The vm calls it from an
// ioeventfd, and on resume for every queue (a kick lost at snapshot time
// would stall the device).
func (t *VirtioMMIO) Notify(queue int) {
	t.regMu.Lock()
	defer t.regMu.Unlock()
	t.notifyLocked(uint32(queue))
}

func (t *VirtioMMIO) notifyLocked(queue uint32) {
	if !t.active || queue >= uint32(len(t.queues)) || !t.queues[queue].Ready() {
		return
	}
	if t.Status()&StatusDeviceNeedsReset != 0 {
		return
	}
	t.dev.Notify(int(queue))
}

// SignalUsed implements VirtioTransport.
func (t *VirtioMMIO) SignalUsed(queue int) error {
	if queue < 0 || queue >= len(t.queues) {
		return fmt.Errorf("signal queue %d: device has %d queues", queue, len(t.queues))
	}
	need, err := t.queues[queue].NeedsInterrupt()
	if !need {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if ierr := t.raiseLocked(InterruptUsedBuffer); ierr != nil {
		return ierr
	}
	return err
}

// SignalConfig implements VirtioTransport.
func (t *VirtioMMIO) SignalConfig() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gen++
	return t.raiseLocked(InterruptConfigChange)
}

// Fail implements VirtioTransport.
func (t *VirtioMMIO) Fail(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failLocked(err)
}

func (t *VirtioMMIO) failLocked(err error) {
	if t.err == nil {
		t.err = fmt.Errorf("%w: %w", ErrVirtioMMIO, err)
	}
	if t.status&StatusDeviceNeedsReset != 0 {
		return
	}
	t.status |= StatusDeviceNeedsReset
	// §2.1.2: with DRIVER_OK set, the device must send a config change
	// notification after setting DEVICE_NEEDS_RESET.
	if t.status&StatusDriverOK != 0 {
		_ = t.raiseLocked(InterruptConfigChange) // an IRQ error is kept in t.err
	}
}

// raiseLocked sets interrupt bits and drives the line. The line is high
// while InterruptStatus is non-zero, but the DSDT (like every peer's)
// declares it edge-triggered and guests program the IOAPIC pin so: a new
// cause raised while the line is already high would make no edge, and a
// driver that acknowledges only the bits it read (Linux) would never hear
// of it, its line stuck high for good. So a new bit on a high line pulses
// it (low, then high): a fresh edge, and harmless on a level-triggered pin.
func (t *VirtioMMIO) raiseLocked(bits uint32) error {
	fresh := bits &^ t.interrupt
	t.interrupt |= bits
	if fresh != 0 && t.level {
		return t.pulseLocked()
	}
	return t.updateLineLocked()
}

// pulseLocked drives the line low and high again.
func (t *VirtioMMIO) pulseLocked() error {
	if err := t.setLineLocked(false); err != nil {
		return err
	}
	return t.setLineLocked(true)
}

// ReassertIRQ drives the line again after the interrupt controllers were
// restored: restoring them (KVM_SET_IRQCHIP) forgets an edge raised
// before, so a transport restored with InterruptStatus non-zero pulses its
// line once more, and one with nothing pending drives it low.
func (t *VirtioMMIO) ReassertIRQ() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.interrupt != 0 {
		return t.pulseLocked()
	}
	return t.setLineLocked(false)
}

// updateLineLocked drives the line to follow InterruptStatus, if it does
// not already.
func (t *VirtioMMIO) updateLineLocked() error {
	if want := t.interrupt != 0; want != t.level {
		return t.setLineLocked(want)
	}
	return nil
}

// setLineLocked is the one place the line is driven: it sets it to level
// (on a transport with no line, a no-op), records the level the line
// accepted, and keeps the first failure in t.err.
func (t *VirtioMMIO) setLineLocked(level bool) error {
	if t.irq == nil {
		return nil
	}
	if err := t.irq.Set(level); err != nil {
		err = fmt.Errorf("virtio-mmio at %#x: set irq %v: %w", t.base, level, err)
		if t.err == nil {
			t.err = fmt.Errorf("%w: %w", ErrVirtioMMIO, err)
		}
		return err
	}
	t.level = level
	return nil
}

// ReadMMIO implements MMIO.
func (t *VirtioMMIO) ReadMMIO(addr uint64, data []byte) {
	if addr < t.base || addr-t.base >= VirtioMMIOSize || uint64(len(data)) > VirtioMMIOSize-(addr-t.base) {
		fill(data, 0xff)
		return
	}
	off := addr - t.base
	if off >= VirtioMMIOConfig {
		clear(data)
		if len(data) <= 8 {
			t.regMu.Lock()
			t.dev.ReadConfig(uint32(off-VirtioMMIOConfig), data)
			t.regMu.Unlock()
		}
		return
	}
	if len(data) != 4 || off%4 != 0 {
		fill(data, 0xff)
		return
	}
	t.regMu.Lock()
	v := t.readRegLocked(off)
	t.regMu.Unlock()
	binary.LittleEndian.PutUint32(data, v)
}

func fill(b []byte, v byte) {
	for i := range b {
		b[i] = v
	}
}

func (t *VirtioMMIO) selectedQueueLocked() *Queue {
	if t.queueSel >= uint32(len(t.queues)) {
		return nil
	}
	return t.queues[t.queueSel]
}

func (t *VirtioMMIO) readRegLocked(off uint64) uint32 {
	switch off {
	case mmioMagic:
		return virtioMMIOMagic
	case mmioVersion:
		return virtioMMIOVersion
	case mmioDeviceID:
		return t.dev.DeviceID()
	case mmioVendorID:
		return virtioVendorID
	case mmioDeviceFeatures:
		if t.featuresSel > 1 {
			return 0
		}
		return uint32(t.offer >> (32 * t.featuresSel))
	case mmioQueueNumMax:
		if q := t.selectedQueueLocked(); q != nil {
			return uint32(q.maxSize)
		}
		return 0
	case mmioQueueReady:
		if q := t.selectedQueueLocked(); q != nil && q.Ready() {
			return 1
		}
		return 0
	case mmioInterruptStatus:
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.interrupt
	case mmioStatus:
		return t.Status()
	case mmioConfigGeneration:
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.gen
	}
	return 0
}

// WriteMMIO implements MMIO.
func (t *VirtioMMIO) WriteMMIO(addr uint64, data []byte) {
	if addr < t.base || addr-t.base >= VirtioMMIOSize || uint64(len(data)) > VirtioMMIOSize-(addr-t.base) {
		return
	}
	off := addr - t.base
	t.regMu.Lock()
	defer t.regMu.Unlock()
	if off >= VirtioMMIOConfig {
		if len(data) <= 8 {
			t.dev.WriteConfig(uint32(off-VirtioMMIOConfig), data)
		}
		return
	}
	if len(data) != 4 || off%4 != 0 {
		return
	}
	v := binary.LittleEndian.Uint32(data)
	status := t.Status()
	switch off {
	case mmioDeviceFeaturesSel:
		t.featuresSel = v
	case mmioDriverFeatures:
		// §3.1.1: features are written after DRIVER and before FEATURES_OK.
		if status&(StatusDriver|StatusFeaturesOK) != StatusDriver || t.ackedSel > 1 {
			return
		}
		shift := 32 * t.ackedSel
		t.acked = t.acked&^(0xffffffff<<shift) | uint64(v)<<shift
	case mmioDriverFeaturesSel:
		t.ackedSel = v
	case mmioQueueSel:
		t.queueSel = v
	case mmioQueueNum, mmioQueueDescLow, mmioQueueDescHigh, mmioQueueDriverLow,
		mmioQueueDriverHigh, mmioQueueDeviceLow, mmioQueueDeviceHigh, mmioQueueReady:
		t.writeQueueLocked(off, v, status)
	case mmioQueueNotify:
		t.notifyLocked(v)
	case mmioInterruptACK:
		t.mu.Lock()
		t.interrupt &^= v
		_ = t.updateLineLocked() // an IRQ error is kept in t.err
		t.mu.Unlock()
	case mmioStatus:
		t.writeStatusLocked(v)
	}
}

// writeQueueLocked handles the queue configuration registers, accepted only
// between FEATURES_OK and DRIVER_OK (§3.1.1 step 7) and, but for
// QueueReady, only while the selected queue is not ready (§4.2.3.2).
func (t *VirtioMMIO) writeQueueLocked(off uint64, v uint32, status uint32) {
	q := t.selectedQueueLocked()
	if q == nil || status&(StatusFeaturesOK|StatusDriverOK|StatusDeviceNeedsReset|StatusFailed) != StatusFeaturesOK {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if off == mmioQueueReady {
		q.ready = v&1 != 0
		return
	}
	if q.ready {
		return
	}
	setLow := func(a *uint64) { *a = *a&^0xffffffff | uint64(v) }
	setHigh := func(a *uint64) { *a = *a&0xffffffff | uint64(v)<<32 }
	switch off {
	case mmioQueueNum:
		// Checked when the device is activated; a value too large
		// for the queue is kept as 0, which fails that check.
		if v > uint32(q.maxSize) {
			q.size = 0
		} else {
			q.size = uint16(v)
		}
	case mmioQueueDescLow:
		setLow(&q.desc)
	case mmioQueueDescHigh:
		setHigh(&q.desc)
	case mmioQueueDriverLow:
		setLow(&q.avail)
	case mmioQueueDriverHigh:
		setHigh(&q.avail)
	case mmioQueueDeviceLow:
		setLow(&q.used)
	case mmioQueueDeviceHigh:
		setHigh(&q.used)
	}
}

// writeStatusLocked runs the device status state machine.
func (t *VirtioMMIO) writeStatusLocked(v uint32) {
	if v == 0 {
		t.resetLocked()
		return
	}
	cur := t.Status()
	// The driver reads, ORs in one bit and writes back; DEVICE_NEEDS_RESET
	// is the device's own and the driver may or may not echo it.
	v = v&^StatusDeviceNeedsReset | cur&StatusDeviceNeedsReset
	if v&^statusMask != 0 || cur&^v != 0 {
		return // unknown bits, or clearing a bit without a reset
	}
	added := v &^ cur
	if added&StatusFailed != 0 {
		t.setStatus(cur | StatusFailed)
		return
	}
	if cur&(StatusFailed|StatusDeviceNeedsReset) != 0 {
		return // only a reset gets out of these
	}
	// Each bit requires the ones before it (§3.1.1).
	steps := [...]struct{ bit, req uint32 }{
		{StatusDriver, StatusAcknowledge},
		{StatusFeaturesOK, StatusAcknowledge | StatusDriver},
		{StatusDriverOK, StatusAcknowledge | StatusDriver | StatusFeaturesOK},
	}
	for _, st := range steps {
		if added&st.bit != 0 && v&st.req != st.req {
			return
		}
	}
	if added&StatusDriverOK != 0 && cur&StatusFeaturesOK == 0 {
		return // FEATURES_OK must have been accepted in an earlier write
	}
	if added&StatusFeaturesOK != 0 {
		if t.acked&^t.offer != 0 || t.acked&FeatureVersion1 == 0 {
			v &^= StatusFeaturesOK | StatusDriverOK // the driver sees it refused
		} else {
			t.applyFeaturesLocked()
		}
	}
	t.setStatus(v)
	if added&StatusDriverOK != 0 && v&StatusDriverOK != 0 {
		if err := t.activateLocked(); err != nil {
			t.Fail(err)
		}
	}
}

func (t *VirtioMMIO) setStatus(v uint32) {
	t.mu.Lock()
	t.status = v
	t.mu.Unlock()
}

// applyFeaturesLocked tells the queues which ring features were accepted.
func (t *VirtioMMIO) applyFeaturesLocked() {
	for _, q := range t.queues {
		q.mu.Lock()
		q.eventIdx = t.acked&FeatureRingEventIdx != 0
		q.indirect = t.acked&FeatureIndirectDesc != 0
		q.mu.Unlock()
	}
}

// activateLocked checks the ready queues and activates the device.
func (t *VirtioMMIO) activateLocked() error {
	for i, q := range t.queues {
		st := q.State()
		if !st.Ready {
			continue
		}
		if err := checkQueueConfig(st.Size, st.MaxSize, st.DescTable, st.AvailRing, st.UsedRing, t.mem); err != nil {
			return fmt.Errorf("activate: queue %d: %w", i, err)
		}
	}
	ctx := VirtioContext{Mem: t.mem, Queues: t.queues, Features: t.acked, Transport: t}
	if err := t.dev.Activate(ctx); err != nil {
		return fmt.Errorf("activate: %w", err)
	}
	t.active = true
	return nil
}

// resetLocked is the driver's reset: the device first, so it stops using
// the queues, then every register.
func (t *VirtioMMIO) resetLocked() {
	if t.active {
		t.dev.Reset()
		t.active = false
	}
	for _, q := range t.queues {
		q.mu.Lock()
		q.resetLocked()
		q.mu.Unlock()
	}
	t.featuresSel, t.ackedSel, t.queueSel, t.acked = 0, 0, 0, 0
	t.mu.Lock()
	t.status, t.interrupt = 0, 0
	_ = t.updateLineLocked() // an IRQ error is kept in t.err
	t.mu.Unlock()
}

// State returns the transport's saveable state. Preconditions: the vCPUs
// are paused and the device has stopped processing its queues.
func (t *VirtioMMIO) State() VirtioMMIOState {
	t.regMu.Lock()
	defer t.regMu.Unlock()
	t.mu.Lock()
	st := VirtioMMIOState{
		DeviceStatus:     t.status,
		FeaturesSel:      t.featuresSel,
		AckedFeaturesSel: t.ackedSel,
		QueueSel:         t.queueSel,
		InterruptStatus:  t.interrupt,
		ConfigGeneration: t.gen,
		AckedFeatures:    t.acked,
	}
	t.mu.Unlock()
	for _, q := range t.queues {
		st.Queues = append(st.Queues, q.State())
	}
	return st
}

// RestoreVirtioMMIO rebuilds a transport from st for deps.Device (already
// restored with its own state), checking every field as if the driver had
// written it: known status bits in a reachable combination, acked ⊆ offered
// with VERSION_1 once FEATURES_OK is set, known interrupt bits, one queue per
// device queue with the device's max sizes, ready queues only after
// FEATURES_OK, each queue's EventIdx matching the acked features, and, for a
// device to be activated, every ready queue valid (RestoreQueue); before
// that a ready queue is checked at DRIVER_OK, as live. On error nothing is
// built or activated.
//
// Preconditions: guest RAM already holds the saved contents (the rings are
// checked against it and an activated device may start reading them).
//
// If DRIVER_OK is set without DEVICE_NEEDS_RESET, the device is activated
// again with the restored queues. Then the interrupt line is driven high if
// an interrupt is pending. The caller should Notify every queue once the
// vCPUs run (a kick in flight at save time is not in the state).
func RestoreVirtioMMIO(st VirtioMMIOState, deps VirtioMMIODeps) (*VirtioMMIO, error) {
	t, err := newVirtioMMIO(deps)
	if err != nil {
		return nil, fmt.Errorf("restore virtio-mmio at %#x: %w: %w", deps.Base, ErrInvalidState, err)
	}
	if err := t.restore(st); err != nil {
		return nil, fmt.Errorf("restore virtio-mmio at %#x: %w", deps.Base, err)
	}
	return t, nil
}

func (t *VirtioMMIO) restore(st VirtioMMIOState) error {
	s := st.DeviceStatus
	const order = StatusAcknowledge | StatusDriver | StatusFeaturesOK | StatusDriverOK
	switch {
	case s&^statusMask != 0:
		return fmt.Errorf("%w: status %#x has unknown bits", ErrInvalidState, s)
	case s&StatusDriver != 0 && s&StatusAcknowledge == 0,
		s&StatusFeaturesOK != 0 && s&StatusDriver == 0,
		s&StatusDriverOK != 0 && s&StatusFeaturesOK == 0:
		return fmt.Errorf("%w: status %#x skips a step of %#x", ErrInvalidState, s, order)
	case s&StatusFeaturesOK != 0 && st.AckedFeatures&^t.offer != 0:
		return fmt.Errorf("%w: acked features %#x not offered (offer %#x)", ErrInvalidState, st.AckedFeatures, t.offer)
	case s&StatusFeaturesOK != 0 && st.AckedFeatures&FeatureVersion1 == 0:
		return fmt.Errorf("%w: acked features %#x lack VIRTIO_F_VERSION_1", ErrInvalidState, st.AckedFeatures)
	case st.InterruptStatus&^interruptMask != 0:
		return fmt.Errorf("%w: interrupt status %#x has unknown bits", ErrInvalidState, st.InterruptStatus)
	case len(st.Queues) != len(t.queues):
		return fmt.Errorf("%w: %d queues saved, device has %d", ErrInvalidState, len(st.Queues), len(t.queues))
	}
	featuresOK := s&StatusFeaturesOK != 0
	active := s&StatusDriverOK != 0 && s&StatusDeviceNeedsReset == 0
	eventIdx := featuresOK && st.AckedFeatures&FeatureRingEventIdx != 0
	for i, qs := range st.Queues {
		if qs.MaxSize != t.queues[i].maxSize {
			return fmt.Errorf("%w: queue %d max size %d, device has %d", ErrInvalidState, i, qs.MaxSize, t.queues[i].maxSize)
		}
		if qs.Ready && !featuresOK {
			return fmt.Errorf("%w: queue %d ready before FEATURES_OK", ErrInvalidState, i)
		}
		if qs.EventIdx != eventIdx {
			return fmt.Errorf("%w: queue %d event idx %v disagrees with acked features %#x", ErrInvalidState, i, qs.EventIdx, st.AckedFeatures)
		}
		// Ready queues are checked only for a device that will be
		// activated: before DRIVER_OK (or after it failed) the driver may
		// hold a bad ready queue, as it could live.
		q, err := restoreQueue(qs, t.mem, active)
		if err != nil {
			return fmt.Errorf("queue %d: %w", i, err)
		}
		q.indirect = featuresOK && st.AckedFeatures&FeatureIndirectDesc != 0
		t.queues[i] = q
	}
	t.featuresSel, t.ackedSel, t.queueSel, t.acked = st.FeaturesSel, st.AckedFeaturesSel, st.QueueSel, st.AckedFeatures
	t.status, t.interrupt, t.gen = s, st.InterruptStatus, st.ConfigGeneration
	t.regMu.Lock()
	defer t.regMu.Unlock()
	if active {
		if err := t.activateLocked(); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidState, err)
		}
	}
	t.mu.Lock()
	err := t.updateLineLocked()
	t.mu.Unlock()
	if err != nil {
		if t.active {
			t.dev.Reset()
			t.active = false
		}
		return err
	}
	return nil
}
