package devstate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// lockedMem is guest RAM shared between the test (playing the driver) and
// the device's receive goroutine: both sides take mu, so the race detector
// sees the guest's and the device's accesses ordered, as real vCPUs are by
// the ring protocol.
type lockedMem struct {
	mu sync.Mutex
	sliceMem
}

func (m *lockedMem) ReadAt(p []byte, gpa int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sliceMem.ReadAt(p, gpa)
}

func (m *lockedMem) WriteAt(p []byte, gpa int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sliceMem.WriteAt(p, gpa)
}

// fakeConfigure records the tap configuration calls.
type fakeConfigure struct {
	mu    sync.Mutex
	calls [][2]int // hdrLen, offloads
	fail  error
}

func (f *fakeConfigure) configure(hdrLen int, offloads uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.calls = append(f.calls, [2]int{hdrLen, int(offloads)})
	return nil
}

func (f *fakeConfigure) get() [][2]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][2]int(nil), f.calls...)
}

// Guest memory layout of the net harness: three queues of 256 with their
// rings low, each with its own data area.
const (
	netTestMem  = 4 << 20
	netTestQ    = 256
	netMACText  = "52:54:00:12:34:56"
	netWaitTime = 5 * time.Second
)

var netTestRings = [3]struct{ desc, avail, used, data uint64 }{
	{0x1000, 0x3000, 0x4000, 0x200000}, // rx: 2 MiB of buffers
	{0x5000, 0x7000, 0x8000, 0x10000},  // tx
	{0x9000, 0xb000, 0xc000, 0x1c0000}, // ctrl
}

// fakeTap is a SOCK_SEQPACKET socket pair: dev goes to the device as its
// tap (non-blocking, in Go's poller), peer is the test's end.
func fakeTap(t testing.TB) (dev, peer *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	dev, peer = os.NewFile(uintptr(fds[0]), "tap"), os.NewFile(uintptr(fds[1]), "peer")
	t.Cleanup(func() { dev.Close(); peer.Close() })
	return dev, peer
}

// netHarness is a VirtioNet behind a real transport, driven by the fake
// driver over locked guest memory and a socket-pair tap.
type netHarness struct {
	t     testing.TB
	n     *VirtioNet
	tr    *VirtioMMIO
	m     *mmioDriver
	mem   *lockedMem
	irq   *fakeIRQ
	q     [3]*driver
	tap   *os.File
	peer  *os.File
	cfg   *fakeConfigure
	deps  VirtioNetDeps
	acked uint64
}

func netDeps(t testing.TB, vnet bool) (VirtioNetDeps, *os.File, *fakeConfigure) {
	tap, peer := fakeTap(t)
	cfg := &fakeConfigure{}
	deps := VirtioNetDeps{Tap: tap, VnetHdr: vnet, ID: "net0"}
	if vnet {
		deps.Configure = cfg.configure
	}
	return deps, peer, cfg
}

// newNetHarness builds the device, negotiates acked (masked by the offer),
// sets up the three queues and sets DRIVER_OK. The device is not started.
func newNetHarness(t testing.TB, vnet bool, acked uint64) *netHarness {
	t.Helper()
	deps, peer, cfg := netDeps(t, vnet)
	return newNetHarnessDeps(t, deps, peer, cfg, acked)
}

// newNetHarnessDeps is newNetHarness over the given tap; peer and cfg may
// be nil.
func newNetHarnessDeps(t testing.TB, deps VirtioNetDeps, peer *os.File, cfg *fakeConfigure, acked uint64) *netHarness {
	t.Helper()
	mac, _ := net.ParseMAC(netMACText)
	n, err := NewVirtioNet(deps, mac)
	if err != nil {
		t.Fatalf("NewVirtioNet: %v", err)
	}
	t.Cleanup(n.Close)
	h := &netHarness{t: t, n: n, peer: peer, tap: deps.Tap, cfg: cfg, deps: deps, irq: &fakeIRQ{}}
	h.mem = &lockedMem{sliceMem: sliceMem{b: make([]byte, netTestMem)}}
	h.tr, err = NewVirtioMMIO(VirtioMMIODeps{Base: testBase, Device: n, Mem: h.mem, IRQ: h.irq})
	if err != nil {
		t.Fatalf("NewVirtioMMIO: %v", err)
	}
	h.m = &mmioDriver{t: t, tr: h.tr, base: testBase}
	h.acked = acked & n.Features()
	if st := h.m.negotiate(h.acked); st&StatusFeaturesOK == 0 {
		t.Fatalf("FEATURES_OK refused for %#x", h.acked)
	}
	for i, r := range netTestRings {
		h.q[i] = &driver{t: t, mem: &h.mem.sliceMem, size: netTestQ, desc: r.desc, avail: r.avail, used: r.used, nextData: r.data}
		h.m.setupQueue(uint32(i), h.q[i])
	}
	h.m.w32(mmioStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK)
	if st := h.m.r32(mmioStatus); st&StatusDriverOK == 0 || st&StatusDeviceNeedsReset != 0 {
		t.Fatalf("status after DRIVER_OK = %#x (err %v)", st, h.tr.Err())
	}
	return h
}

// locked runs f with guest memory locked, as the guest's side of the rings.
func (h *netHarness) locked(f func()) {
	h.mem.mu.Lock()
	defer h.mem.mu.Unlock()
	f()
}

// post makes receive buffers available: one writable chain of each size.
func (h *netHarness) post(sizes ...uint32) {
	h.locked(func() {
		for _, n := range sizes {
			d := h.q[netRxQ]
			d.publish(d.chain(buf{n: n, writable: true}))
		}
	})
}

// notify writes QueueNotify as the guest would.
func (h *netHarness) notify(q int) { h.m.w32(mmioQueueNotify, uint32(q)) }

// send queues a transmit chain of the given buffers and notifies.
func (h *netHarness) send(bufs ...buf) {
	h.locked(func() {
		d := h.q[netTxQ]
		d.publish(d.chain(bufs...))
	})
	h.notify(netTxQ)
}

func (h *netHarness) usedIdx(q int) uint16 {
	var v uint16
	h.locked(func() { v = h.q[q].usedIdx() })
	return v
}

// used returns used element i of queue q and the bytes it points to (the
// used length of them).
func (h *netHarness) used(q int, i uint16) (head uint32, data []byte) {
	h.locked(func() {
		d := h.q[q]
		id, n := d.usedElem(i)
		b := d.mem.b[d.desc+16*uint64(id):]
		addr := binary.LittleEndian.Uint64(b)
		data = bytes.Clone(d.mem.b[addr : addr+uint64(n)])
		head = id
	})
	return head, data
}

// waitUsed waits until queue q's used idx reaches want.
func (h *netHarness) waitUsed(q int, want uint16) {
	h.t.Helper()
	deadline := time.Now().Add(netWaitTime)
	for h.usedIdx(q) != want {
		if time.Now().After(deadline) {
			h.t.Fatalf("queue %d used idx %d, want %d (stats %+v, err %v)", q, h.usedIdx(q), want, h.n.Stats(), h.tr.Err())
		}
		time.Sleep(time.Millisecond)
	}
}

// waitStats waits until cond holds for the device's counters.
func (h *netHarness) waitStats(what string, cond func(VirtioNetStats) bool) {
	h.t.Helper()
	deadline := time.Now().Add(netWaitTime)
	for !cond(h.n.Stats()) {
		if time.Now().After(deadline) {
			h.t.Fatalf("waiting for %s: stats %+v", what, h.n.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

// peerWrite puts one frame on the tap for the device to read.
func (h *netHarness) peerWrite(p []byte) {
	h.t.Helper()
	if _, err := h.peer.Write(p); err != nil {
		h.t.Fatalf("write to tap peer: %v", err)
	}
}

// peerRead reads one frame the device wrote to the tap.
func (h *netHarness) peerRead() []byte {
	h.t.Helper()
	b := make([]byte, netBufSize+100)
	_ = h.peer.SetReadDeadline(time.Now().Add(netWaitTime))
	n, err := h.peer.Read(b)
	if err != nil {
		h.t.Fatalf("read from tap peer: %v", err)
	}
	return b[:n]
}

// peerEmpty checks that the device wrote nothing more to the tap.
func (h *netHarness) peerEmpty() {
	h.t.Helper()
	b := make([]byte, netBufSize)
	_ = h.peer.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if n, err := h.peer.Read(b); err == nil {
		h.t.Fatalf("unexpected %d-byte frame on the tap", n)
	}
}

func (h *netHarness) failed() bool { return h.m.r32(mmioStatus)&StatusDeviceNeedsReset != 0 }

// frame returns an Ethernet frame of n bytes with recognisable contents.
func frame(n int, seed byte) []byte {
	f := make([]byte, n)
	for i := range f {
		f[i] = seed + byte(i*7)
	}
	return f
}

// netHdr builds a virtio_net_hdr.
func netHdr(flags, gso byte, numBuffers uint16) []byte {
	h := make([]byte, VirtioNetHdrLen)
	h[0], h[1] = flags, gso
	binary.LittleEndian.PutUint16(h[netHdrNumBuffers:], numBuffers)
	return h
}

const allNetFeatures = ^uint64(0)

func TestVirtioNetOffer(t *testing.T) {
	base := FeatureVersion1 | FeatureIndirectDesc | FeatureRingEventIdx |
		netFMAC | netFStatus | netFCtrlVQ | netFGuestAnnounce | netFMrgRxbuf
	offloadBits := netFCsum | netFGuestCsum | netFGuestTSO4 | netFGuestTSO6 | netFGuestECN |
		netFHostTSO4 | netFHostTSO6 | netFHostECN
	for _, vnet := range []bool{false, true} {
		deps, _, _ := netDeps(t, vnet)
		n, err := NewVirtioNet(deps, net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56})
		if err != nil {
			t.Fatal(err)
		}
		want := base
		if vnet {
			want |= offloadBits
		}
		if got := n.Features(); got != want {
			t.Errorf("vnet %v: offer %#x, want %#x", vnet, got, want)
		}
		if n.DeviceID() != VirtioIDNet || len(n.QueueMaxSizes()) != 3 {
			t.Errorf("device id %d, %d queues", n.DeviceID(), len(n.QueueMaxSizes()))
		}
		for _, s := range n.QueueMaxSizes() {
			if s != VirtioNetQueueSize {
				t.Errorf("queue max size %d", s)
			}
		}
		var c [12]byte
		for off := range uint32(len(c)) {
			n.ReadConfig(off, c[off:off+1])
		}
		wantCfg := []byte{0x52, 0x54, 0, 0x12, 0x34, 0x56, 1, 0, 1, 0, 0, 0}
		if !bytes.Equal(c[:], wantCfg) {
			t.Errorf("config % x, want % x", c, wantCfg)
		}
		n.WriteConfig(0, []byte{9, 9, 9, 9, 9, 9})
		var mac [6]byte
		n.ReadConfig(0, mac[:])
		if mac != [6]byte{0x52, 0x54, 0, 0x12, 0x34, 0x56} {
			t.Errorf("config write changed the mac to % x", mac)
		}
		n.Close()
	}
}

func TestVirtioNetNewRefuses(t *testing.T) {
	deps, _, _ := netDeps(t, true)
	good := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	cases := []struct {
		name string
		deps VirtioNetDeps
		mac  net.HardwareAddr
	}{
		{"no tap", VirtioNetDeps{ID: "x"}, good},
		{"vnet without configure", VirtioNetDeps{Tap: deps.Tap, VnetHdr: true}, good},
		{"multicast mac", deps, net.HardwareAddr{1, 0, 0, 0, 0, 1}},
		{"short mac", deps, net.HardwareAddr{2, 0, 0}},
	}
	for _, c := range cases {
		if _, err := NewVirtioNet(c.deps, c.mac); !errors.Is(err, ErrVirtioNet) {
			t.Errorf("%s: error %v, want ErrVirtioNet", c.name, err)
		}
	}
	// A blocking fd cannot be interrupted: refused.
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	r, w := os.NewFile(uintptr(p[0]), "blocking"), os.NewFile(uintptr(p[1]), "w")
	defer r.Close()
	defer w.Close()
	if _, err := NewVirtioNet(VirtioNetDeps{Tap: r}, good); !errors.Is(err, ErrVirtioNet) {
		t.Errorf("blocking tap: error %v, want ErrVirtioNet", err)
	}
}

func TestVirtioNetConfigureOffloads(t *testing.T) {
	cases := []struct {
		acked uint64
		want  int
	}{
		{0, 0},
		{netFGuestTSO4 | netFGuestECN, 0}, // no GUEST_CSUM: nothing
		{netFGuestCsum, int(TunFCsum)},
		{netFGuestCsum | netFGuestECN, int(TunFCsum)}, // ECN needs a TSO
		{netFGuestCsum | netFGuestTSO4, int(TunFCsum | TunFTSO4)},
		{allNetFeatures, int(TunFCsum | TunFTSO4 | TunFTSO6 | TunFTSOECN)},
	}
	for _, c := range cases {
		h := newNetHarness(t, true, FeatureVersion1|c.acked)
		want := [][2]int{{VirtioNetHdrLen, c.want}}
		if got := h.cfg.get(); len(got) != 1 || got[0] != want[0] {
			t.Errorf("acked %#x: configure calls %v, want %v", c.acked, got, want)
		}
	}
	// Offload constants match linux/if_tun.h.
	if TunFCsum != unix.TUN_F_CSUM || TunFTSO4 != unix.TUN_F_TSO4 || TunFTSO6 != unix.TUN_F_TSO6 || TunFTSOECN != unix.TUN_F_TSO_ECN {
		t.Error("TunF… constants differ from x/sys/unix")
	}
	// A failing Configure fails activation.
	deps, _, cfg := netDeps(t, true)
	cfg.fail = errFake
	n, err := NewVirtioNet(deps, net.HardwareAddr{2, 0, 0, 0, 0, 1})
	if err != nil {
		t.Fatal(err)
	}
	err = n.Activate(VirtioContext{Queues: []*Queue{newQueue(4, nil), newQueue(4, nil), newQueue(4, nil)}, Transport: &VirtioMMIO{}})
	if !errors.Is(err, errFake) {
		t.Errorf("activate with failing configure: %v", err)
	}
}

func TestVirtioNetTransmit(t *testing.T) {
	for _, vnet := range []bool{false, true} {
		h := newNetHarness(t, vnet, allNetFeatures)
		h.n.Start()
		f := frame(100, 1)
		hdr := netHdr(0, 0, 7)
		if vnet {
			hdr = netHdr(netHdrFNeedsCsum, netHdrGSOTCPv4|netHdrGSOECN, 7)
			binary.LittleEndian.PutUint16(hdr[2:], 54)   // hdr_len
			binary.LittleEndian.PutUint16(hdr[4:], 1448) // gso_size
			binary.LittleEndian.PutUint16(hdr[6:], 34)   // csum_start
			binary.LittleEndian.PutUint16(hdr[8:], 16)   // csum_offset
		}
		// Header and frame split across buffers anywhere.
		h.send(buf{data: hdr[:5]}, buf{data: append(bytes.Clone(hdr[5:]), f[:20]...)}, buf{data: f[20:]})
		got := h.peerRead()
		want := f
		if vnet {
			wantHdr := bytes.Clone(hdr)
			wantHdr[10], wantHdr[11] = 0, 0 // num_buffers zeroed
			want = append(wantHdr, f...)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("vnet %v: tap got % x\nwant % x", vnet, got, want)
		}
		h.waitUsed(netTxQ, 1)
		if _, data := h.used(netTxQ, 0); len(data) != 0 {
			t.Errorf("tx used len %d, want 0", len(data))
		}
		if s := h.n.Stats(); s.TxFrames != 1 || s.TxBytes != 100 || s.TxDropped != 0 {
			t.Errorf("vnet %v: stats %+v", vnet, s)
		}
		if h.irq.level() != true {
			t.Errorf("no interrupt after transmit")
		}
	}
}

func TestVirtioNetTransmitBadChains(t *testing.T) {
	h := newNetHarness(t, false, allNetFeatures)
	h.n.Start()
	hdr := netHdr(0, 0, 0)
	h.send(buf{data: hdr}, buf{data: frame(13, 0)})                            // too short
	h.send(buf{data: hdr}, buf{data: frame(60, 0)}, buf{n: 8, writable: true}) // writable part
	h.send(buf{data: hdr}, buf{data: frame(VirtioNetMaxFrame+1, 0)})           // too long
	h.send(buf{data: hdr}, buf{data: frame(VirtioNetMaxFrame, 2)})             // largest
	h.waitUsed(netTxQ, 4)
	if got := h.peerRead(); !bytes.Equal(got, frame(VirtioNetMaxFrame, 2)) {
		t.Errorf("largest frame: got %d bytes", len(got))
	}
	h.peerEmpty()
	if s := h.n.Stats(); s.TxDropped != 3 || s.TxFrames != 1 {
		t.Errorf("stats %+v, want 3 dropped, 1 sent", s)
	}
	if h.failed() {
		t.Fatalf("device failed on droppable chains: %v", h.tr.Err())
	}
	// Offloads not negotiated: dropped.
	for _, hd := range [][]byte{
		netHdr(netHdrFNeedsCsum, 0, 0), // CSUM not offered without a vnet header
		netHdr(0, netHdrGSOTCPv4, 0),
		netHdr(0, netHdrGSOECN, 0),
		netHdr(0, 3, 0), // VIRTIO_NET_HDR_GSO_UDP
	} {
		h.send(buf{data: hd}, buf{data: frame(60, 9)})
	}
	h.waitUsed(netTxQ, 8)
	h.peerEmpty()
	if s := h.n.Stats(); s.TxDropped != 7 {
		t.Errorf("headers asking for offloads not negotiated: stats %+v, want 7 dropped", s)
	}
	// With a vnet header, each offload needs its own feature.
	hv := newNetHarness(t, true, allNetFeatures&^(netFHostTSO6|netFHostECN))
	hv.n.Start()
	for _, hd := range [][]byte{netHdr(0, netHdrGSOTCPv6, 0), netHdr(netHdrFNeedsCsum, netHdrGSOTCPv4|netHdrGSOECN, 0)} {
		hv.send(buf{data: hd}, buf{data: frame(60, 9)})
	}
	hv.send(buf{data: netHdr(netHdrFNeedsCsum, netHdrGSOTCPv4, 0)}, buf{data: frame(60, 9)})
	hv.waitUsed(netTxQ, 3)
	if got := hv.peerRead(); !bytes.Equal(got[VirtioNetHdrLen:], frame(60, 9)) || got[1] != netHdrGSOTCPv4 {
		t.Errorf("TSO4 frame: % x", got[:VirtioNetHdrLen])
	}
	hv.peerEmpty()
	if s := hv.n.Stats(); s.TxDropped != 2 || s.TxFrames != 1 {
		t.Errorf("vnet offload checks: stats %+v", s)
	}

	// A write the tap refuses drops the frame; the device lives on.
	if err := unix.Shutdown(int(h.fdOf(h.tap)), unix.SHUT_WR); err != nil {
		t.Fatal(err)
	}
	h.send(buf{data: hdr}, buf{data: frame(60, 3)})
	h.waitUsed(netTxQ, 9)
	if s := h.n.Stats(); s.TxDropped != 8 || h.failed() {
		t.Errorf("after a refused write: stats %+v, failed %v", s, h.failed())
	}
	// A descriptor outside guest memory is a broken ring: the device fails.
	h.locked(func() {
		d := h.q[netTxQ]
		d.setDesc(d.nextDesc, netTestMem-4, 100, 0, 0)
		d.publish(d.nextDesc)
	})
	h.notify(netTxQ)
	if !h.failed() || !errors.Is(h.tr.Err(), ErrVirtqueue) {
		t.Errorf("bad descriptor: failed %v, err %v", h.failed(), h.tr.Err())
	}
}

// fdOf returns f's descriptor without switching it to blocking mode.
func (h *netHarness) fdOf(f *os.File) uintptr {
	rc, err := f.SyscallConn()
	if err != nil {
		h.t.Fatal(err)
	}
	var fd uintptr
	_ = rc.Control(func(x uintptr) { fd = x })
	return fd
}

func TestVirtioNetReceiveSingle(t *testing.T) {
	for _, vnet := range []bool{false, true} {
		h := newNetHarness(t, vnet, allNetFeatures&^netFMrgRxbuf)
		h.n.Start()
		h.post(2048, 2048)
		f1, f2 := frame(60, 1), frame(1514, 2)
		hdr := netHdr(2, 0, 99) // DATA_VALID; num_buffers garbage from the tap
		for _, f := range [][]byte{f1, f2} {
			if vnet {
				h.peerWrite(append(bytes.Clone(hdr), f...))
			} else {
				h.peerWrite(f)
			}
		}
		h.waitUsed(netRxQ, 2)
		for i, f := range [][]byte{f1, f2} {
			_, data := h.used(netRxQ, uint16(i))
			wantHdr := netHdr(0, 0, 1)
			if vnet {
				wantHdr = netHdr(2, 0, 1)
			}
			if want := append(wantHdr, f...); !bytes.Equal(data, want) {
				t.Errorf("vnet %v frame %d: guest got %d bytes % x…, want %d bytes % x…", vnet, i, len(data), data[:16], len(want), want[:16])
			}
		}
		if s := h.n.Stats(); s.RxFrames != 2 || s.RxBytes != 60+1514 || s.RxDropped != 0 {
			t.Errorf("stats %+v", s)
		}
		if !h.irq.level() {
			t.Error("no interrupt after receive")
		}
	}
}

func TestVirtioNetReceiveHeaderChecks(t *testing.T) {
	// Without GUEST_CSUM the flags are cleared, and a partial checksum or
	// a GSO frame is dropped.
	h := newNetHarness(t, true, FeatureVersion1|netFMrgRxbuf)
	h.n.Start()
	h.post(2048, 2048, 2048, 2048)
	for _, hd := range [][]byte{
		netHdr(netHdrFNeedsCsum, 0, 0),
		netHdr(0, netHdrGSOTCPv4, 0),
		netHdr(netHdrFDataValid|4, 0, 0), // DATA_VALID and RSC_INFO: cleared
	} {
		h.peerWrite(append(hd, frame(60, 4)...))
	}
	h.waitUsed(netRxQ, 1)
	h.waitStats("two drops", func(s VirtioNetStats) bool { return s.RxDropped == 2 })
	if _, data := h.used(netRxQ, 0); !bytes.Equal(data, append(netHdr(0, 0, 1), frame(60, 4)...)) {
		t.Errorf("header % x, want flags cleared", data[:VirtioNetHdrLen])
	}
	// With GUEST_CSUM and GUEST_TSO4 (not TSO6, not ECN).
	h = newNetHarness(t, true, FeatureVersion1|netFMrgRxbuf|netFGuestCsum|netFGuestTSO4)
	h.n.Start()
	h.post(2048, 2048, 2048, 2048)
	for _, hd := range [][]byte{
		netHdr(netHdrFNeedsCsum|4, netHdrGSOTCPv4, 0), // delivered, RSC_INFO cleared
		netHdr(netHdrFNeedsCsum, netHdrGSOTCPv6, 0),
		netHdr(netHdrFNeedsCsum, netHdrGSOTCPv4|netHdrGSOECN, 0),
		netHdr(0, netHdrGSOECN, 0),
		netHdr(0, 3, 0), // UDP
	} {
		h.peerWrite(append(hd, frame(60, 5)...))
	}
	h.waitUsed(netRxQ, 1)
	h.waitStats("four drops", func(s VirtioNetStats) bool { return s.RxDropped == 4 })
	if _, data := h.used(netRxQ, 0); !bytes.Equal(data[:2], []byte{netHdrFNeedsCsum, netHdrGSOTCPv4}) {
		t.Errorf("header % x", data[:VirtioNetHdrLen])
	}
}

func TestVirtioNetReceiveMerged(t *testing.T) {
	h := newNetHarness(t, false, allNetFeatures)
	h.n.Start()
	h.post(1024, 1024, 1024, 1024)
	f := frame(3000, 5)
	h.peerWrite(f)
	h.waitUsed(netRxQ, 3)
	var got []byte
	for i, wantLen := range []int{1024, 1024, 3012 - 2048} {
		_, data := h.used(netRxQ, uint16(i))
		if len(data) != wantLen {
			t.Errorf("used %d: len %d, want %d", i, len(data), wantLen)
		}
		got = append(got, data...)
	}
	if want := append(netHdr(0, 0, 3), f...); !bytes.Equal(got, want) {
		t.Errorf("merged frame differs (num_buffers %d)", binary.LittleEndian.Uint16(got[10:]))
	}
	// A small frame uses the fourth buffer alone, num_buffers 1.
	h.peerWrite(frame(60, 6))
	h.waitUsed(netRxQ, 4)
	if _, data := h.used(netRxQ, 3); !bytes.Equal(data, append(netHdr(0, 0, 1), frame(60, 6)...)) {
		t.Errorf("small frame: % x", data[:14])
	}
}

func TestVirtioNetReceiveWaitsForBuffers(t *testing.T) {
	for _, mrg := range []bool{false, true} {
		acked := allNetFeatures
		if !mrg {
			acked &^= netFMrgRxbuf
		}
		h := newNetHarness(t, false, acked)
		h.n.Start()
		f := frame(3000, 9)
		h.peerWrite(f)
		if mrg {
			h.post(1024) // not enough for the frame
			h.notify(netRxQ)
		}
		time.Sleep(50 * time.Millisecond)
		if got := h.usedIdx(netRxQ); got != 0 {
			t.Fatalf("mrg %v: used idx %d before enough buffers", mrg, got)
		}
		if mrg {
			h.post(1024, 1024)
		} else {
			h.post(4096)
		}
		h.notify(netRxQ)
		want := uint16(1)
		if mrg {
			want = 3
		}
		h.waitUsed(netRxQ, want)
		_, data := h.used(netRxQ, 0)
		if got := binary.LittleEndian.Uint16(data[10:]); got != want {
			t.Errorf("mrg %v: num_buffers %d, want %d", mrg, got, want)
		}
		if s := h.n.Stats(); s.RxFrames != 1 || s.RxDropped != 0 {
			t.Errorf("mrg %v: stats %+v", mrg, s)
		}
	}
}

func TestVirtioNetReceiveTooBig(t *testing.T) {
	// Without MRG_RXBUF a frame larger than the chain is dropped and the
	// chain kept for the next frame.
	h := newNetHarness(t, false, allNetFeatures&^netFMrgRxbuf)
	h.n.Start()
	h.post(100)
	h.peerWrite(frame(500, 1))
	h.peerWrite(frame(60, 2))
	h.waitUsed(netRxQ, 1)
	if _, data := h.used(netRxQ, 0); !bytes.Equal(data, append(netHdr(0, 0, 1), frame(60, 2)...)) {
		t.Errorf("second frame not delivered whole: %d bytes", len(data))
	}
	if s := h.n.Stats(); s.RxDropped != 1 || s.RxFrames != 1 {
		t.Errorf("stats %+v", s)
	}

	// With MRG_RXBUF, a ring whose every buffer together is too small
	// drops the frame.
	h = newNetHarness(t, false, allNetFeatures)
	h.n.Start()
	sizes := make([]uint32, netTestQ)
	for i := range sizes {
		sizes[i] = 16
	}
	h.post(sizes...)
	h.peerWrite(frame(netTestQ*16, 1)) // + header: too big for the ring
	h.waitStats("a dropped frame", func(s VirtioNetStats) bool { return s.RxDropped == 1 })
	h.peerWrite(frame(20, 2)) // 32 bytes: two buffers
	h.waitUsed(netRxQ, 2)
	if h.failed() {
		t.Fatalf("device failed: %v", h.tr.Err())
	}
}

func TestVirtioNetReceiveReadErrors(t *testing.T) {
	h := newNetHarness(t, true, allNetFeatures)
	h.n.Start()
	h.post(2048)
	h.peerWrite(netHdr(0, 0, 0)) // a header and no frame: dropped
	h.waitStats("a dropped header", func(s VirtioNetStats) bool { return s.RxDropped == 1 })
	// The peer goes away: reads return end of file. The goroutine backs
	// off instead of spinning, and still stops.
	h.peer.Close()
	time.Sleep(350 * time.Millisecond)
	if s := h.n.Stats(); s.RxErrors == 0 || s.RxErrors > 5 {
		t.Errorf("after 350 ms of end of file: %d read errors, want 1 to 5 (backing off)", s.RxErrors)
	}
	if h.usedIdx(netRxQ) != 0 || h.failed() {
		t.Error("read errors reached the guest")
	}
	h.n.Stop()
	if rxGoroutines() != 0 {
		t.Error("receive goroutine survived Stop")
	}
}

func TestVirtioNetReceiveBadChain(t *testing.T) {
	h := newNetHarness(t, false, allNetFeatures)
	h.n.Start()
	h.locked(func() {
		d := h.q[netRxQ]
		d.publish(d.chain(buf{data: []byte{1, 2, 3}}, buf{n: 2048, writable: true}))
	})
	h.peerWrite(frame(60, 1))
	deadline := time.Now().Add(netWaitTime)
	for !h.failed() {
		if time.Now().After(deadline) {
			t.Fatal("device did not fail on a readable receive buffer")
		}
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(h.tr.Err(), ErrVirtqueue) {
		t.Errorf("err %v", h.tr.Err())
	}
	// The receive goroutine ended by itself; a reset leaves no goroutine.
	h.m.w32(mmioStatus, 0)
}

// ctrl sends a control request (readable part out, writable ackLen bytes)
// and returns the ack byte and used length.
func (h *netHarness) ctrl(out []byte, ackLen uint32) (byte, int) {
	h.t.Helper()
	before := h.usedIdx(netCtrlQ)
	h.locked(func() {
		d := h.q[netCtrlQ]
		var bufs []buf
		if len(out) > 0 {
			bufs = append(bufs, buf{data: out})
		}
		if ackLen > 0 {
			bufs = append(bufs, buf{n: ackLen, writable: true})
		}
		d.publish(d.chain(bufs...))
	})
	h.notify(netCtrlQ)
	h.waitUsed(netCtrlQ, before+1)
	var ack byte
	var n uint32
	h.locked(func() {
		d := h.q[netCtrlQ]
		var id uint32
		id, n = d.usedElem(before)
		// Follow the chain to its last buffer, where the ack is.
		i := uint16(id)
		for {
			b := d.mem.b[d.desc+16*uint64(i):]
			addr, l := binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint32(b[8:])
			flags, next := binary.LittleEndian.Uint16(b[12:]), binary.LittleEndian.Uint16(b[14:])
			if flags&descFNext == 0 {
				ack = d.mem.b[addr+uint64(l)-1]
				break
			}
			i = next
		}
	})
	return ack, int(n)
}

func TestVirtioNetControl(t *testing.T) {
	h := newNetHarness(t, false, allNetFeatures)
	h.n.Start()
	if ok, err := h.n.Announce(); !ok || err != nil {
		t.Fatalf("Announce = %v, %v", ok, err)
	}
	var st [2]byte
	h.tr.ReadMMIO(testBase+VirtioMMIOConfig+6, st[:])
	if st != [2]byte{3, 0} {
		t.Errorf("status after announce % x, want LINK_UP|ANNOUNCE", st)
	}
	cases := []struct {
		name    string
		out     []byte
		ackLen  uint32
		ack     byte
		usedLen int
	}{
		{"unknown class", []byte{0, 0, 1}, 1, netCtrlErr, 1},
		{"announce with data", []byte{netCtrlAnnounce, netCtrlAnnounceAck, 0}, 1, netCtrlErr, 1},
		{"unknown announce cmd", []byte{netCtrlAnnounce, 1}, 1, netCtrlErr, 1},
		{"short header", []byte{netCtrlAnnounce}, 1, netCtrlErr, 1},
		{"no readable part", nil, 1, netCtrlErr, 1},
		{"ack after writable data", []byte{5, 0}, 8, netCtrlErr, 0},
	}
	for _, c := range cases {
		if ack, n := h.ctrl(c.out, c.ackLen); ack != c.ack || n != c.usedLen {
			t.Errorf("%s: ack %d len %d, want %d len %d", c.name, ack, n, c.ack, c.usedLen)
		}
	}
	if h.n.State().Status != 3 {
		t.Errorf("ANNOUNCE cleared by a wrong command")
	}
	if ack, n := h.ctrl([]byte{netCtrlAnnounce, netCtrlAnnounceAck}, 1); ack != netCtrlOK || n != 1 {
		t.Errorf("ANNOUNCE_ACK: ack %d len %d", ack, n)
	}
	if s := h.n.State().Status; s != VirtioNetStatusLinkUp {
		t.Errorf("status after ack %#x", s)
	}
	if h.failed() {
		t.Fatalf("failed: %v", h.tr.Err())
	}
	// No writable byte for the ack: the device fails.
	h.locked(func() {
		d := h.q[netCtrlQ]
		d.publish(d.chain(buf{data: []byte{netCtrlAnnounce, netCtrlAnnounceAck}}))
	})
	h.notify(netCtrlQ)
	if !h.failed() {
		t.Error("control chain without ack byte did not fail the device")
	}
}

func TestVirtioNetAnnounce(t *testing.T) {
	// Not negotiated: nothing.
	h := newNetHarness(t, false, allNetFeatures&^netFGuestAnnounce)
	h.n.Start()
	if ok, err := h.n.Announce(); ok || err != nil {
		t.Errorf("Announce without GUEST_ANNOUNCE = %v, %v", ok, err)
	}
	if h.n.State().Status != VirtioNetStatusLinkUp {
		t.Error("status changed")
	}
	// Inactive device: nothing.
	deps, _, _ := netDeps(t, false)
	n, _ := NewVirtioNet(deps, net.HardwareAddr{2, 0, 0, 0, 0, 1})
	if ok, _ := n.Announce(); ok {
		t.Error("Announce on an inactive device")
	}
	// Negotiated, device stopped: the status is set at once, the config
	// interrupt waits for Start.
	h = newNetHarness(t, false, allNetFeatures)
	gen := h.m.r32(mmioConfigGeneration)
	h.irq.seq()
	if ok, err := h.n.Announce(); !ok || err != nil {
		t.Fatalf("Announce = %v, %v", ok, err)
	}
	if h.m.r32(mmioConfigGeneration) != gen || len(h.irq.seq()) != 0 {
		t.Error("config interrupt while stopped")
	}
	h.n.Start()
	if h.m.r32(mmioConfigGeneration) != gen+1 || h.m.r32(mmioInterruptStatus)&InterruptConfigChange == 0 || !h.irq.level() {
		t.Error("no config interrupt at Start")
	}
	// Started: at once.
	if ok, _ := h.n.Announce(); !ok || h.m.r32(mmioConfigGeneration) != gen+2 {
		t.Error("no config change for a running device")
	}
	// Reset clears it.
	h.m.w32(mmioStatus, 0)
	if s := h.n.State().Status; s != VirtioNetStatusLinkUp {
		t.Errorf("status after reset %#x", s)
	}
}

func TestVirtioNetStopStopsGuestWrites(t *testing.T) {
	h := newNetHarness(t, false, allNetFeatures&^netFMrgRxbuf)
	// Never started: frames, buffers and notifications change nothing.
	h.post(2048, 2048, 2048)
	h.peerWrite(frame(60, 1))
	h.notify(netRxQ)
	h.send(buf{data: netHdr(0, 0, 0)}, buf{data: frame(60, 2)})
	time.Sleep(30 * time.Millisecond)
	if h.usedIdx(netRxQ) != 0 || h.usedIdx(netTxQ) != 0 {
		t.Fatal("used ring moved before Start")
	}
	h.peerEmpty()
	h.n.Start()
	h.waitUsed(netRxQ, 1)
	h.waitUsed(netTxQ, 1) // Start serves the kick it missed
	if got := h.peerRead(); !bytes.Equal(got, frame(60, 2)) {
		t.Errorf("transmitted % x", got)
	}
	// Stop with a frame pending, then more while stopped.
	h.n.Stop()
	h.n.Stop() // idempotent
	var snap []byte
	h.locked(func() { snap = bytes.Clone(h.mem.b) })
	h.irq.seq()
	h.peerWrite(frame(60, 3))
	h.peerWrite(frame(60, 4))
	h.send(buf{data: netHdr(0, 0, 0)}, buf{data: frame(60, 5)})
	h.notify(netRxQ)
	time.Sleep(50 * time.Millisecond)
	var same bool
	h.locked(func() {
		// The driver itself wrote the new tx chain; compare all but the
		// tx queue's descriptor area, avail ring and data.
		cur := h.mem.b
		same = bytes.Equal(cur[:0x5000], snap[:0x5000]) && bytes.Equal(cur[0x8000:0x9000], snap[0x8000:0x9000]) &&
			bytes.Equal(cur[0x9000:0x10000], snap[0x9000:0x10000]) && bytes.Equal(cur[0x1c0000:], snap[0x1c0000:])
	})
	if !same {
		t.Fatal("device wrote guest memory while stopped")
	}
	if len(h.irq.seq()) != 0 {
		t.Fatal("interrupt while stopped")
	}
	h.peerEmpty()
	h.n.Start()
	h.waitUsed(netRxQ, 3)
	h.waitUsed(netTxQ, 2)
	for i, seed := range []byte{3, 4} {
		if _, data := h.used(netRxQ, uint16(i+1)); !bytes.Equal(data[VirtioNetHdrLen:], frame(60, seed)) {
			t.Errorf("frame %d after Start differs", i)
		}
	}
}

func TestVirtioNetStateRestore(t *testing.T) {
	h := newNetHarness(t, true, allNetFeatures)
	h.n.Start()
	if ok, _ := h.n.Announce(); !ok {
		t.Fatal("announce refused")
	}
	h.n.Stop()
	st := h.n.State()
	if st != (VirtioNetState{MAC: netMACText, VnetHdr: true, Status: 3}) {
		t.Fatalf("State = %+v", st)
	}
	mst := h.tr.State()

	// Restore over a new tap into the same guest memory.
	deps, peer, cfg := netDeps(t, true)
	n2, err := RestoreVirtioNet(st, deps)
	if err != nil {
		t.Fatalf("RestoreVirtioNet: %v", err)
	}
	t.Cleanup(n2.Close)
	tr2, err := RestoreVirtioMMIO(mst, VirtioMMIODeps{Base: testBase, Device: n2, Mem: h.mem, IRQ: &fakeIRQ{}})
	if err != nil {
		t.Fatalf("RestoreVirtioMMIO: %v", err)
	}
	if got := n2.State(); got != st {
		t.Errorf("restored State = %+v, want %+v", got, st)
	}
	if calls := cfg.get(); len(calls) != 1 || calls[0] != [2]int{VirtioNetHdrLen, int(TunFCsum | TunFTSO4 | TunFTSO6 | TunFTSOECN)} {
		t.Errorf("configure calls after restore %v", calls)
	}
	// Stopped until Start.
	h.post(2048)
	if _, err := peer.Write(append(netHdr(0, 0, 0), frame(60, 7)...)); err != nil {
		t.Fatal(err)
	}
	tr2.Notify(netRxQ)
	time.Sleep(30 * time.Millisecond)
	if h.usedIdx(netRxQ) != 0 {
		t.Fatal("restored device delivered before Start")
	}
	n2.Start()
	h.waitUsed(netRxQ, 1)
	if _, data := h.used(netRxQ, 0); !bytes.Equal(data[VirtioNetHdrLen:], frame(60, 7)) {
		t.Error("frame after restore differs")
	}
	h.n.Close()

	// Refused states.
	bad := []VirtioNetState{
		{MAC: "nonsense", VnetHdr: true, Status: 1},
		{MAC: "01:00:5e:00:00:01", VnetHdr: true, Status: 1},
		{MAC: "52:54:00:12:34:56:78:9a", VnetHdr: true, Status: 1},
		{MAC: "52-54-00-12-34-56", VnetHdr: true, Status: 1}, // not State's form
		{MAC: "52:54:00:AB:CD:EF", VnetHdr: true, Status: 1},
		{MAC: netMACText, VnetHdr: true, Status: 0},
		{MAC: netMACText, VnetHdr: true, Status: 2},
		{MAC: netMACText, VnetHdr: true, Status: 5},
		{MAC: netMACText, VnetHdr: false, Status: 1}, // tap kind differs
	}
	for _, b := range bad {
		if _, err := RestoreVirtioNet(b, deps); !errors.Is(err, ErrInvalidState) {
			t.Errorf("restore %+v: error %v, want ErrInvalidState", b, err)
		}
	}
}

// rxGoroutines counts the receive goroutines of every VirtioNet alive.
func rxGoroutines() int {
	buf := make([]byte, 1<<20)
	return bytes.Count(buf[:runtime.Stack(buf, true)], []byte("(*VirtioNet).rxLoop("))
}

// waitGoroutines waits until no receive goroutine is left and the total
// count is back to at most want.
func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(netWaitTime)
	for rxGoroutines() != 0 || runtime.NumGoroutine() > want {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines (%d receive), want %d:\n%s", runtime.NumGoroutine(), rxGoroutines(), want, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(time.Millisecond)
	}
}

func TestVirtioNetNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	h := newNetHarness(t, false, allNetFeatures)
	h.n.Start()
	h.post(2048)
	h.peerWrite(frame(60, 1))
	h.waitUsed(netRxQ, 1)
	if rxGoroutines() != 1 {
		t.Fatalf("%d receive goroutines while running, want 1", rxGoroutines())
	}
	// Reset ends it, holding a frame or blocked in a read.
	h.peerWrite(frame(60, 2)) // no buffer: held
	h.waitHeld()
	h.m.w32(mmioStatus, 0)
	waitGoroutines(t, base)
	if h.n.Stats().RxDropped != 1 {
		t.Errorf("frame held at reset not counted dropped: %+v", h.n.Stats())
	}
	// Re-driven: the goroutine comes back; Stop, Start and Close.
	h2 := newNetHarness(t, false, allNetFeatures)
	h2.n.Start()
	for range 3 {
		h2.n.Stop()
		h2.n.Start()
	}
	h2.post(2048)
	h2.peerWrite(frame(60, 3))
	h2.waitUsed(netRxQ, 1)
	if rxGoroutines() != 1 {
		t.Fatalf("%d receive goroutines after Stop/Start cycles, want 1", rxGoroutines())
	}
	h2.n.Close()
	h2.n.Start() // no effect after Close
	h.n.Close()
	waitGoroutines(t, base)
}

// waitHeld waits until the receive goroutine holds a frame it cannot
// deliver.
func (h *netHarness) waitHeld() {
	h.t.Helper()
	deadline := time.Now().Add(netWaitTime)
	for {
		h.n.mu.Lock()
		held := h.n.rxLen != 0
		h.n.mu.Unlock()
		if held {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatal("receive goroutine holds no frame")
		}
		time.Sleep(time.Millisecond)
	}
}
