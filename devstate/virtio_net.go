package devstate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// virtio-net feature bits (virtio 1.2 §5.1.3; Linux
// include/uapi/linux/virtio_net.h).
const (
	netFCsum          uint64 = 1 << 0  // VIRTIO_NET_F_CSUM: the device takes partial checksums
	netFGuestCsum     uint64 = 1 << 1  // VIRTIO_NET_F_GUEST_CSUM: the driver takes partial checksums
	netFMAC           uint64 = 1 << 5  // VIRTIO_NET_F_MAC: mac is valid
	netFGuestTSO4     uint64 = 1 << 7  // VIRTIO_NET_F_GUEST_TSO4
	netFGuestTSO6     uint64 = 1 << 8  // VIRTIO_NET_F_GUEST_TSO6
	netFGuestECN      uint64 = 1 << 9  // VIRTIO_NET_F_GUEST_ECN
	netFHostTSO4      uint64 = 1 << 11 // VIRTIO_NET_F_HOST_TSO4
	netFHostTSO6      uint64 = 1 << 12 // VIRTIO_NET_F_HOST_TSO6
	netFHostECN       uint64 = 1 << 13 // VIRTIO_NET_F_HOST_ECN
	netFMrgRxbuf      uint64 = 1 << 15 // VIRTIO_NET_F_MRG_RXBUF
	netFStatus        uint64 = 1 << 16 // VIRTIO_NET_F_STATUS: status is valid
	netFCtrlVQ        uint64 = 1 << 17 // VIRTIO_NET_F_CTRL_VQ
	netFGuestAnnounce uint64 = 1 << 21 // VIRTIO_NET_F_GUEST_ANNOUNCE
)

// Config-space status bits (§5.1.4).
const (
	// VirtioNetStatusLinkUp is VIRTIO_NET_S_LINK_UP.
	VirtioNetStatusLinkUp uint16 = 1
	// VirtioNetStatusAnnounce is VIRTIO_NET_S_ANNOUNCE: the driver should
	// announce its addresses (gratuitous ARP, unsolicited NA).
	VirtioNetStatusAnnounce uint16 = 2
)

// Header and control queue constants (§5.1.6).
const (
	// VirtioNetHdrLen is the size of struct virtio_net_hdr with VERSION_1
	// (num_buffers included, with or without MRG_RXBUF).
	VirtioNetHdrLen = 12

	netHdrFNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM
	netHdrFDataValid = 2 // VIRTIO_NET_HDR_F_DATA_VALID
	netHdrGSONone    = 0 // VIRTIO_NET_HDR_GSO_NONE
	netHdrGSOTCPv4   = 1 // VIRTIO_NET_HDR_GSO_TCPV4
	netHdrGSOTCPv6   = 4 // VIRTIO_NET_HDR_GSO_TCPV6
	netHdrGSOECN     = 0x80
	netHdrNumBuffers = 10 // offset of num_buffers

	netCtrlAnnounce    = 3 // VIRTIO_NET_CTRL_ANNOUNCE
	netCtrlAnnounceAck = 0 // VIRTIO_NET_CTRL_ANNOUNCE_ACK
	netCtrlOK          = 0 // VIRTIO_NET_OK
	netCtrlErr         = 1 // VIRTIO_NET_ERR
)

// Offload bits for VirtioNetDeps.Configure, the values of linux/if_tun.h
// TUN_F_*.
const (
	// TunFCsum is TUN_F_CSUM: the guest takes partial checksums.
	TunFCsum uint32 = 0x01
	// TunFTSO4 is TUN_F_TSO4.
	TunFTSO4 uint32 = 0x02
	// TunFTSO6 is TUN_F_TSO6.
	TunFTSO6 uint32 = 0x04
	// TunFTSOECN is TUN_F_TSO_ECN.
	TunFTSOECN uint32 = 0x08
)

// Queues and limits.
const (
	// VirtioNetQueueSize is the largest size of each of the three queues.
	VirtioNetQueueSize = 256
	// VirtioNetMaxFrame bounds one frame (without the virtio header) in
	// either direction: a 64 KiB TSO segment with its headers.
	VirtioNetMaxFrame = 65550

	netRxQ   = 0 // receiveq0
	netTxQ   = 1 // transmitq0
	netCtrlQ = 2 // controlq

	netConfigSize  = 10 // mac[6], status u16, max_virtqueue_pairs u16
	netMACExample  = "52:54:00:12:34:56"
	netMinFrame    = 14 // an Ethernet header
	netBufSize     = VirtioNetHdrLen + VirtioNetMaxFrame
	netRxBatch     = 64                     // frames between two SignalUsed at most
	netReadBackoff = 100 * time.Millisecond // after a tap read error
)

// VirtioNetDeps is what a VirtioNet needs from outside.
type VirtioNetDeps struct {
	// Tap is the tap (or macvtap) fd. It is borrowed: the device never
	// closes it. It must be in non-blocking mode (os.NewFile of an
	// O_NONBLOCK fd), so reads go through Go's poller and can be
	// interrupted with a read deadline.
	Tap *os.File
	// VnetHdr says the tap has IFF_VNET_HDR: frames on it carry a
	// virtio_net_hdr, whose size the device sets through Configure.
	VnetHdr bool
	// Configure applies TUNSETVNETHDRSZ(hdrLen) and TUNSETOFFLOAD(offloads,
	// TunF… bits) to the tap. It is called by every Activate (including
	// the one RestoreVirtioMMIO does) when VnetHdr is set, and may be nil
	// otherwise.
	Configure func(hdrLen int, offloads uint32) error
	// ID names the device in errors, e.g. "net0".
	ID string
}

// VirtioNetState is what a VirtioNet keeps beyond its transport. The queues
// and negotiated features are in VirtioMMIOState; frames in flight are not
// saved.
type VirtioNetState struct {
	// MAC is the config-space address, "52:54:00:12:34:56".
	MAC string
	// VnetHdr records whether the tap carried a virtio_net_hdr, which
	// decided the offload features offered. Restore refuses a tap of the
	// other kind.
	VnetHdr bool
	// Status is the config-space status: VirtioNetStatusLinkUp, plus
	// VirtioNetStatusAnnounce while an announcement is pending.
	Status uint16
}

// VirtioNetStats counts what went through the device since it was built.
type VirtioNetStats struct {
	// RxFrames and RxBytes count frames delivered to the guest (bytes
	// without the virtio header).
	RxFrames, RxBytes uint64
	// RxDropped counts frames read from the tap but not delivered: too big
	// for the guest's buffers, malformed, or read after a reset.
	RxDropped uint64
	// RxErrors counts tap read errors other than the interruptions of Stop.
	RxErrors uint64
	// TxFrames and TxBytes count frames written to the tap (bytes without
	// the virtio header).
	TxFrames, TxBytes uint64
	// TxDropped counts transmit chains not written: malformed, too short
	// or too long, or refused by the tap (full, link down).
	TxDropped uint64
}

// ErrVirtioNet is wrapped by NewVirtioNet and RestoreVirtioNet errors about
// the deps or the MAC.
var ErrVirtioNet = errors.New("devstate: virtio-net")

// VirtioNet is a virtio-net device (virtio 1.2 §5.1) on a tap, with one
// queue pair and a control queue. It offers VERSION_1, INDIRECT_DESC,
// EVENT_IDX, MAC, STATUS, CTRL_VQ, GUEST_ANNOUNCE and MRG_RXBUF, and on a
// tap with a vnet header also CSUM, GUEST_CSUM, GUEST_TSO4/6, GUEST_ECN and
// HOST_TSO4/6/ECN. The tap gets TUNSETVNETHDRSZ 12 and the offloads the
// driver accepted, so the kernel hands the guest only what it can take;
// headers then pass between guest and tap as they are, but for num_buffers
// and a check, both ways, that they ask only for negotiated offloads.
// Without a vnet header the device strips the header on transmit and
// prepends a zero one on receive. UFO is not offered (Linux dropped it).
//
// Transmit and control requests are served synchronously in Notify, on the
// vCPU thread. A transmit chain that is not a plain readable buffer of a
// header plus 14 to VirtioNetMaxFrame bytes is returned unsent and counted
// in TxDropped, as is one whose header asks for an offload the driver did
// not negotiate, or a frame the tap refuses (writes never block); only a
// ring the queue itself refuses (ErrVirtqueue) fails the device.
//
// Receive runs on one goroutine per active, started device. It reads a
// frame, then copies it into one chain (or, with MRG_RXBUF, as many chains
// as it needs, num_buffers in the first header). When the ring lacks room
// it holds the frame and waits for a Notify of the receive queue; a frame
// larger than a whole chain (or the whole ring, with MRG_RXBUF) is dropped.
// A chain with readable buffers on the receive queue fails the device.
//
// Start and Stop gate everything that touches guest memory: a new or
// restored device is stopped; while stopped, Notify does nothing, and Start
// serves the transmit and control queues (whatever the driver queued
// meanwhile) and starts the receive goroutine. When Stop returns, nothing
// writes guest memory or raises an interrupt until Start. A frame held at
// Stop is delivered after Start. The owner calls Close when it drops the
// device, so that no receive goroutine outlives it.
//
// Lock order: life, then mu. Methods are safe for concurrent use.
type VirtioNet struct {
	tap       *os.File
	raw       syscall.RawConn
	tapFD     int // the tap's descriptor number, for poll(2); -1 if unknown
	vnetHdr   bool
	configure func(int, uint32) error
	id        string
	mac       [6]byte
	offer     uint64
	wake      chan struct{} // receive queue notified; capacity 1

	// life serialises Start, Stop, Activate, Reset and Close: the calls
	// that start and stop the receive goroutine.
	life sync.Mutex
	rx   *netRxRun // guarded by life; the running receive goroutine

	mu sync.Mutex
	// Every field below is guarded by mu.
	status        uint16
	active        bool
	failed        bool
	running       bool // Start called, Stop not since
	closed        bool
	configPending bool // Announce while stopped: SignalConfig at Start
	ctx           VirtioContext
	txChain       Chain
	ctrlChain     Chain
	rxChains      []Chain
	txBuf         []byte
	rxBuf         []byte // header room, then the frame read from the tap
	rxLen         int    // bytes of rxBuf held for delivery; 0 = none
	ctrlHdr       [2]byte
	ack           [1]byte

	stats struct {
		rxFrames, rxBytes, rxDropped, rxErrors atomic.Uint64
		txFrames, txBytes, txDropped           atomic.Uint64
	}
}

// netRxRun is one receive goroutine: stop asks it to end, done is closed
// when it has.
type netRxRun struct {
	stop chan struct{}
	done chan struct{}
	// kick is an eventfd Stop writes to wake a poll(2) the receive loop
	// is blocked in.
	kick int
}

// NewVirtioNet builds a stopped net device with address mac over deps.Tap.
// mac must be a 6-byte unicast address.
func NewVirtioNet(deps VirtioNetDeps, mac net.HardwareAddr) (*VirtioNet, error) {
	if deps.Tap == nil {
		return nil, fmt.Errorf("%w %s: no tap", ErrVirtioNet, deps.ID)
	}
	if deps.VnetHdr && deps.Configure == nil {
		return nil, fmt.Errorf("%w %s: a tap with a vnet header needs Configure", ErrVirtioNet, deps.ID)
	}
	if len(mac) != 6 || mac[0]&1 != 0 {
		return nil, fmt.Errorf("%w %s: mac %q is not a 6-byte unicast address", ErrVirtioNet, deps.ID, mac)
	}
	raw, err := deps.Tap.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("%w %s: tap: %w", ErrVirtioNet, deps.ID, err)
	}
	// A deadline works only on an fd in Go's poller, i.e. non-blocking.
	if err := deps.Tap.SetReadDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("%w %s: tap is not a non-blocking pollable fd: %w", ErrVirtioNet, deps.ID, err)
	}
	n := &VirtioNet{
		tap:       deps.Tap,
		raw:       raw,
		vnetHdr:   deps.VnetHdr,
		configure: deps.Configure,
		id:        deps.ID,
		offer:     virtioNetOffer(deps.VnetHdr),
		wake:      make(chan struct{}, 1),
		status:    VirtioNetStatusLinkUp,
		rxChains:  make([]Chain, VirtioNetQueueSize),
		txBuf:     make([]byte, netBufSize),
		rxBuf:     make([]byte, netBufSize),
	}
	copy(n.mac[:], mac)
	n.tapFD = -1
	// The number stays valid while the tap is open, which the owner
	// guarantees for the device's life (it closes the tap after Close).
	_ = raw.Control(func(fd uintptr) { n.tapFD = int(fd) })
	return n, nil
}

// virtioNetOffer is the feature offer, a function of the tap kind only.
func virtioNetOffer(vnetHdr bool) uint64 {
	f := FeatureVersion1 | FeatureIndirectDesc | FeatureRingEventIdx |
		netFMAC | netFStatus | netFCtrlVQ | netFGuestAnnounce | netFMrgRxbuf
	if vnetHdr {
		f |= netFCsum | netFGuestCsum | netFGuestTSO4 | netFGuestTSO6 | netFGuestECN |
			netFHostTSO4 | netFHostTSO6 | netFHostECN
	}
	return f
}

// RestoreVirtioNet rebuilds a stopped net device from st over deps.Tap,
// checking st as guest input: a unicast MAC in State's form, a status with LINK_UP and no
// unknown bit, and a tap of the kind (VnetHdr) saved. The device comes back
// inactive; RestoreVirtioMMIO activates it, and it stays stopped until
// Start.
func RestoreVirtioNet(st VirtioNetState, deps VirtioNetDeps) (*VirtioNet, error) {
	mac, err := net.ParseMAC(st.MAC)
	if err != nil || len(mac) != 6 || mac[0]&1 != 0 || mac.String() != st.MAC {
		return nil, fmt.Errorf("restore virtio-net %s: %w: mac %q is not a 6-byte unicast address as State writes it (%s)",
			deps.ID, ErrInvalidState, st.MAC, netMACExample)
	}
	if st.Status&^(VirtioNetStatusLinkUp|VirtioNetStatusAnnounce) != 0 || st.Status&VirtioNetStatusLinkUp == 0 {
		return nil, fmt.Errorf("restore virtio-net %s: %w: status %#x is not LINK_UP with at most ANNOUNCE",
			deps.ID, ErrInvalidState, st.Status)
	}
	if st.VnetHdr != deps.VnetHdr {
		return nil, fmt.Errorf("restore virtio-net %s: %w: saved with vnet header %v, tap has %v",
			deps.ID, ErrInvalidState, st.VnetHdr, deps.VnetHdr)
	}
	n, err := NewVirtioNet(deps, mac)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	n.status = st.Status
	return n, nil
}

// State returns the device's saveable state. Preconditions: Stop was
// called and the vCPUs are paused.
func (n *VirtioNet) State() VirtioNetState {
	n.mu.Lock()
	defer n.mu.Unlock()
	return VirtioNetState{MAC: net.HardwareAddr(n.mac[:]).String(), VnetHdr: n.vnetHdr, Status: n.status}
}

// Stats returns the device's counters.
func (n *VirtioNet) Stats() VirtioNetStats {
	s := &n.stats
	return VirtioNetStats{
		RxFrames: s.rxFrames.Load(), RxBytes: s.rxBytes.Load(), RxDropped: s.rxDropped.Load(), RxErrors: s.rxErrors.Load(),
		TxFrames: s.txFrames.Load(), TxBytes: s.txBytes.Load(), TxDropped: s.txDropped.Load(),
	}
}

// DeviceID implements VirtioDevice.
func (n *VirtioNet) DeviceID() uint32 { return VirtioIDNet }

// Features implements VirtioDevice.
func (n *VirtioNet) Features() uint64 { return n.offer }

// QueueMaxSizes implements VirtioDevice: receiveq0, transmitq0, controlq.
func (n *VirtioNet) QueueMaxSizes() []uint16 {
	return []uint16{VirtioNetQueueSize, VirtioNetQueueSize, VirtioNetQueueSize}
}

// ReadConfig implements VirtioDevice: struct virtio_net_config (§5.1.4) up
// to max_virtqueue_pairs (1).
func (n *VirtioNet) ReadConfig(off uint32, data []byte) {
	var c [netConfigSize]byte
	n.mu.Lock()
	copy(c[:6], n.mac[:])
	binary.LittleEndian.PutUint16(c[6:], n.status)
	n.mu.Unlock()
	binary.LittleEndian.PutUint16(c[8:], 1)
	if off < uint32(len(c)) {
		copy(data, c[off:])
	}
}

// WriteConfig implements VirtioDevice. A virtio 1.x driver writes no field
// of the net config space (the mac is writable only for legacy drivers), so
// every write is ignored.
func (n *VirtioNet) WriteConfig(off uint32, data []byte) {}

// offloads returns the TUN_F_* bits for the features the driver accepted,
// following their dependencies (§5.1.3.1): TSO needs GUEST_CSUM, ECN needs
// a TSO. The kernel refuses TSO_ECN without TSO4 or TSO6.
func offloads(f uint64) uint32 {
	if f&netFGuestCsum == 0 {
		return 0
	}
	o := TunFCsum
	if f&netFGuestTSO4 != 0 {
		o |= TunFTSO4
	}
	if f&netFGuestTSO6 != 0 {
		o |= TunFTSO6
	}
	if f&netFGuestECN != 0 && o&(TunFTSO4|TunFTSO6) != 0 {
		o |= TunFTSOECN
	}
	return o
}

// Activate implements VirtioDevice. With a vnet header it configures the
// tap for the accepted features; the receive goroutine starts if the device
// is started.
func (n *VirtioNet) Activate(ctx VirtioContext) error {
	if len(ctx.Queues) != 3 || ctx.Queues[0] == nil || ctx.Queues[1] == nil || ctx.Queues[2] == nil || ctx.Transport == nil {
		return fmt.Errorf("virtio-net %s: activate with %d queues and transport %v, want 3 queues and a transport",
			n.id, len(ctx.Queues), ctx.Transport != nil)
	}
	n.life.Lock()
	defer n.life.Unlock()
	if n.vnetHdr {
		if err := n.configure(VirtioNetHdrLen, offloads(ctx.Features)); err != nil {
			return fmt.Errorf("virtio-net %s: configure tap (header %d, offloads %#x): %w",
				n.id, VirtioNetHdrLen, offloads(ctx.Features), err)
		}
	}
	n.mu.Lock()
	n.ctx, n.active, n.failed = ctx, true, false
	n.rxLen = 0
	n.mu.Unlock()
	n.startRxLocked()
	return nil
}

// Reset implements VirtioDevice: the receive goroutine ends, a held frame
// is dropped and the status returns to LINK_UP. The MAC stays.
func (n *VirtioNet) Reset() {
	n.life.Lock()
	defer n.life.Unlock()
	n.stopRxLocked()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.rxLen != 0 {
		n.stats.rxDropped.Add(1)
	}
	n.ctx, n.active, n.failed, n.rxLen = VirtioContext{}, false, false, 0
	n.status = VirtioNetStatusLinkUp
	n.configPending = false
	n.txChain = Chain{Buffers: n.txChain.Buffers[:0]}
	n.ctrlChain = Chain{Buffers: n.ctrlChain.Buffers[:0]}
}

// Start lets the device run: it serves what the driver queued while it was
// stopped, raises a config interrupt left pending by Announce, and starts
// the receive goroutine. It does nothing after Close.
func (n *VirtioNet) Start() {
	n.life.Lock()
	defer n.life.Unlock()
	n.mu.Lock()
	if n.closed || n.running {
		n.mu.Unlock()
		return
	}
	n.running = true
	if n.active && !n.failed {
		for _, q := range []int{netTxQ, netCtrlQ} {
			if n.ctx.Queues[q].Ready() {
				n.notifyLocked(q)
			}
		}
		if n.configPending {
			n.configPending = false
			if err := n.ctx.Transport.SignalConfig(); err != nil {
				n.failLocked(fmt.Errorf("signal config: %w", err))
			}
		}
	}
	n.mu.Unlock()
	n.startRxLocked()
}

// Stop stops the device: when it returns, the receive goroutine has ended
// and Notify only records, so nothing writes guest memory or raises an
// interrupt until Start. Idempotent.
func (n *VirtioNet) Stop() {
	n.life.Lock()
	defer n.life.Unlock()
	n.mu.Lock()
	n.running = false // a Notify in progress finishes before this
	n.mu.Unlock()
	n.stopRxLocked()
}

// Close stops the device for good; Start does nothing after it. The tap
// stays open: it belongs to the caller.
func (n *VirtioNet) Close() {
	n.life.Lock()
	defer n.life.Unlock()
	n.mu.Lock()
	n.closed, n.running = true, false
	n.mu.Unlock()
	n.stopRxLocked()
}

// Announce asks the driver to announce itself after a restore: if it
// negotiated GUEST_ANNOUNCE (with CTRL_VQ), it sets VIRTIO_NET_S_ANNOUNCE
// and raises a config change interrupt (at Start, if the device is
// stopped), and returns true. The driver clears the bit with
// VIRTIO_NET_CTRL_ANNOUNCE_ACK.
func (n *VirtioNet) Announce() (bool, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	want := netFGuestAnnounce | netFCtrlVQ
	if !n.active || n.failed || n.ctx.Features&want != want {
		return false, nil
	}
	n.status |= VirtioNetStatusAnnounce
	if !n.running {
		n.configPending = true
		return true, nil
	}
	if err := n.ctx.Transport.SignalConfig(); err != nil {
		return true, fmt.Errorf("virtio-net %s: announce: %w", n.id, err)
	}
	return true, nil
}

// Notify implements VirtioDevice. Transmit and control requests are served
// here; a receive notification wakes the receive goroutine. While the
// device is stopped nothing is done: Start serves the queues.
func (n *VirtioNet) Notify(queue int) {
	if queue == netRxQ {
		select {
		case n.wake <- struct{}{}:
		default:
		}
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.notifyLocked(queue)
}

func (n *VirtioNet) notifyLocked(queue int) {
	if !n.active || n.failed || !n.running || (queue != netTxQ && queue != netCtrlQ) || !n.ctx.Queues[queue].Ready() {
		return
	}
	q := n.ctx.Queues[queue]
	c := &n.txChain
	if queue == netCtrlQ {
		c = &n.ctrlChain
	}
	for {
		ok, err := q.PopInto(c)
		if err != nil {
			if ok {
				_ = q.Push(c.Head, 0)
			}
			n.failLocked(err)
			return
		}
		if !ok {
			break
		}
		written := uint32(0)
		if queue == netTxQ {
			n.transmitLocked(c)
		} else if written, err = n.controlLocked(c); err != nil {
			_ = q.Push(c.Head, 0)
			n.failLocked(err)
			return
		}
		if err := q.Push(c.Head, written); err != nil {
			n.failLocked(err)
			return
		}
	}
	if err := n.ctx.Transport.SignalUsed(queue); err != nil {
		n.failLocked(err)
	}
}

func (n *VirtioNet) failLocked(err error) {
	if n.failed {
		return
	}
	n.failed = true
	n.ctx.Transport.Fail(fmt.Errorf("virtio-net %s: %w", n.id, err))
}

// transmitLocked sends one transmit chain to the tap, or counts it dropped.
func (n *VirtioNet) transmitLocked(c *Chain) {
	if c.Readable != len(c.Buffers) || c.ReadableLen < VirtioNetHdrLen+netMinFrame || c.ReadableLen > netBufSize {
		n.stats.txDropped.Add(1)
		return
	}
	p := n.txBuf[:c.ReadableLen]
	if _, err := c.ReadAt(p, 0); err != nil || !n.txHeaderOK(p) {
		n.stats.txDropped.Add(1)
		return
	}
	// num_buffers means nothing on transmit (§5.1.6.2).
	binary.LittleEndian.PutUint16(p[netHdrNumBuffers:], 0)
	if !n.vnetHdr {
		p = p[VirtioNetHdrLen:]
	}
	if err := n.writeTap(p); err != nil {
		n.stats.txDropped.Add(1)
		return
	}
	n.stats.txFrames.Add(1)
	n.stats.txBytes.Add(c.ReadableLen - VirtioNetHdrLen)
}

// txHeaderOK reports whether a transmit header asks only for offloads the
// driver negotiated (§5.1.6.2.1): NEEDS_CSUM needs CSUM, a TCP segmentation
// type needs HOST_TSO4 or HOST_TSO6, the ECN bit HOST_ECN; any other GSO
// type (UDP) was never offered. Without a vnet header none was offered, so
// only a plain header passes: a partial checksum would leave the tap wrong.
func (n *VirtioNet) txHeaderOK(hdr []byte) bool {
	f := n.ctx.Features
	if hdr[0]&netHdrFNeedsCsum != 0 && f&netFCsum == 0 {
		return false
	}
	gso := hdr[1]
	if gso&netHdrGSOECN != 0 && f&netFHostECN == 0 {
		return false
	}
	switch gso &^ netHdrGSOECN {
	case netHdrGSONone:
		return gso == netHdrGSONone
	case netHdrGSOTCPv4:
		return f&netFHostTSO4 != 0
	case netHdrGSOTCPv6:
		return f&netFHostTSO6 != 0
	}
	return false
}

// writeTap writes one frame without waiting: a full tap drops it.
func (n *VirtioNet) writeTap(p []byte) error {
	var werr error
	var wn int
	err := n.raw.Write(func(fd uintptr) bool {
		for {
			wn, werr = syscall.Write(int(fd), p)
			if werr != syscall.EINTR {
				return true
			}
		}
	})
	if err != nil {
		return err
	}
	if werr != nil {
		return werr
	}
	if wn != len(p) {
		return fmt.Errorf("short write to tap: %d of %d bytes", wn, len(p))
	}
	return nil
}

// controlLocked answers one control request (§5.1.6.5): struct
// virtio_net_ctrl { u8 class; u8 command; data; u8 ack } with the ack the
// last writable byte. Only ANNOUNCE_ACK is known; everything else gets
// VIRTIO_NET_ERR. A chain with no writable byte cannot be answered: that
// is an error, and the device fails.
func (n *VirtioNet) controlLocked(c *Chain) (uint32, error) {
	if c.WritableLen == 0 {
		return 0, fmt.Errorf("control request %d: %w: no writable ack byte", c.Head, ErrVirtqueue)
	}
	ack := byte(netCtrlErr)
	if c.ReadableLen >= 2 {
		if _, err := c.ReadAt(n.ctrlHdr[:], 0); err == nil {
			class, cmd := n.ctrlHdr[0], n.ctrlHdr[1]
			if class == netCtrlAnnounce && cmd == netCtrlAnnounceAck &&
				c.ReadableLen == 2 && n.ctx.Features&netFGuestAnnounce != 0 {
				n.status &^= VirtioNetStatusAnnounce
				ack = netCtrlOK
			}
		}
	}
	n.ack[0] = ack
	if _, err := c.WriteAt(n.ack[:], int64(c.WritableLen-1)); err != nil {
		return 0, fmt.Errorf("control request %d: write ack: %w", c.Head, err)
	}
	// The used length is the prefix written: the ack alone only when it is
	// the whole writable part.
	if c.WritableLen == 1 {
		return 1, nil
	}
	return 0, nil
}

// startRxLocked starts the receive goroutine if the device is active,
// started, not failed and has a ready receive queue. life is held.
func (n *VirtioNet) startRxLocked() {
	n.mu.Lock()
	ok := n.active && n.running && !n.closed && !n.failed && n.ctx.Queues[netRxQ].Ready()
	n.mu.Unlock()
	if !ok || n.rx != nil {
		return
	}
	// Stop left a deadline in the past; clear it. New checked that the
	// tap takes deadlines.
	_ = n.tap.SetReadDeadline(time.Time{})
	r := &netRxRun{stop: make(chan struct{}), done: make(chan struct{}), kick: -1}
	if efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err == nil {
		r.kick = efd
	}
	n.rx = r
	go n.rxLoop(r)
}

// stopRxLocked ends the receive goroutine and waits for it. life is held,
// mu is not.
func (n *VirtioNet) stopRxLocked() {
	r := n.rx
	if r == nil {
		return
	}
	close(r.stop)
	// Interrupt a wait blocked in poll(2) or in the poller; the loop then
	// sees stop.
	if r.kick >= 0 {
		_, _ = unix.Write(r.kick, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	}
	_ = n.tap.SetReadDeadline(time.Unix(1, 0))
	<-r.done
	if r.kick >= 0 {
		unix.Close(r.kick)
	}
	n.rx = nil
}

// rxResult is what one delivery attempt did with the held frame.
type rxResult int

const (
	rxDelivered rxResult = iota // in the guest
	rxDropped                   // gone, counted
	rxNoRoom                    // still held: wait for buffers
	rxFailed                    // the device failed or is inactive: stop
)

// rxLoop is the receive goroutine: read a frame, deliver it, signal the
// guest after each batch, wait for buffers when the ring is full.
func (n *VirtioNet) rxLoop(r *netRxRun) {
	defer close(r.done)
	unsignalled := 0
	signal := func() bool {
		if unsignalled == 0 {
			return true
		}
		unsignalled = 0
		n.mu.Lock()
		defer n.mu.Unlock()
		if !n.active || n.failed {
			return false
		}
		if err := n.ctx.Transport.SignalUsed(netRxQ); err != nil {
			n.failLocked(err)
			return false
		}
		return true
	}
	defer signal()
	for {
		select {
		case <-r.stop:
			return
		default:
		}
		n.mu.Lock()
		held := n.rxLen != 0
		n.mu.Unlock()
		if !held {
			// Read without waiting while a batch is open, so the
			// guest is signalled as soon as the tap runs dry. The
			// wait itself is a poll(2) on this goroutine's thread:
			// a frame then wakes the thread that delivers it, with
			// no hand-off through Go's poller and scheduler.
			wait := unsignalled == 0
			if wait && r.kick >= 0 {
				if !n.pollTap(r) {
					return
				}
				wait = false
			}
			got, err := n.readTap(wait)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					continue // Stop's interruption, or a stale deadline
				}
				n.stats.rxErrors.Add(1)
				if !signal() {
					return
				}
				select {
				case <-r.stop:
					return
				case <-time.After(netReadBackoff):
				}
				continue
			}
			if !got {
				if !signal() {
					return
				}
				continue
			}
		}
		n.mu.Lock()
		res := n.deliverLocked()
		n.mu.Unlock()
		switch res {
		case rxDelivered:
			unsignalled++
			if unsignalled >= netRxBatch && !signal() {
				return
			}
		case rxDropped:
		case rxFailed:
			return
		case rxNoRoom:
			if !signal() {
				return
			}
			select {
			case <-r.stop:
				return
			case <-n.wake:
			}
		}
	}
}

// readTap reads one frame into rxBuf (after the header room when the tap
// has no vnet header) and holds it. With wait false it does not block: got
// is false when the tap has no frame. A frame no longer than a header is
// dropped; a zero-length read is an error.
func (n *VirtioNet) readTap(wait bool) (got bool, err error) {
	// rxBuf is written only here, by the one receive goroutine, while no
	// frame is held; deliverLocked reads it under mu after rxLen is set.
	p := n.rxBuf
	if !n.vnetHdr {
		p = p[VirtioNetHdrLen:]
	}
	var rn int
	var rerr error
	err = n.raw.Read(func(fd uintptr) bool {
		for {
			rn, rerr = syscall.Read(int(fd), p)
			if rerr != syscall.EINTR {
				break
			}
		}
		return !(wait && rerr == syscall.EAGAIN)
	})
	if err != nil {
		return false, err
	}
	if rerr == syscall.EAGAIN {
		return false, nil
	}
	if rerr != nil {
		return false, fmt.Errorf("read tap: %w", rerr)
	}
	if rn == 0 {
		// No tap frame is empty: this is end of file (a socket whose
		// peer closed), and reading again would spin.
		return false, errors.New("read tap: end of file")
	}
	if !n.vnetHdr {
		clear(n.rxBuf[:VirtioNetHdrLen])
		rn += VirtioNetHdrLen
	}
	if rn <= VirtioNetHdrLen {
		n.stats.rxDropped.Add(1) // a header without a frame
		return false, nil
	}
	n.mu.Lock()
	n.rxLen = rn
	n.mu.Unlock()
	return true, nil
}

// rxHeaderOK reports whether the tap's header asks only for what the
// driver accepted (the tap was configured so; this guards against a tap
// configured otherwise by someone else), and clears the flags the driver
// may not see: all of them without GUEST_CSUM (§5.1.6.4.1), else all but
// NEEDS_CSUM and DATA_VALID.
func (n *VirtioNet) rxHeaderOK(hdr []byte) bool {
	f := n.ctx.Features
	if f&netFGuestCsum == 0 {
		if hdr[0]&netHdrFNeedsCsum != 0 {
			return false // a partial checksum the driver cannot finish
		}
		hdr[0] = 0
	}
	hdr[0] &= netHdrFNeedsCsum | netHdrFDataValid
	gso := hdr[1]
	switch gso &^ netHdrGSOECN {
	case netHdrGSONone:
		return gso == netHdrGSONone
	case netHdrGSOTCPv4:
		if f&netFGuestTSO4 == 0 {
			return false
		}
	case netHdrGSOTCPv6:
		if f&netFGuestTSO6 == 0 {
			return false
		}
	default:
		return false
	}
	return gso&netHdrGSOECN == 0 || f&netFGuestECN != 0
}

// deliverLocked copies the held frame into the receive queue.
func (n *VirtioNet) deliverLocked() rxResult {
	if !n.active || n.failed || n.rxLen == 0 {
		return rxFailed
	}
	q := n.ctx.Queues[netRxQ]
	frame := n.rxBuf[:n.rxLen]
	if n.vnetHdr && !n.rxHeaderOK(frame) {
		n.rxLen = 0
		n.stats.rxDropped.Add(1)
		return rxDropped
	}
	if n.ctx.Features&netFMrgRxbuf == 0 {
		return n.deliverOneLocked(q, frame)
	}
	return n.deliverMergedLocked(q, frame)
}

// popRxLocked pops one receive chain into c. ok false with rxNoRoom means
// the ring is empty; an error result means the device failed.
func (n *VirtioNet) popRxLocked(q *Queue, c *Chain) (bool, rxResult) {
	ok, err := q.PopInto(c)
	if err != nil {
		if ok {
			_ = q.Push(c.Head, 0)
		}
		n.failLocked(err)
		return false, rxFailed
	}
	if !ok {
		return false, rxNoRoom
	}
	if c.Readable != 0 {
		_ = q.Push(c.Head, 0)
		n.failLocked(fmt.Errorf("receive chain %d: %w: %d device-readable buffers", c.Head, ErrVirtqueue, c.Readable))
		return false, rxFailed
	}
	return true, rxDelivered
}

func (n *VirtioNet) deliverOneLocked(q *Queue, frame []byte) rxResult {
	binary.LittleEndian.PutUint16(frame[netHdrNumBuffers:], 1)
	c := &n.rxChains[0]
	if ok, res := n.popRxLocked(q, c); !ok {
		return res
	}
	if c.WritableLen < uint64(len(frame)) {
		// Keep the buffer for a frame that fits.
		q.UndoPop()
		n.rxLen = 0
		n.stats.rxDropped.Add(1)
		return rxDropped
	}
	if _, err := c.WriteAt(frame, 0); err != nil {
		_ = q.Push(c.Head, 0)
		n.failLocked(err)
		return rxFailed
	}
	if err := q.Push(c.Head, uint32(len(frame))); err != nil {
		n.failLocked(err)
		return rxFailed
	}
	n.deliveredLocked(len(frame))
	return rxDelivered
}

func (n *VirtioNet) deliveredLocked(total int) {
	n.rxLen = 0
	n.stats.rxFrames.Add(1)
	n.stats.rxBytes.Add(uint64(total - VirtioNetHdrLen))
}

// deliverMergedLocked spreads the frame over as many chains as it needs
// (§5.1.6.4.2). When the ring runs out first, every chain popped is given
// back (UndoPop, newest first) and the frame waits, unless the ring was
// full: then it can never fit and is dropped.
func (n *VirtioNet) deliverMergedLocked(q *Queue, frame []byte) rxResult {
	size := int(q.Size())
	var room uint64
	k := 0
	for room < uint64(len(frame)) {
		if k == size || k == len(n.rxChains) {
			n.undoLocked(q, k)
			n.rxLen = 0
			n.stats.rxDropped.Add(1)
			return rxDropped
		}
		ok, res := n.popRxLocked(q, &n.rxChains[k])
		if !ok {
			if res == rxNoRoom {
				n.undoLocked(q, k)
			}
			return res
		}
		room += n.rxChains[k].WritableLen
		k++
	}
	binary.LittleEndian.PutUint16(frame[netHdrNumBuffers:], uint16(k))
	off := 0
	for i := range k {
		c := &n.rxChains[i]
		m := int(min(c.WritableLen, uint64(len(frame)-off)))
		if _, err := c.WriteAt(frame[off:off+m], 0); err != nil {
			_ = q.Push(c.Head, 0)
			n.failLocked(err)
			return rxFailed
		}
		if err := q.Push(c.Head, uint32(m)); err != nil {
			n.failLocked(err)
			return rxFailed
		}
		off += m
	}
	n.deliveredLocked(len(frame))
	return rxDelivered
}

// undoLocked gives back the last k popped receive chains. No chain was
// pushed since they were popped, so each UndoPop returns the newest.
func (n *VirtioNet) undoLocked(q *Queue, k int) {
	for range k {
		q.UndoPop()
	}
}

// pollTap blocks in poll(2) until the tap is readable (true) or Stop kicks
// (false). Errors other than EINTR fall back to a poller read (true).
func (n *VirtioNet) pollTap(r *netRxRun) bool {
	if n.tapFD < 0 {
		return true
	}
	fds := []unix.PollFd{{Fd: int32(n.tapFD), Events: unix.POLLIN}, {Fd: int32(r.kick), Events: unix.POLLIN}}
	for {
		select {
		case <-r.stop:
			return false
		default:
		}
		_, err := unix.Poll(fds, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil || fds[0].Revents != 0 {
			return true
		}
		if fds[1].Revents != 0 {
			return false
		}
	}
}
