package devstate

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
)

// Guest memory layout of FuzzVirtioNetQueues: three queues of 8, queue i
// with its descriptor table at i*0x200, avail ring at +0x80 and used ring at
// +0xc0, and buffers from 0x600 to the end of 8 KiB.
const (
	netFuzzMem   = 0x2000
	netFuzzQueue = 8
	netFuzzData  = 0x600
	// netFuzzAllocLimit bounds what one Notify or delivery may allocate:
	// error values, never a guest-sized buffer.
	netFuzzAllocLimit = 256 << 10
)

func netFuzzDriver(tb testing.TB, mem *sliceMem, q int, data uint64) *driver {
	base := uint64(q) * 0x200
	return &driver{t: tb, mem: mem, size: netFuzzQueue, desc: base, avail: base + 0x80, used: base + 0xc0, nextData: data}
}

// netFuzzSeeds builds guest memories with valid receive buffers, transmit
// frames and control requests.
func netFuzzSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	for _, indirect := range []bool{false, true} {
		mem := &sliceMem{b: make([]byte, netFuzzMem)}
		rx := netFuzzDriver(f, mem, netRxQ, netFuzzData)
		rx.publish(rx.chain(buf{n: 700, writable: true}))
		rx.publish(rx.chain(buf{n: 100, writable: true}, buf{n: 200, writable: true}))
		tx := netFuzzDriver(f, mem, netTxQ, rx.nextData)
		hdr := netHdr(netHdrFNeedsCsum, netHdrGSOTCPv4, 0)
		if indirect {
			tx.publish(tx.indirect(buf{data: hdr}, buf{data: frame(80, 1)}))
		} else {
			tx.publish(tx.chain(buf{data: hdr}, buf{data: frame(80, 1)}))
		}
		tx.publish(tx.chain(buf{data: append(netHdr(0, 0, 0), frame(60, 2)...)}))
		ctrl := netFuzzDriver(f, mem, netCtrlQ, tx.nextData)
		ctrl.publish(ctrl.chain(buf{data: []byte{netCtrlAnnounce, netCtrlAnnounceAck}}, buf{n: 1, writable: true}))
		ctrl.publish(ctrl.chain(buf{data: []byte{0, 1, 1}}, buf{n: 1, writable: true}))
		seeds = append(seeds, mem.b)
	}
	return seeds
}

// FuzzVirtioNetQueues serves rings made of random bytes: transmit and
// control notifications, then the delivery of one received frame of
// frameLen bytes. ctl picks the features the driver accepts (bit 0
// EVENT_IDX, 1 INDIRECT_DESC, 2 MRG_RXBUF, 3 GUEST_ANNOUNCE, 4 GUEST_CSUM
// and the TSOs), bit 5 a tap with a vnet header, and bit 7 leaves the avail
// idx as the random bytes say instead of avail%9 on every queue. The device
// must not panic, must write to the tap only frames of a header-less 14 to
// VirtioNetMaxFrame bytes (plus the header with a vnet header), must deliver
// at most the one frame, whole, must allocate less than
// netFuzzAllocLimit per step, and must touch nothing after a reset.
func FuzzVirtioNetQueues(f *testing.F) {
	for _, s := range netFuzzSeeds(f) {
		f.Add(uint8(0x3f), uint8(2), uint16(1000), s)
		f.Add(uint8(0x1b), uint8(2), uint16(60), s)
		f.Add(uint8(0x00), uint8(2), uint16(650), s)
	}
	f.Add(uint8(0), uint8(0), uint16(0), []byte{})
	f.Fuzz(func(t *testing.T, ctl, avail uint8, frameLen uint16, ring []byte) {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		tap, peer := os.NewFile(uintptr(fds[0]), "tap"), os.NewFile(uintptr(fds[1]), "peer")
		defer tap.Close()
		defer peer.Close()
		vnet := ctl&0x20 != 0
		deps := VirtioNetDeps{Tap: tap, VnetHdr: vnet, ID: "fuzz"}
		if vnet {
			deps.Configure = func(int, uint32) error { return nil }
		}
		n, err := NewVirtioNet(deps, net.HardwareAddr{2, 0, 0, 0, 0, 1})
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		mem := &sliceMem{b: make([]byte, netFuzzMem)}
		tr, err := NewVirtioMMIO(VirtioMMIODeps{Base: testBase, Device: n, Mem: mem, IRQ: &fakeIRQ{}})
		if err != nil {
			t.Fatal(err)
		}
		m := &mmioDriver{t: t, tr: tr, base: testBase}
		acked := FeatureVersion1 | netFCtrlVQ
		for bit, feat := range []uint64{FeatureRingEventIdx, FeatureIndirectDesc, netFMrgRxbuf, netFGuestAnnounce,
			netFGuestCsum | netFGuestTSO4 | netFGuestTSO6 | netFGuestECN | netFCsum | netFHostTSO4} {
			if ctl&(1<<bit) != 0 {
				acked |= feat
			}
		}
		acked &= n.Features()
		if st := m.negotiate(acked); st&StatusFeaturesOK == 0 {
			t.Fatalf("FEATURES_OK refused for %#x", acked)
		}
		var ds [3]*driver
		for q := range ds {
			ds[q] = netFuzzDriver(t, mem, q, 0)
			m.setupQueue(uint32(q), ds[q])
		}
		// The receive queue is left unready so that no receive goroutine
		// runs; its delivery is driven below, deterministically.
		m.w32(mmioQueueSel, netRxQ)
		m.w32(mmioQueueReady, 0)
		m.w32(mmioStatus, 0xf)
		n.Start() // rings still empty: nothing served yet
		copy(mem.b, ring)
		if ctl&0x80 == 0 {
			for _, d := range ds {
				d.put16(d.avail+2, uint16(avail%(netFuzzQueue+1)))
			}
		}

		step := func(name string, f func()) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			f()
			runtime.ReadMemStats(&after)
			if a := after.TotalAlloc - before.TotalAlloc; a > netFuzzAllocLimit {
				t.Fatalf("%s allocated %d bytes, limit %d", name, a, netFuzzAllocLimit)
			}
		}
		step("transmit", func() { m.w32(mmioQueueNotify, netTxQ) })
		step("control", func() { m.w32(mmioQueueNotify, netCtrlQ) })
		_, _ = n.Announce()

		// Receive one frame into whatever the rx ring holds, as the
		// receive goroutine would.
		rxq, err := RestoreQueue(QueueState{MaxSize: VirtioNetQueueSize, Size: netFuzzQueue, Ready: true,
			DescTable: ds[netRxQ].desc, AvailRing: ds[netRxQ].avail, UsedRing: ds[netRxQ].used,
			EventIdx: acked&FeatureRingEventIdx != 0}, mem)
		if err != nil {
			t.Fatal(err)
		}
		rxq.indirect = acked&FeatureIndirectDesc != 0
		step("receive", func() {
			n.mu.Lock()
			defer n.mu.Unlock()
			if !n.active {
				return
			}
			// A copy: the transport's own slice stays as it was.
			n.ctx.Queues = []*Queue{rxq, n.ctx.Queues[netTxQ], n.ctx.Queues[netCtrlQ]}
			fl := min(int(frameLen), VirtioNetMaxFrame)
			if fl == 0 {
				return
			}
			clear(n.rxBuf[:VirtioNetHdrLen])
			for i := range fl {
				n.rxBuf[VirtioNetHdrLen+i] = byte(i)
			}
			n.rxLen = VirtioNetHdrLen + fl
			n.deliverLocked()
		})
		// At most the one frame was delivered, whole. (The used ring
		// itself is not checked: the guest may point receive buffers at
		// it, and then the frame's bytes land there.)
		if st := n.Stats(); st.RxFrames > 1 || st.RxFrames == 1 && st.RxBytes != uint64(min(int(frameLen), VirtioNetMaxFrame)) {
			t.Fatalf("one frame of %d bytes, stats %+v", frameLen, st)
		}
		// Every frame on the tap is a sane size.
		b := make([]byte, netBufSize+1)
		for {
			k, err := syscall.Read(fds[1], b)
			if errors.Is(err, syscall.EAGAIN) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			lo, hi := netMinFrame, VirtioNetMaxFrame
			if vnet {
				lo, hi = lo+VirtioNetHdrLen, hi+VirtioNetHdrLen
			}
			if k < lo || k > hi {
				t.Fatalf("tap got a %d-byte frame, want %d to %d", k, lo, hi)
			}
			if vnet && binary.LittleEndian.Uint16(b[netHdrNumBuffers:]) != 0 {
				t.Fatal("num_buffers passed to the tap")
			}
		}

		// Whatever happened, a reset stops the device.
		m.w32(mmioStatus, 0)
		snapshot := string(mem.b)
		n.Notify(netTxQ)
		n.Notify(netCtrlQ)
		n.Start()
		if string(mem.b) != snapshot {
			t.Fatal("device wrote guest memory after reset")
		}
		if s := n.Stats(); s.TxFrames+s.TxDropped > 2*netFuzzQueue {
			t.Fatalf("stats %+v: more transmits than two rings' worth", s)
		}
	})
}

// FuzzRestoreVirtioNet restores random states: one is accepted only with a
// canonical unicast MAC, a status of LINK_UP with at most ANNOUNCE, and the
// tap's vnet header kind, and then comes back unchanged from State with
// the offer that kind implies.
func FuzzRestoreVirtioNet(f *testing.F) {
	f.Add(netMACText, uint16(1), true, true)
	f.Add(netMACText, uint16(3), false, false)
	f.Add("01:00:5e:00:00:01", uint16(1), false, false)
	f.Add("52-54-00-12-34-56", uint16(1), false, false)
	f.Add(netMACText, uint16(7), true, false)
	f.Fuzz(func(t *testing.T, mac string, status uint16, vnet, tapVnet bool) {
		deps, _, cfg := netDeps(t, tapVnet)
		deps.Configure = cfg.configure
		st := VirtioNetState{MAC: mac, VnetHdr: vnet, Status: status}
		n, err := RestoreVirtioNet(st, deps)
		hw, perr := net.ParseMAC(mac)
		valid := perr == nil && len(hw) == 6 && hw[0]&1 == 0 && hw.String() == mac &&
			status&VirtioNetStatusLinkUp != 0 && status&^(VirtioNetStatusLinkUp|VirtioNetStatusAnnounce) == 0 &&
			vnet == tapVnet
		if (err == nil) != valid {
			t.Fatalf("restore %+v over a tap with vnet header %v: error %v", st, tapVnet, err)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidState) {
				t.Fatalf("error %v does not wrap ErrInvalidState", err)
			}
			return
		}
		defer n.Close()
		if got := n.State(); got != st {
			t.Fatalf("State after restore = %+v, want %+v", got, st)
		}
		if n.Features() != virtioNetOffer(vnet) {
			t.Fatalf("offer %#x for vnet header %v", n.Features(), vnet)
		}
	})
}
