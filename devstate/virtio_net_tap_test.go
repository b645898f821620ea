package devstate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// tapNetns is an OS thread in a private network namespace: the tap made
// through it lives there and never in the host's namespace. The namespace
// goes away when the thread has exited and the tap fd is closed.
type tapNetns struct{ do chan func() }

// newTapNetns starts the thread, or skips the test when this machine cannot
// make network namespaces or taps (not root).
func newTapNetns(t *testing.T) *tapNetns {
	t.Helper()
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("SKIP (real tap test not run): /dev/net/tun is missing: %v", err)
	}
	n := &tapNetns{do: make(chan func())}
	errc := make(chan error)
	go func() {
		// Never unlocked: when the goroutine returns, Go ends the thread,
		// so nothing else ever runs in this namespace.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- nil
		for f := range n.do {
			f()
		}
	}()
	if err := <-errc; err != nil {
		t.Skipf("SKIP (real tap test not run): cannot create a network namespace (needs CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() { close(n.do) })
	return n
}

func (n *tapNetns) run(f func() error) error {
	errc := make(chan error)
	n.do <- func() { errc <- f() }
	return <-errc
}

// tap creates tap name (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR) in the namespace,
// gives it addr and brings it up. It returns the non-blocking tap file.
func (n *tapNetns) tap(t *testing.T, name, addr string) *os.File {
	t.Helper()
	var fd int
	err := n.run(func() error {
		var err error
		if fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0); err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			unix.Close(fd)
			return err
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("TUNSETIFF %s: %w", name, err)
		}
		h, err := netlink.NewHandle()
		if err != nil {
			return err
		}
		defer h.Delete()
		link, err := h.LinkByName(name)
		if err != nil {
			return err
		}
		a, err := netlink.ParseAddr(addr)
		if err != nil {
			return err
		}
		if err := h.AddrAdd(link, a); err != nil {
			return fmt.Errorf("add %s to %s: %w", addr, name, err)
		}
		// No IPv6 chatter (router solicitations, MLD) on the tap.
		_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6", []byte("1"), 0)
		return h.LinkSetUp(link)
	})
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		t.Skipf("SKIP (real tap test not run): %v", err)
	}
	if err != nil {
		t.Fatalf("make tap: %v", err)
	}
	f := os.NewFile(uintptr(fd), name)
	t.Cleanup(func() { f.Close() })
	return f
}

// tapConfigure is the real VirtioNetDeps.Configure: TUNSETVNETHDRSZ and
// TUNSETOFFLOAD on the tap, recording the calls in rec.
func tapConfigure(f *os.File, rec *fakeConfigure) func(int, uint32) error {
	return func(hdrLen int, offloads uint32) error {
		rc, err := f.SyscallConn()
		if err != nil {
			return err
		}
		var ierr error
		if err := rc.Control(func(fd uintptr) {
			if ierr = unix.IoctlSetPointerInt(int(fd), unix.TUNSETVNETHDRSZ, hdrLen); ierr != nil {
				ierr = fmt.Errorf("TUNSETVNETHDRSZ %d: %w", hdrLen, ierr)
				return
			}
			if ierr = unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD, int(offloads)); ierr != nil {
				ierr = fmt.Errorf("TUNSETOFFLOAD %#x: %w", offloads, ierr)
			}
		}); err != nil {
			return err
		}
		if ierr != nil {
			return ierr
		}
		return rec.configure(hdrLen, offloads)
	}
}

var (
	guestIP = net.IPv4(10, 77, 0, 2).To4()
	hostIP  = net.IPv4(10, 77, 0, 1).To4()
)

// arpFrame builds an ARP packet (op 1 request, 2 reply) from the guest.
func arpFrame(op uint16, dstMAC, srcMAC net.HardwareAddr, tha net.HardwareAddr, spa, tpa net.IP) []byte {
	f := make([]byte, 42)
	copy(f[0:], dstMAC)
	copy(f[6:], srcMAC)
	binary.BigEndian.PutUint16(f[12:], 0x0806)
	binary.BigEndian.PutUint16(f[14:], 1)      // htype Ethernet
	binary.BigEndian.PutUint16(f[16:], 0x0800) // ptype IPv4
	f[18], f[19] = 6, 4
	binary.BigEndian.PutUint16(f[20:], op)
	copy(f[22:], srcMAC)
	copy(f[28:], spa)
	copy(f[32:], tha)
	copy(f[38:], tpa)
	return f
}

// inetChecksum is the Internet checksum (RFC 1071) of b.
func inetChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// icmpEcho builds an ICMP echo request from the guest to the host, with its
// ICMP checksum left 0 (for the device's partial-checksum offload) or
// computed.
func icmpEcho(dstMAC, srcMAC net.HardwareAddr, id, seq uint16, payload []byte, csum bool) []byte {
	f := make([]byte, 14+20+8+len(payload))
	copy(f[0:], dstMAC)
	copy(f[6:], srcMAC)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	ip[8], ip[9] = 64, 1 // TTL, ICMP
	copy(ip[12:], guestIP)
	copy(ip[16:], hostIP)
	binary.BigEndian.PutUint16(ip[10:], inetChecksum(ip))
	icmp := f[34:]
	icmp[0] = 8
	binary.BigEndian.PutUint16(icmp[4:], id)
	binary.BigEndian.PutUint16(icmp[6:], seq)
	copy(icmp[8:], payload)
	if csum {
		binary.BigEndian.PutUint16(icmp[2:], inetChecksum(icmp))
	}
	return f
}

// rxFrames returns the frames delivered to the guest since used index
// *next (reassembling merged buffers by num_buffers), header included.
func (h *netHarness) rxFrames(next *uint16) [][]byte {
	var out [][]byte
	for *next != h.usedIdx(netRxQ) {
		_, first := h.used(netRxQ, *next)
		*next++
		nb := binary.LittleEndian.Uint16(first[netHdrNumBuffers:])
		for i := uint16(1); i < nb; i++ {
			for *next == h.usedIdx(netRxQ) {
				time.Sleep(time.Millisecond)
			}
			_, more := h.used(netRxQ, *next)
			*next++
			first = append(first, more...)
		}
		out = append(out, first)
	}
	return out
}

// TestVirtioNetRealTap runs the device on a real tap with IFF_VNET_HDR in a
// private network namespace: the guest's ARP request is answered by the
// kernel, and an ICMP echo whose checksum is left to the offload
// (NEEDS_CSUM in the header) is answered too, while the same echo without
// the flag is not. That shows the header size and the offloads reach the
// kernel as the guest negotiated them.
func TestVirtioNetRealTap(t *testing.T) {
	ns := newTapNetns(t)
	tap := ns.tap(t, "vnet0", "10.77.0.1/24")
	cfg := &fakeConfigure{}
	deps := VirtioNetDeps{Tap: tap, VnetHdr: true, Configure: tapConfigure(tap, cfg), ID: "net0"}
	h := newNetHarnessDeps(t, deps, nil, cfg, allNetFeatures)
	if calls := cfg.get(); len(calls) != 1 || calls[0] != [2]int{VirtioNetHdrLen, int(TunFCsum | TunFTSO4 | TunFTSO6 | TunFTSOECN)} {
		t.Fatalf("tap configured with %v", calls)
	}
	sizes := make([]uint32, 128)
	for i := range sizes {
		sizes[i] = 2048
	}
	h.post(sizes...)
	h.n.Start()
	guestMAC, _ := net.ParseMAC(netMACText)
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	var next uint16
	// wait reads frames from the guest's rx queue until match accepts
	// one, answering the kernel's ARP requests for the guest meanwhile.
	wait := func(what string, d time.Duration, match func(f []byte) bool) []byte {
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) {
			for _, f := range h.rxFrames(&next) {
				eth := f[VirtioNetHdrLen:]
				if len(eth) >= 42 && binary.BigEndian.Uint16(eth[12:]) == 0x0806 &&
					binary.BigEndian.Uint16(eth[20:]) == 1 && bytes.Equal(eth[38:42], guestIP) {
					h.send(buf{data: netHdr(0, 0, 0)}, buf{data: arpFrame(2, eth[6:12], guestMAC, eth[6:12], guestIP, hostIP)})
					continue
				}
				if match(f) {
					return f
				}
			}
			time.Sleep(time.Millisecond)
		}
		return nil
	}

	h.send(buf{data: netHdr(0, 0, 0)}, buf{data: arpFrame(1, bcast, guestMAC, make([]byte, 6), guestIP, hostIP)})
	reply := wait("ARP reply", netWaitTime, func(f []byte) bool {
		eth := f[VirtioNetHdrLen:]
		return len(eth) >= 42 && binary.BigEndian.Uint16(eth[12:]) == 0x0806 &&
			binary.BigEndian.Uint16(eth[20:]) == 2 && bytes.Equal(eth[28:32], hostIP) && bytes.Equal(eth[0:6], guestMAC)
	})
	if reply == nil {
		t.Fatalf("no ARP reply from the kernel (stats %+v, err %v)", h.n.Stats(), h.tr.Err())
	}
	if nb := binary.LittleEndian.Uint16(reply[netHdrNumBuffers:]); nb != 1 {
		t.Errorf("ARP reply num_buffers %d, want 1", nb)
	}
	hostMAC := net.HardwareAddr(bytes.Clone(reply[VirtioNetHdrLen+6 : VirtioNetHdrLen+12]))

	isEchoReply := func(seq uint16) func(f []byte) bool {
		return func(f []byte) bool {
			eth := f[VirtioNetHdrLen:]
			return len(eth) >= 42 && binary.BigEndian.Uint16(eth[12:]) == 0x0800 && eth[23] == 1 &&
				eth[34] == 0 && binary.BigEndian.Uint16(eth[38:]) == 0x1234 && binary.BigEndian.Uint16(eth[40:]) == seq
		}
	}
	payload := bytes.Repeat([]byte("chsnap"), 20)

	// Checksum 0 and no NEEDS_CSUM: a corrupt packet, which the kernel
	// drops.
	h.send(buf{data: netHdr(0, 0, 0)}, buf{data: icmpEcho(hostMAC, guestMAC, 0x1234, 1, payload, false)})
	if f := wait("no echo reply", 300*time.Millisecond, isEchoReply(1)); f != nil {
		t.Fatal("the kernel answered an echo with a bad checksum: is the header reaching it?")
	}
	// The same with NEEDS_CSUM at csum_start 34, csum_offset 2.
	hdr := netHdr(netHdrFNeedsCsum, 0, 0)
	binary.LittleEndian.PutUint16(hdr[6:], 34)
	binary.LittleEndian.PutUint16(hdr[8:], 2)
	h.send(buf{data: hdr}, buf{data: icmpEcho(hostMAC, guestMAC, 0x1234, 2, payload, false)})
	f := wait("echo reply", netWaitTime, isEchoReply(2))
	if f == nil {
		t.Fatalf("no echo reply to a NEEDS_CSUM request (stats %+v)", h.n.Stats())
	}
	if got := f[VirtioNetHdrLen+42:]; !bytes.Equal(got[:len(payload)], payload) {
		t.Errorf("echo reply payload % x", got)
	}
	// A fully checksummed echo is answered too.
	h.send(buf{data: netHdr(0, 0, 0)}, buf{data: icmpEcho(hostMAC, guestMAC, 0x1234, 3, payload, true)})
	if wait("echo reply", netWaitTime, isEchoReply(3)) == nil {
		t.Fatal("no echo reply to a checksummed request")
	}
	if s := h.n.Stats(); s.TxDropped != 0 || s.RxDropped != 0 || h.failed() {
		t.Errorf("stats %+v, failed %v (%v)", s, h.failed(), h.tr.Err())
	}
	h.n.Close()
}
