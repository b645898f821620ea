package devstate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"slices"
	"testing"
)

const echoFeatures = FeatureVersion1 | FeatureRingEventIdx | FeatureIndirectDesc | 1<<5

func TestVirtioMMIONegotiateAndEcho(t *testing.T) {
	tr, dev, irq, mem := newTestTransport(t, echoFeatures)
	m := &mmioDriver{t: t, tr: tr, base: testBase}
	for _, r := range []struct {
		off  uint64
		want uint32
	}{
		{mmioMagic, 0x74726976}, {mmioVersion, 2}, {mmioDeviceID, 42}, {mmioVendorID, 0},
		{mmioStatus, 0}, {mmioInterruptStatus, 0}, {mmioConfigGeneration, 0},
	} {
		if got := m.r32(r.off); got != r.want {
			t.Errorf("register %#x = %#x, want %#x", r.off, got, r.want)
		}
	}
	m.w32(mmioDeviceFeaturesSel, 0)
	lo := m.r32(mmioDeviceFeatures)
	m.w32(mmioDeviceFeaturesSel, 1)
	hi := m.r32(mmioDeviceFeatures)
	m.w32(mmioDeviceFeaturesSel, 2)
	if got := uint64(hi)<<32 | uint64(lo); got != echoFeatures || m.r32(mmioDeviceFeatures) != 0 {
		t.Fatalf("device features = %#x (sel 2: %#x), want %#x", got, m.r32(mmioDeviceFeatures), uint64(echoFeatures))
	}
	acked := FeatureVersion1 | FeatureIndirectDesc // no EVENT_IDX, no bit 5
	if st := m.negotiate(acked); st != StatusAcknowledge|StatusDriver|StatusFeaturesOK {
		t.Fatalf("status after FEATURES_OK = %#x", st)
	}
	m.w32(mmioQueueSel, 0)
	if got := m.r32(mmioQueueNumMax); got != 16 {
		t.Errorf("QueueNumMax = %d, want 16", got)
	}
	m.w32(mmioQueueSel, 1)
	if got := m.r32(mmioQueueNumMax); got != 0 {
		t.Errorf("QueueNumMax of missing queue 1 = %d, want 0", got)
	}
	d := newDriver(t, mem, 16)
	m.setupQueue(0, d)
	if dev.activations != 0 {
		t.Fatal("device activated before DRIVER_OK")
	}
	m.w32(mmioStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK)
	if st := m.r32(mmioStatus); st != 0xf {
		t.Fatalf("status after DRIVER_OK = %#x, want 0xf", st)
	}
	if dev.activations != 1 || dev.ctx.Features != acked || len(dev.ctx.Queues) != 1 || !dev.ctx.Queues[0].Ready() {
		t.Fatalf("activation: %d times, features %#x, %d queues", dev.activations, dev.ctx.Features, len(dev.ctx.Queues))
	}

	// Echo one direct and one indirect chain.
	h1 := d.chain(buf{data: []byte("ping")}, buf{n: 16, writable: true})
	h2 := d.indirect(buf{data: []byte("indirect")}, buf{n: 3, writable: true}, buf{n: 5, writable: true})
	d.publish(h1)
	d.publish(h2)
	m.w32(mmioQueueNotify, 0)
	if d.usedIdx() != 2 {
		t.Fatalf("used idx = %d, want 2", d.usedIdx())
	}
	if id, n := d.usedElem(0); id != uint32(h1) || n != 4 {
		t.Errorf("used[0] = {%d %d}, want {%d 4}", id, n, h1)
	}
	if id, n := d.usedElem(1); id != uint32(h2) || n != 8 {
		t.Errorf("used[1] = {%d %d}, want {%d 8}", id, n, h2)
	}
	if got := m.r32(mmioInterruptStatus); got != InterruptUsedBuffer {
		t.Errorf("interrupt status = %#x, want used buffer", got)
	}
	if got := irq.seq(); !slices.Equal(got, []bool{true}) {
		t.Errorf("irq levels = %v, want [true]", got)
	}
	m.w32(mmioInterruptACK, InterruptUsedBuffer)
	if got := m.r32(mmioInterruptStatus); got != 0 || !slices.Equal(irq.seq(), []bool{false}) {
		t.Errorf("after ACK: status %#x, irq %v", got, irq.level())
	}
	// Notify for a missing queue reaches nobody.
	m.w32(mmioQueueNotify, 7)
	if !slices.Equal(dev.notifies, []int{0}) {
		t.Errorf("device notifies = %v, want [0]", dev.notifies)
	}
	if tr.NotifyAddr() != testBase+0x50 {
		t.Errorf("NotifyAddr = %#x", tr.NotifyAddr())
	}
	// Queue registers are frozen after DRIVER_OK.
	m.w32(mmioQueueSel, 0)
	m.w32(mmioQueueNum, 8)
	if tr.queues[0].Size() != 16 {
		t.Errorf("QueueNum write after DRIVER_OK took effect")
	}

	// Reset.
	m.w32(mmioStatus, 0)
	if dev.resets != 1 || m.r32(mmioStatus) != 0 || m.r32(mmioQueueReady) != 0 {
		t.Errorf("after reset: %d resets, status %#x, ready %d", dev.resets, m.r32(mmioStatus), m.r32(mmioQueueReady))
	}
	st := tr.State()
	if st.AckedFeatures != 0 || st.Queues[0].NextAvail != 0 || st.Queues[0].Size != 16 {
		t.Errorf("state after reset = %+v", st)
	}
	m.w32(mmioQueueNotify, 0)
	if len(dev.notifies) != 1 {
		t.Errorf("notify after reset reached the device")
	}
}

// activeTransport negotiates acked and activates with one ready queue.
func activeTransport(t *testing.T, acked uint64) (*VirtioMMIO, *echoDev, *fakeIRQ, *driver, *mmioDriver) {
	t.Helper()
	tr, dev, irq, mem := newTestTransport(t, echoFeatures)
	m := &mmioDriver{t: t, tr: tr, base: testBase}
	if st := m.negotiate(acked); st&StatusFeaturesOK == 0 {
		t.Fatalf("FEATURES_OK refused: %#x", st)
	}
	d := newDriver(t, mem, 16)
	m.setupQueue(0, d)
	m.w32(mmioStatus, 0xf)
	if m.r32(mmioStatus) != 0xf {
		t.Fatalf("status = %#x, want 0xf", m.r32(mmioStatus))
	}
	return tr, dev, irq, d, m
}

func TestVirtioMMIOStatusRules(t *testing.T) {
	const ad = StatusAcknowledge | StatusDriver
	tests := []struct {
		name       string
		run        func(m *mmioDriver, d *driver, dev *echoDev)
		wantStatus uint32
		activated  bool
	}{
		{"acked not offered", func(m *mmioDriver, d *driver, dev *echoDev) {
			m.negotiate(FeatureVersion1 | 1<<6)
		}, ad, false},
		{"no VERSION_1", func(m *mmioDriver, d *driver, dev *echoDev) {
			m.negotiate(1 << 5)
		}, ad, false},
		{"DRIVER_OK before FEATURES_OK", func(m *mmioDriver, d *driver, dev *echoDev) {
			m.w32(mmioStatus, StatusAcknowledge)
			m.w32(mmioStatus, ad)
			m.w32(mmioStatus, ad|StatusDriverOK)
		}, ad, false},
		{"FEATURES_OK and DRIVER_OK at once", func(m *mmioDriver, d *driver, dev *echoDev) {
			m.w32(mmioStatus, StatusAcknowledge)
			m.w32(mmioStatus, ad)
			m.w32(mmioDriverFeaturesSel, 1)
			m.w32(mmioDriverFeatures, 1)
			m.w32(mmioStatus, ad|StatusFeaturesOK|StatusDriverOK)
		}, ad, false},
		{"DRIVER without ACKNOWLEDGE", func(m *mmioDriver, d *driver, dev *echoDev) {
			m.w32(mmioStatus, StatusDriver)
		}, 0, false},
		{"clearing a bit", func(m *mmioDriver, d *driver, dev *echoDev) {
			m.w32(mmioStatus, StatusAcknowledge)
			m.w32(mmioStatus, ad)
			m.w32(mmioStatus, StatusDriver)
		}, ad, false},
		{"unknown bit", func(m *mmioDriver, d *driver, dev *echoDev) {
			m.w32(mmioStatus, StatusAcknowledge|16)
		}, 0, false},
		{"features written after FEATURES_OK are ignored", func(m *mmioDriver, d *driver, dev *echoDev) {
			m.negotiate(FeatureVersion1)
			m.w32(mmioDriverFeaturesSel, 0)
			m.w32(mmioDriverFeatures, 1<<6)
			m.setupQueue(0, d)
			m.w32(mmioStatus, 0xf)
		}, 0xf, true},
		{"misaligned desc table", func(m *mmioDriver, d *driver, dev *echoDev) {
			m.negotiate(FeatureVersion1)
			d.desc += 8
			m.setupQueue(0, d)
			m.w32(mmioStatus, 0xf)
		}, 0xf | StatusDeviceNeedsReset, false},
		{"size not a power of two", func(m *mmioDriver, d *driver, dev *echoDev) {
			m.negotiate(FeatureVersion1)
			d.size = 12
			m.setupQueue(0, d)
			m.w32(mmioStatus, 0xf)
		}, 0xf | StatusDeviceNeedsReset, false},
		{"size above max", func(m *mmioDriver, d *driver, dev *echoDev) {
			m.negotiate(FeatureVersion1)
			d.size = 32
			m.setupQueue(0, d)
			m.w32(mmioStatus, 0xf)
		}, 0xf | StatusDeviceNeedsReset, false},
		{"used ring outside RAM", func(m *mmioDriver, d *driver, dev *echoDev) {
			m.negotiate(FeatureVersion1)
			d.used = 1 << 40
			m.setupQueue(0, d)
			m.w32(mmioStatus, 0xf)
		}, 0xf | StatusDeviceNeedsReset, false},
		{"activate fails", func(m *mmioDriver, d *driver, dev *echoDev) {
			dev.activateErr = errFake
			m.negotiate(FeatureVersion1)
			m.setupQueue(0, d)
			m.w32(mmioStatus, 0xf)
		}, 0xf | StatusDeviceNeedsReset, false},
		{"queue setup before FEATURES_OK is ignored", func(m *mmioDriver, d *driver, dev *echoDev) {
			m.w32(mmioStatus, StatusAcknowledge)
			m.w32(mmioStatus, ad)
			m.w32(mmioQueueSel, 0)
			m.w32(mmioQueueReady, 1)
		}, ad, false},
		{"FAILED", func(m *mmioDriver, d *driver, dev *echoDev) {
			m.w32(mmioStatus, StatusAcknowledge)
			m.w32(mmioStatus, StatusAcknowledge|StatusFailed)
			m.w32(mmioStatus, StatusAcknowledge|StatusFailed|StatusDriver)
		}, StatusAcknowledge | StatusFailed, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, dev, irq, mem := newTestTransport(t, echoFeatures)
			m := &mmioDriver{t: t, tr: tr, base: testBase}
			d := newDriver(t, mem, 16)
			tc.run(m, d, dev)
			if got := m.r32(mmioStatus); got != tc.wantStatus {
				t.Errorf("status = %#x, want %#x", got, tc.wantStatus)
			}
			if dev.active != tc.activated {
				t.Errorf("device active = %v, want %v", dev.active, tc.activated)
			}
			if tc.wantStatus&StatusDeviceNeedsReset != 0 {
				if m.r32(mmioInterruptStatus) != InterruptConfigChange || !irq.level() {
					t.Errorf("DEVICE_NEEDS_RESET without a config interrupt")
				}
				if tr.Err() == nil {
					t.Errorf("Err() = nil after a failure")
				}
				m.w32(mmioQueueNotify, 0)
				if len(dev.notifies) != 0 {
					t.Errorf("notify reached a failed device")
				}
				// Only a reset gets out.
				m.w32(mmioStatus, 0)
				if got := m.r32(mmioStatus); got != 0 {
					t.Errorf("status after reset = %#x", got)
				}
			}
		})
	}
}

func TestVirtioMMIOMalformedChainFails(t *testing.T) {
	tr, dev, irq, d, m := activeTransport(t, FeatureVersion1)
	irq.seq()
	d.setDesc(0, dataBase, 4, descFNext, 0) // a loop
	d.publish(0)
	m.w32(mmioQueueNotify, 0)
	if st := m.r32(mmioStatus); st&StatusDeviceNeedsReset == 0 {
		t.Fatalf("status = %#x, want DEVICE_NEEDS_RESET", st)
	}
	if !errors.Is(tr.Err(), ErrVirtqueue) || !errors.Is(tr.Err(), ErrVirtioMMIO) {
		t.Errorf("Err = %v", tr.Err())
	}
	if m.r32(mmioInterruptStatus)&InterruptConfigChange == 0 || !irq.level() {
		t.Errorf("no config change interrupt after failure")
	}
	m.w32(mmioQueueNotify, 0)
	if len(dev.notifies) != 1 {
		t.Errorf("device notified %d times, want 1 (none after failure)", len(dev.notifies))
	}
}

func TestVirtioMMIOEventIdxSuppression(t *testing.T) {
	_, _, irq, d, m := activeTransport(t, FeatureVersion1|FeatureRingEventIdx)
	usedEvent := d.avail + 4 + 2*16
	d.put16(usedEvent, 1) // interrupt once used idx passes 1
	d.publish(d.chain(buf{data: []byte("a")}, buf{n: 1, writable: true}))
	m.w32(mmioQueueNotify, 0)
	if m.r32(mmioInterruptStatus) != 0 || len(irq.seq()) != 0 {
		t.Fatalf("interrupt raised before used_event was crossed")
	}
	d.publish(d.chain(buf{data: []byte("b")}, buf{n: 1, writable: true}))
	m.w32(mmioQueueNotify, 0)
	if m.r32(mmioInterruptStatus) != InterruptUsedBuffer || !slices.Equal(irq.seq(), []bool{true}) {
		t.Fatalf("no interrupt when used idx crossed used_event")
	}
	// avail_event was published when the device found the ring empty.
	if got := d.get16(d.used + 4 + 8*16); got != 2 {
		t.Errorf("avail_event = %d, want 2", got)
	}
}

func TestVirtioMMIOAccessWidths(t *testing.T) {
	tr, dev, _, _ := newTestTransport(t, echoFeatures)
	read := func(addr uint64, n int) []byte {
		b := make([]byte, n)
		tr.ReadMMIO(addr, b)
		return b
	}
	ones := func(n int) []byte { return bytes.Repeat([]byte{0xff}, n) }
	for _, tc := range []struct {
		name string
		addr uint64
		n    int
		want []byte
	}{
		{"byte read of magic", testBase, 1, ones(1)},
		{"8-byte read of magic", testBase, 8, ones(8)},
		{"unaligned read", testBase + 2, 4, ones(4)},
		{"below window", testBase - 4, 4, ones(4)},
		{"past window", testBase + VirtioMMIOSize, 4, ones(4)},
		{"straddles window end", testBase + VirtioMMIOSize - 2, 4, ones(4)},
		{"write-only register", testBase + mmioQueueNotify, 4, []byte{0, 0, 0, 0}},
		{"unknown register", testBase + 0x0c0, 4, []byte{0, 0, 0, 0}},
		{"config byte", testBase + VirtioMMIOConfig + 3, 1, []byte{4}},
		{"config u16", testBase + VirtioMMIOConfig + 1, 2, []byte{2, 3}},
		{"config u64", testBase + VirtioMMIOConfig, 8, []byte{1, 2, 3, 4, 5, 6, 7, 8}},
		{"config past device", testBase + VirtioMMIOConfig + 6, 4, []byte{7, 8, 0, 0}},
		{"config too wide", testBase + VirtioMMIOConfig, 16, make([]byte, 16)},
	} {
		if got := read(tc.addr, tc.n); !bytes.Equal(got, tc.want) {
			t.Errorf("%s: read %x, want %x", tc.name, got, tc.want)
		}
	}
	// Bad writes change nothing.
	tr.WriteMMIO(testBase+mmioStatus, []byte{1})
	tr.WriteMMIO(testBase+mmioStatus+1, []byte{1, 0, 0, 0})
	tr.WriteMMIO(testBase+VirtioMMIOSize, []byte{1, 0, 0, 0})
	tr.WriteMMIO(testBase+mmioStatus, nil)
	if tr.Status() != 0 {
		t.Errorf("status = %#x after malformed writes", tr.Status())
	}
	tr.WriteMMIO(testBase+VirtioMMIOConfig+1, []byte{0xaa, 0xbb})
	if dev.config[1] != 0xaa || dev.config[2] != 0xbb {
		t.Errorf("config write not forwarded: %x", dev.config)
	}
	// SignalConfig bumps the generation and raises the config interrupt.
	if err := tr.SignalConfig(); err != nil {
		t.Fatal(err)
	}
	gen := read(testBase+mmioConfigGeneration, 4)
	if binary.LittleEndian.Uint32(gen) != 1 || tr.State().InterruptStatus != InterruptConfigChange {
		t.Errorf("after SignalConfig: generation %x, interrupt %#x", gen, tr.State().InterruptStatus)
	}
}

func TestNewVirtioMMIORejects(t *testing.T) {
	mem := &sliceMem{b: make([]byte, 4096)}
	for _, tc := range []struct {
		name string
		dev  *echoDev
		base uint64
	}{
		{"no VERSION_1", newEchoDev(1, 8), 0},
		{"packed ring offered", newEchoDev(FeatureVersion1|FeatureRingPacked, 8), 0},
		{"access platform offered", newEchoDev(FeatureVersion1|FeatureAccessPlatform, 8), 0},
		{"no queues", newEchoDev(FeatureVersion1), 0},
		{"max size not power of two", newEchoDev(FeatureVersion1, 8, 100), 0},
		{"max size zero", newEchoDev(FeatureVersion1, 0), 0},
		{"unaligned base", newEchoDev(FeatureVersion1, 8), 0x800},
	} {
		if _, err := NewVirtioMMIO(VirtioMMIODeps{Base: tc.base, Device: tc.dev, Mem: mem}); err == nil {
			t.Errorf("%s: NewVirtioMMIO succeeded", tc.name)
		}
	}
}

// cloneMem copies guest memory, as a snapshot would.
func cloneMem(m *sliceMem) *sliceMem { return &sliceMem{b: slices.Clone(m.b)} }

func TestVirtioMMIOStateRoundTrip(t *testing.T) {
	tr, _, irq, d, m := activeTransport(t, FeatureVersion1|FeatureRingEventIdx|FeatureIndirectDesc)
	d.put16(d.avail+4+2*16, 0xffff) // used_event far away: suppress
	for i := range 5 {
		d.publish(d.chain(buf{data: []byte{byte(i), 1, 2}}, buf{n: 8, writable: true}))
	}
	m.w32(mmioQueueNotify, 0)
	// Leave one chain unconsumed and an interrupt pending.
	d.publish(d.chain(buf{data: []byte("later")}, buf{n: 8, writable: true}))
	if err := tr.SignalConfig(); err != nil {
		t.Fatal(err)
	}
	m.w32(mmioQueueSel, 0)
	m.w32(mmioDeviceFeaturesSel, 1)
	st := tr.State()
	if !irq.level() || st.InterruptStatus != InterruptConfigChange || st.Queues[0].NextUsed != 5 || !st.Queues[0].EventIdx {
		t.Fatalf("unexpected state before save: %+v", st)
	}

	mem2 := cloneMem(d.mem)
	dev2 := newEchoDev(echoFeatures, 16)
	irq2 := &fakeIRQ{}
	tr2, err := RestoreVirtioMMIO(st, VirtioMMIODeps{Base: testBase, Device: dev2, Mem: mem2, IRQ: irq2})
	if err != nil {
		t.Fatalf("RestoreVirtioMMIO: %v", err)
	}
	if got := tr2.State(); !reflect.DeepEqual(got, st) {
		t.Fatalf("state after restore:\n%+v\nwant\n%+v", got, st)
	}
	if dev2.activations != 1 || dev2.ctx.Features != st.AckedFeatures {
		t.Errorf("restored device activations %d, features %#x", dev2.activations, dev2.ctx.Features)
	}
	if !slices.Equal(irq2.seq(), []bool{true}) {
		t.Errorf("restore did not raise the pending interrupt")
	}
	// Same behaviour: the same driver steps on both give the same memory
	// and the same state.
	d2 := *d
	d2.mem = mem2
	m2 := &mmioDriver{t: t, tr: tr2, base: testBase}
	for _, side := range []struct {
		d *driver
		m *mmioDriver
	}{{d, m}, {&d2, m2}} {
		side.d.put16(side.d.avail+4+2*16, 6) // ask for an interrupt after the 7th
		side.m.w32(mmioQueueNotify, 0)
		side.d.publish(side.d.indirect(buf{data: []byte("xyz")}, buf{n: 3, writable: true}))
		side.m.w32(mmioQueueNotify, 0)
		side.m.w32(mmioInterruptACK, InterruptConfigChange)
	}
	if !bytes.Equal(d.mem.b, mem2.b) {
		t.Errorf("guest memory differs after the same steps on original and restored device")
	}
	if a, b := tr.State(), tr2.State(); !reflect.DeepEqual(a, b) {
		t.Errorf("state differs:\noriginal %+v\nrestored %+v", a, b)
	}
	if d2.usedIdx() != 7 || m2.r32(mmioInterruptStatus) != InterruptUsedBuffer {
		t.Errorf("restored: used idx %d, interrupt %#x; want 7, used buffer", d2.usedIdx(), m2.r32(mmioInterruptStatus))
	}
}

func TestRestoreVirtioMMIOInvalid(t *testing.T) {
	tr, _, _, d, _ := activeTransport(t, FeatureVersion1|FeatureRingEventIdx)
	good := tr.State()
	tests := []struct {
		name string
		mod  func(st *VirtioMMIOState)
	}{
		{"acked not offered", func(st *VirtioMMIOState) { st.AckedFeatures |= 1 << 7 }},
		{"acked without VERSION_1", func(st *VirtioMMIOState) { st.AckedFeatures &^= FeatureVersion1 }},
		{"unknown status bit", func(st *VirtioMMIOState) { st.DeviceStatus |= 16 }},
		{"DRIVER_OK without FEATURES_OK", func(st *VirtioMMIOState) { st.DeviceStatus &^= StatusFeaturesOK }},
		{"DRIVER without ACKNOWLEDGE", func(st *VirtioMMIOState) { st.DeviceStatus = StatusDriver }},
		{"unknown interrupt bit", func(st *VirtioMMIOState) { st.InterruptStatus = 4 }},
		{"too many queues", func(st *VirtioMMIOState) { st.Queues = append(st.Queues, st.Queues[0]) }},
		{"no queues", func(st *VirtioMMIOState) { st.Queues = nil }},
		{"max size differs", func(st *VirtioMMIOState) { st.Queues[0].MaxSize = 32 }},
		{"size above max", func(st *VirtioMMIOState) { st.Queues[0].Size = 32 }},
		{"size not power of two", func(st *VirtioMMIOState) { st.Queues[0].Size = 6 }},
		{"misaligned used ring", func(st *VirtioMMIOState) { st.Queues[0].UsedRing += 2 }},
		{"desc outside RAM", func(st *VirtioMMIOState) { st.Queues[0].DescTable = 1 << 30 }},
		{"event idx disagrees", func(st *VirtioMMIOState) { st.Queues[0].EventIdx = false }},
		{"ready before FEATURES_OK", func(st *VirtioMMIOState) {
			st.DeviceStatus = StatusAcknowledge | StatusDriver
			st.Queues[0].EventIdx = false
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := good
			st.Queues = slices.Clone(good.Queues)
			tc.mod(&st)
			dev := newEchoDev(echoFeatures, 16)
			_, err := RestoreVirtioMMIO(st, VirtioMMIODeps{Base: testBase, Device: dev, Mem: d.mem})
			if !errors.Is(err, ErrInvalidState) {
				t.Fatalf("err = %v, want ErrInvalidState", err)
			}
			if dev.activations != 0 {
				t.Errorf("device activated by a refused restore")
			}
		})
	}
	// Activation failure and IRQ failure fail the restore too.
	dev := newEchoDev(echoFeatures, 16)
	dev.activateErr = errFake
	if _, err := RestoreVirtioMMIO(good, VirtioMMIODeps{Base: testBase, Device: dev, Mem: d.mem}); !errors.Is(err, errFake) {
		t.Errorf("restore with failing Activate: %v", err)
	}
	st := good
	st.InterruptStatus = InterruptUsedBuffer
	dev = newEchoDev(echoFeatures, 16)
	if _, err := RestoreVirtioMMIO(st, VirtioMMIODeps{Base: testBase, Device: dev, Mem: d.mem, IRQ: &fakeIRQ{fail: errFake}}); !errors.Is(err, errFake) {
		t.Errorf("restore with failing IRQ: %v", err)
	}
	if dev.active {
		t.Errorf("device left active after a failed restore")
	}
	// A state with DEVICE_NEEDS_RESET restores without activating.
	st = good
	st.DeviceStatus |= StatusDeviceNeedsReset
	dev = newEchoDev(echoFeatures, 16)
	if _, err := RestoreVirtioMMIO(st, VirtioMMIODeps{Base: testBase, Device: dev, Mem: d.mem}); err != nil || dev.activations != 0 {
		t.Errorf("restore with NEEDS_RESET: %v, %d activations", err, dev.activations)
	}
}

// FuzzVirtioMMIO plays random register accesses (and notifies) against an
// echo device over memory seeded with a valid ring: no panic, and the state
// reached is always one RestoreVirtioMMIO accepts and reproduces.
func FuzzVirtioMMIO(f *testing.F) {
	seed := func(ops ...uint32) []byte {
		var b []byte
		for _, op := range ops {
			b = binary.LittleEndian.AppendUint32(b, op)
		}
		return b
	}
	// op: offset<<16 | width code<<14 | value bits follow as next word.
	f.Add(seed(0x70<<16|2<<14, 1, 0x70<<16|2<<14, 3, 0x20<<16|2<<14, 0, 0x24<<16|2<<14, 1, 0x20<<16|2<<14, 1,
		0x70<<16|2<<14, 11, 0x38<<16|2<<14, 16, 0x80<<16|2<<14, testDesc, 0x90<<16|2<<14, testAvail,
		0xa0<<16|2<<14, testUsed, 0x44<<16|2<<14, 1, 0x70<<16|2<<14, 15, 0x50<<16|2<<14, 0))
	f.Fuzz(func(t *testing.T, ops []byte) {
		tr, _, _, mem := newTestTransport(t, echoFeatures)
		d := newDriver(t, mem, 16)
		d.publish(d.chain(buf{data: []byte("seed")}, buf{n: 8, writable: true}))
		d.publish(d.indirect(buf{data: []byte("ind")}, buf{n: 8, writable: true}))
		widths := [4]int{1, 2, 4, 8}
		for i := 0; i+8 <= len(ops) && i < 8*256; i += 8 {
			op := binary.LittleEndian.Uint32(ops[i:])
			val := ops[i+4 : i+8]
			off := uint64(op>>16) % (VirtioMMIOSize + 16)
			w := widths[op>>14&3]
			buf := make([]byte, w)
			copy(buf, val)
			if op&1 != 0 {
				tr.ReadMMIO(testBase+off, buf)
			} else {
				tr.WriteMMIO(testBase+off, buf)
			}
		}
		st := tr.State()
		tr2, err := RestoreVirtioMMIO(st, VirtioMMIODeps{Base: testBase, Device: newEchoDev(echoFeatures, 16), Mem: mem})
		if err != nil {
			t.Fatalf("state reached by the driver does not restore: %v\n%+v", err, st)
		}
		if st2 := tr2.State(); !reflect.DeepEqual(st, st2) {
			t.Fatalf("restored state differs:\n%+v\n%+v", st, st2)
		}
	})
}

func TestVirtioMMIOIRQFailure(t *testing.T) {
	tr, _, irq, d, m := activeTransport(t, FeatureVersion1)
	irq.fail = errFake
	d.publish(d.chain(buf{data: []byte("x")}, buf{n: 1, writable: true}))
	m.w32(mmioQueueNotify, 0)
	if !errors.Is(tr.Err(), errFake) {
		t.Errorf("Err = %v, want the IRQ failure", tr.Err())
	}
	if tr.Status()&StatusDeviceNeedsReset == 0 {
		t.Errorf("echo device did not fail after SignalUsed returned an IRQ error")
	}
}

// TestVirtioMMIOConcurrent runs device-side signalling against driver-side
// register traffic, for the race detector.
func TestVirtioMMIOConcurrent(t *testing.T) {
	tr, _, _, d, m := activeTransport(t, FeatureVersion1|FeatureRingEventIdx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 200 {
			_ = tr.SignalConfig()
			_ = tr.SignalUsed(0)
			_ = tr.State()
		}
	}()
	for i := range 200 {
		d.nextData = dataBase
		d.publish(d.chain(buf{data: []byte{byte(i)}}, buf{n: 1, writable: true}))
		m.w32(mmioQueueNotify, 0)
		m.w32(mmioInterruptACK, m.r32(mmioInterruptStatus))
		_ = m.r32(mmioConfigGeneration)
	}
	<-done
	if d.usedIdx() != 200 || tr.Err() != nil {
		t.Errorf("used idx %d, err %v; want 200, nil", d.usedIdx(), tr.Err())
	}
	if got := m.r32(mmioConfigGeneration); got != 200 {
		t.Errorf("config generation = %d, want 200", got)
	}
}

func TestVirtioMMIOCmdline(t *testing.T) {
	if got, want := VirtioMMIOCmdline(0xd0000000, 5), "virtio_mmio.device=4K@0xd0000000:5"; got != want {
		t.Errorf("VirtioMMIOCmdline = %q, want %q", got, want)
	}
}

// TestVirtioMMIOEdgeForEachCause checks that a new interrupt cause raised
// while the line is already high gives the guest a fresh edge (the pin is
// edge-triggered), that a cause already pending does not, and that
// ReassertIRQ pulses a pending line and lowers an idle one.
func TestVirtioMMIOEdgeForEachCause(t *testing.T) {
	tr, _, irq, _, m := activeTransport(t, FeatureVersion1)
	irq.seq()
	if err := tr.SignalConfig(); err != nil {
		t.Fatal(err)
	}
	if got := irq.seq(); !slices.Equal(got, []bool{true}) {
		t.Fatalf("first cause drove %v, want [true]", got)
	}
	if err := tr.SignalConfig(); err != nil {
		t.Fatal(err)
	}
	if got := irq.seq(); len(got) != 0 {
		t.Errorf("the same cause again drove %v, want nothing (already pending)", got)
	}
	// A used-buffer cause while the config one is pending: low, then high.
	tr.mu.Lock()
	err := tr.raiseLocked(InterruptUsedBuffer)
	tr.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if got := irq.seq(); !slices.Equal(got, []bool{false, true}) {
		t.Errorf("a new cause on a high line drove %v, want [false true]", got)
	}
	// The driver acknowledges only the config bit: the line stays high.
	m.w32(mmioInterruptACK, InterruptConfigChange)
	if got := irq.seq(); len(got) != 0 || m.r32(mmioInterruptStatus) != InterruptUsedBuffer {
		t.Errorf("partial ack drove %v, status %#x", got, m.r32(mmioInterruptStatus))
	}
	if err := tr.ReassertIRQ(); err != nil {
		t.Fatal(err)
	}
	if got := irq.seq(); !slices.Equal(got, []bool{false, true}) {
		t.Errorf("ReassertIRQ with a cause pending drove %v, want [false true]", got)
	}
	m.w32(mmioInterruptACK, InterruptUsedBuffer)
	if got := irq.seq(); !slices.Equal(got, []bool{false}) {
		t.Errorf("the last ack drove %v, want [false]", got)
	}
	if err := tr.ReassertIRQ(); err != nil {
		t.Fatal(err)
	}
	if got := irq.seq(); !slices.Equal(got, []bool{false}) {
		t.Errorf("ReassertIRQ with nothing pending drove %v, want [false]", got)
	}
}

// TestVirtioMMIOReassertIRQFailure checks that a line that cannot be
// lowered on ReassertIRQ is recorded as the transport's failure, like any
// other IRQ failure, not only returned.
func TestVirtioMMIOReassertIRQFailure(t *testing.T) {
	tr, _, irq, _, _ := activeTransport(t, FeatureVersion1)
	irq.fail = errFake
	if err := tr.ReassertIRQ(); !errors.Is(err, errFake) {
		t.Fatalf("ReassertIRQ = %v, want the IRQ failure", err)
	}
	if !errors.Is(tr.Err(), errFake) {
		t.Errorf("Err = %v, want the IRQ failure recorded", tr.Err())
	}
}
