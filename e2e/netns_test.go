//go:build e2e

package e2e

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The network tests' addresses. Each test's host side lives in network
// namespaces the test made; nothing is sent in the test process's own.
const (
	hostIP    = "10.0.0.1"
	hostCIDR  = "10.0.0.1/24"
	guestIP   = "10.0.0.2"
	guestCIDR = "10.0.0.2/24"
	// guestCmdline is chsnap run's default command line (defaultCmdline
	// in cmd/chsnap/run.go); tests append chsnap.ip=... to it.
	guestCmdline = "console=ttyS0 reboot=k panic=1"
)

// needNet skips t, loudly, unless KVM works and this process may create
// network namespaces and taps (root, /dev/net/tun present).
func needNet(t *testing.T) {
	t.Helper()
	needKVM(t)
	if os.Geteuid() != 0 {
		t.Skipf("SKIPPED: network tests need root (namespaces, taps); euid %d", os.Geteuid())
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("SKIPPED: network tests need /dev/net/tun (module tun): %v", err)
	}
}

// onFreshThread runs f on an OS thread of its own that is never handed back
// to the Go scheduler: the goroutine locks it and returns without
// unlocking, so Go ends the thread, and whatever namespace f switched it to
// ends with it. The test process's other threads, and so its original
// network namespace, are never touched. Sockets and fds f creates keep
// their namespace after the thread is gone.
func onFreshThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- f()
	}()
	return <-errc
}

// testNS is a network namespace made for one test, with lo up. It lives
// until the test's cleanup closes its handle and the last tap or socket
// made in it is closed.
type testNS struct {
	h  netns.NsHandle
	nl *netlink.Handle // a netlink socket inside the namespace
}

// newNS creates a network namespace with lo up, or skips the test loudly
// when namespaces cannot be made here.
func newNS(t *testing.T) *testNS {
	t.Helper()
	n := &testNS{h: netns.None()}
	err := onFreshThread(func() error {
		h, err := netns.New() // unshares this thread only
		if err != nil {
			return err
		}
		n.h = h
		// Only rtnetlink: the default families include XFRM, whose
		// module a minimal kernel (the nested runner's) may lack.
		if n.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
			return fmt.Errorf("netlink socket in the new namespace: %w", err)
		}
		return nil
	})
	if err != nil {
		if n.h.IsOpen() {
			n.h.Close()
		}
		t.Skipf("SKIPPED: cannot create a network namespace: %v", err)
	}
	t.Cleanup(func() {
		n.nl.Close()
		n.h.Close()
	})
	lo, err := n.nl.LinkByName("lo")
	if err == nil {
		err = n.nl.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("bring lo up in the test namespace: %v", err)
	}
	return n
}

// do runs f on a fresh thread inside the namespace (see onFreshThread).
func (n *testNS) do(f func() error) error {
	return onFreshThread(func() error {
		if err := netns.Set(n.h); err != nil {
			return fmt.Errorf("enter the test namespace: %w", err)
		}
		return f()
	})
}

// path is a file name for the namespace, for chsnap --netns: this process's
// descriptor of it.
func (n *testNS) path() string {
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(n.h))
}

// tapFlags are the flags tests open taps with.
const tapFlags = unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR

// tap creates tap name in the namespace with flags (TUNSETIFF) and returns
// its fd. The tap lasts while any copy of the fd is open; the test's copy is
// closed at cleanup.
func (n *testNS) tap(t *testing.T, name string, flags uint16) *os.File {
	t.Helper()
	var fd int
	err := n.do(func() error {
		var err error
		fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err == nil {
			ifr.SetUint16(flags)
			err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
		}
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("TUNSETIFF %s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("create tap %s: %v", name, err)
	}
	f := os.NewFile(uintptr(fd), "tap "+name)
	t.Cleanup(func() { f.Close() })
	return f
}

// up gives link name address cidr (if not "") and sets it up.
func (n *testNS) up(t *testing.T, name, cidr string) {
	t.Helper()
	link, err := n.nl.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	if cidr != "" {
		addr, err := netlink.ParseAddr(cidr)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.nl.AddrAdd(link, addr); err != nil {
			t.Fatalf("add %s to %s: %v", cidr, name, err)
		}
	}
	if err := n.nl.LinkSetUp(link); err != nil {
		t.Fatalf("set %s up: %v", name, err)
	}
}

// hostTap makes a namespace with a tap (flags) whose host side is
// 10.0.0.1/24 and up, and returns both.
func hostTap(t *testing.T, name string, flags uint16) (*testNS, *os.File) {
	t.Helper()
	n := newNS(t)
	f := n.tap(t, name, flags)
	n.up(t, name, hostCIDR)
	return n, f
}

// pinger sends ICMP echo requests from a raw socket made in a namespace.
type pinger struct {
	c   *net.IPConn
	id  uint16
	seq uint16
}

// pinger opens a raw ICMP socket in the namespace.
func (n *testNS) pinger(t *testing.T) *pinger {
	t.Helper()
	var c net.PacketConn
	err := n.do(func() error {
		var err error
		c, err = net.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	})
	if err != nil {
		t.Fatalf("raw ICMP socket in the test namespace: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &pinger{c: c.(*net.IPConn), id: uint16(os.Getpid())}
}

// ping sends one echo request of size payload bytes to dst and waits up to
// timeout for the matching reply (same id, sequence and payload).
func (p *pinger) ping(dst string, size int, timeout time.Duration) error {
	p.seq++
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(int(p.seq) + i*7)
	}
	msg := make([]byte, 8+size)
	msg[0] = 8 // echo request
	binary.BigEndian.PutUint16(msg[4:], p.id)
	binary.BigEndian.PutUint16(msg[6:], p.seq)
	copy(msg[8:], payload)
	binary.BigEndian.PutUint16(msg[2:], inetChecksum(msg))
	to := &net.IPAddr{IP: net.ParseIP(dst)}
	if _, err := p.c.WriteTo(msg, to); err != nil {
		return fmt.Errorf("ping %s seq %d (%d bytes): send: %w", dst, p.seq, size, err)
	}
	deadline := time.Now().Add(timeout)
	p.c.SetReadDeadline(deadline)
	buf := make([]byte, 65536)
	for {
		k, from, err := p.c.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("ping %s seq %d (%d bytes): no reply in %v: %w", dst, p.seq, size, timeout, err)
		}
		r := buf[:k] // Go strips the IPv4 header of ip4 raw reads
		if k < 8 || r[0] != 0 || from.String() != dst ||
			binary.BigEndian.Uint16(r[4:]) != p.id || binary.BigEndian.Uint16(r[6:]) != p.seq {
			continue
		}
		if !bytes.Equal(r[8:], payload) {
			return fmt.Errorf("ping %s seq %d: reply carries %d bytes, not the %d sent (or different ones)", dst, p.seq, k-8, size)
		}
		if inetChecksum(r) != 0 {
			return fmt.Errorf("ping %s seq %d: reply has a bad ICMP checksum", dst, p.seq)
		}
		return nil
	}
}

// pingUntil pings dst until one reply comes (the first may wait for ARP),
// up to total.
func (p *pinger) pingUntil(dst string, total time.Duration) error {
	end := time.Now().Add(total)
	var err error
	for time.Now().Before(end) {
		if err = p.ping(dst, 56, 3*time.Second); err == nil {
			return nil
		}
	}
	return fmt.Errorf("no echo reply within %v: %w", total, err)
}

// inetChecksum is the Internet checksum (RFC 1071) of b.
func inetChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// udpEcho sends payload to dst:7 from a UDP socket made in the namespace
// and checks the same bytes come back within timeout.
func (n *testNS) udpEcho(dst string, payload []byte, timeout time.Duration) error {
	var c net.Conn
	err := n.do(func() error {
		var err error
		c, err = net.Dial("udp4", net.JoinHostPort(dst, "7"))
		return err
	})
	if err != nil {
		return fmt.Errorf("udp echo %s: %w", dst, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(payload); err != nil {
		return fmt.Errorf("udp echo %s: send %d bytes: %w", dst, len(payload), err)
	}
	buf := make([]byte, 65536)
	k, err := c.Read(buf)
	if err != nil {
		return fmt.Errorf("udp echo %s: no answer to %d bytes in %v: %w", dst, len(payload), timeout, err)
	}
	if !bytes.Equal(buf[:k], payload) {
		return fmt.Errorf("udp echo %s: sent %d bytes, got %d different ones back", dst, len(payload), k)
	}
	return nil
}

// udpEchoRetry retries udpEcho a few times: a datagram may be lost while
// ARP resolves.
func (n *testNS) udpEchoRetry(dst string, payload []byte) error {
	var err error
	for i := 0; i < 4; i++ {
		if err = n.udpEcho(dst, payload, 3*time.Second); err == nil {
			return nil
		}
	}
	return err
}

// arpCapture is an AF_PACKET socket that sees the ARP frames arriving on one
// interface of a namespace (those the guest writes into its tap).
type arpCapture struct {
	fd int
}

// captureARP opens the capture on interface name in the namespace.
func (n *testNS) captureARP(t *testing.T, name string) *arpCapture {
	t.Helper()
	fd, err := n.packetSocket(name, unix.ETH_P_ARP, 0)
	if err != nil {
		t.Fatalf("ARP capture on %s: %v", name, err)
	}
	c := &arpCapture{fd: fd}
	t.Cleanup(func() { unix.Close(c.fd) })
	return c
}

// packetSocket opens an AF_PACKET socket in the namespace that receives the
// frames of protocol ethType (unix.ETH_P_ALL for all) crossing interface
// name, with a receive buffer of rcvbuf bytes (0: the default). The caller
// closes it.
func (n *testNS) packetSocket(name string, ethType uint16, rcvbuf int) (int, error) {
	link, err := n.nl.LinkByName(name)
	if err != nil {
		return -1, fmt.Errorf("link %s: %w", name, err)
	}
	proto := htons(ethType)
	fd := -1
	err = n.do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return fmt.Errorf("AF_PACKET socket: %w", err)
		}
		if rcvbuf > 0 {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf); err != nil {
				unix.Close(fd)
				return fmt.Errorf("SO_RCVBUFFORCE: %w", err)
			}
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: link.Attrs().Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind to %s: %w", name, err)
		}
		return nil
	})
	return fd, err
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// arpFrame is the part of an Ethernet ARP frame the tests look at.
type arpFrame struct {
	dst, src net.HardwareAddr // Ethernet destination and source
	op       uint16
	sha      net.HardwareAddr
	spa, tpa net.IP
}

func (a arpFrame) String() string {
	return fmt.Sprintf("ARP op %d from %s: %s asks/tells %s", a.op, a.sha, a.spa, a.tpa)
}

// waitGratuitous waits up to timeout for a gratuitous ARP from mac: sender
// and target protocol address both ip. It returns every ARP frame seen.
func (c *arpCapture) waitGratuitous(mac net.HardwareAddr, ip string, timeout time.Duration) ([]arpFrame, error) {
	want := net.ParseIP(ip).To4()
	var seen []arpFrame
	end := time.Now().Add(timeout)
	buf := make([]byte, 2048)
	for {
		left := time.Until(end)
		if left <= 0 {
			return seen, fmt.Errorf("no gratuitous ARP from %s for %s in %v (saw %d ARP frames: %v)", mac, ip, timeout, len(seen), seen)
		}
		pfd := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd, int(left/time.Millisecond)+1); err != nil && !errors.Is(err, unix.EINTR) {
			return seen, fmt.Errorf("poll the ARP capture: %w", err)
		}
		if pfd[0].Revents&unix.POLLIN == 0 {
			continue
		}
		k, _, err := unix.Recvfrom(c.fd, buf, unix.MSG_DONTWAIT)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return seen, fmt.Errorf("read the ARP capture: %w", err)
		}
		// Ethernet (14) + ARP for IPv4 over Ethernet (28).
		f := buf[:k]
		if k < 42 || binary.BigEndian.Uint16(f[12:]) != unix.ETH_P_ARP {
			continue
		}
		a := f[14:]
		if binary.BigEndian.Uint16(a[2:]) != 0x0800 || a[4] != 6 || a[5] != 4 {
			continue
		}
		fr := arpFrame{
			dst: net.HardwareAddr(bytes.Clone(f[0:6])),
			src: net.HardwareAddr(bytes.Clone(f[6:12])),
			op:  binary.BigEndian.Uint16(a[6:]),
			sha: net.HardwareAddr(bytes.Clone(a[8:14])),
			spa: net.IP(bytes.Clone(a[14:18])),
			tpa: net.IP(bytes.Clone(a[24:28])),
		}
		seen = append(seen, fr)
		if bytes.Equal(fr.sha, mac) && fr.spa.Equal(want) && fr.tpa.Equal(want) {
			return seen, nil
		}
	}
}

// guestNet is one device of the guest's `net` reply.
type guestNet map[string]string

// netReply is the guest's `net` reply parsed: the header fields (devs,
// virtio) and each device's key:value list by device name.
type netReply struct {
	fields map[string]string
	devs   map[string]guestNet
}

// parseNet parses `net devs=N virtio=M net0=mac:..,ip:..,link:up,...`.
func parseNet(line string) (netReply, error) {
	r := netReply{fields: map[string]string{}, devs: map[string]guestNet{}}
	words := strings.Fields(line)
	if len(words) == 0 || words[0] != "net" {
		return r, fmt.Errorf("net reply %q does not start with \"net\"", line)
	}
	for _, w := range words[1:] {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			return r, fmt.Errorf("net reply %q: word %q is not KEY=VALUE", line, w)
		}
		if !strings.Contains(v, ":") {
			r.fields[k] = v
			continue
		}
		d := guestNet{}
		for _, kv := range strings.Split(v, ",") {
			dk, dv, ok := strings.Cut(kv, ":") // a MAC keeps its colons
			if !ok {
				return r, fmt.Errorf("net reply %q: %q is not key:value", line, kv)
			}
			d[dk] = dv
		}
		r.devs[k] = d
	}
	return r, nil
}

// count returns the device's counter key as a number, or fails t.
func (d guestNet) count(t *testing.T, key string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(d[key], 0, 64)
	if err != nil {
		t.Fatalf("guest net counter %s=%q: %v (device %v)", key, d[key], err, d)
	}
	return n
}

// guestNetState sends `net` to the guest and returns the parsed reply.
func guestNetState(t *testing.T, p *vmProc) netReply {
	t.Helper()
	line := p.command(t, "net", "net ")
	r, err := parseNet(line)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// devByMAC finds the guest's device with mac, or fails t.
func (r netReply) devByMAC(t *testing.T, mac string) (string, guestNet) {
	t.Helper()
	for name, d := range r.devs {
		if strings.EqualFold(d["mac"], mac) {
			return name, d
		}
	}
	t.Fatalf("the guest has no net device with MAC %s: %v", mac, r.devs)
	return "", nil
}

// procFDs counts the open descriptors of process pid.
func procFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("list the fds of chsnap (pid %d): %v", pid, err)
	}
	return len(ents)
}

// listProcFDs lists process pid's descriptors and what they are.
func listProcFDs(pid int) string {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	var b strings.Builder
	for _, e := range ents {
		target, _ := os.Readlink(dir + "/" + e.Name())
		fmt.Fprintf(&b, "  %s -> %s\n", e.Name(), target)
	}
	return b.String()
}

// settleFDs waits up to 5 s for process pid's descriptor count to be want
// (a closed API connection may take a moment to be closed on chsnap's side)
// and returns the last count.
func settleFDs(t *testing.T, pid, want int) int {
	t.Helper()
	n := procFDs(t, pid)
	for i := 0; i < 50 && n != want; i++ {
		time.Sleep(100 * time.Millisecond)
		n = procFDs(t, pid)
	}
	return n
}

// macvtapPair makes, in the namespace, a dummy parent (a veth where there
// is no dummy), a bridge-mode
// macvlan on it holding 10.0.0.1/24 (the host side) and a bridge-mode
// macvtap on it with address mac (a macvtap takes only frames for its own
// address, so it must be the guest's MAC), and opens the macvtap's
// /dev/tapN. It skips the test, with the reason, where the kernel has no
// dummy or veth, macvlan or macvtap.
func (n *testNS) macvtapPair(t *testing.T, prefix, mac string) *os.File {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	// The parent: a dummy, or else one end of a veth pair.
	// LinkAttrs come from attrs: a zero TxQLen would be sent as
	// txqueuelen 0, and a macvtap queues frames for its reader in a ring
	// of that size, so it would drop every frame.
	pname := prefix + "-dum"
	if derr := n.nl.LinkAdd(&netlink.Dummy{LinkAttrs: attrs(pname, 0, nil)}); derr != nil {
		pname = prefix + "-v0"
		veth := &netlink.Veth{LinkAttrs: attrs(pname, 0, nil), PeerName: prefix + "-v1"}
		if verr := n.nl.LinkAdd(veth); verr != nil {
			t.Skipf("SKIPPED (macvtap): no parent interface: dummy: %v; veth: %v", derr, verr)
		}
		n.up(t, veth.PeerName, "")
	}
	n.up(t, pname, "")
	parent, err := n.nl.LinkByName(pname)
	if err != nil {
		t.Fatal(err)
	}
	host := &netlink.Macvlan{LinkAttrs: attrs(prefix+"-mvl", parent.Attrs().Index, nil), Mode: netlink.MACVLAN_MODE_BRIDGE}
	if err := n.nl.LinkAdd(host); err != nil {
		t.Skipf("SKIPPED (macvtap): cannot add a macvlan (module macvlan?): %v", err)
	}
	n.up(t, host.Name, hostCIDR)
	name := prefix + "-mvt"
	mv := &netlink.Macvtap{Macvlan: netlink.Macvlan{
		LinkAttrs: attrs(name, parent.Attrs().Index, hw),
		Mode:      netlink.MACVLAN_MODE_BRIDGE,
	}}
	if err := n.nl.LinkAdd(mv); err != nil {
		t.Skipf("SKIPPED (macvtap): cannot add a macvtap (module macvtap?): %v", err)
	}
	n.up(t, name, "")
	link, err := n.nl.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	// The character device is named after the ifindex (which is per
	// namespace, so check by TUNGETIFF that the node is this macvtap's).
	dev := fmt.Sprintf("/dev/tap%d", link.Attrs().Index)
	var f *os.File
	for i := 0; i < 20; i++ {
		if f, err = os.OpenFile(dev, os.O_RDWR, 0); err == nil || !errors.Is(err, os.ErrNotExist) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Skipf("SKIPPED (macvtap): cannot open %s for macvtap %s: %v", dev, name, err)
	}
	t.Cleanup(func() { f.Close() })
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got string
	var ierr error
	rc.Control(func(fd uintptr) {
		ifr, err := unix.NewIfreq("")
		if err != nil {
			ierr = err
			return
		}
		if ierr = unix.IoctlIfreq(int(fd), unix.TUNGETIFF, ifr); ierr == nil {
			got = ifr.Name()
		}
	})
	if ierr != nil || got != name {
		t.Skipf("SKIPPED (macvtap): %s is not macvtap %s (TUNGETIFF: %q, %v); another namespace's macvtap may have that ifindex", dev, name, got, ierr)
	}
	return f
}

// attrs returns link attributes for a new interface: netlink's defaults
// (the kernel's txqueuelen) with a name, a parent and an address.
func attrs(name string, parent int, hw net.HardwareAddr) netlink.LinkAttrs {
	a := netlink.NewLinkAttrs()
	a.Name, a.ParentIndex, a.HardwareAddr = name, parent, hw
	return a
}

// stableFDs returns process pid's descriptor count once two reads 200 ms
// apart agree (at most 5 s), for a baseline.
func stableFDs(t *testing.T, pid int) int {
	t.Helper()
	n := procFDs(t, pid)
	for i := 0; i < 25; i++ {
		time.Sleep(200 * time.Millisecond)
		m := procFDs(t, pid)
		if m == n {
			break
		}
		n = m
	}
	return n
}

// echoStream sends numbered UDP datagrams to dst:7 from one socket in the
// namespace, every gap, until stopped or max are sent, and checks every
// answer is an exact copy of a datagram it sent (lost ones are counted,
// not errors: a paused guest may drop some).
type echoStream struct {
	c                net.PacketConn
	stop, done       chan struct{}
	sent, got, wrong int
	firstWrong       string
}

// startEchoStream starts the stream; stopEcho ends it.
func (n *testNS) startEchoStream(t *testing.T, dst string, gap time.Duration, max int) *echoStream {
	t.Helper()
	var c net.PacketConn
	if err := n.do(func() error {
		var err error
		c, err = net.ListenPacket("udp4", "0.0.0.0:0")
		return err
	}); err != nil {
		t.Fatalf("UDP socket in the test namespace: %v", err)
	}
	s := &echoStream{c: c, stop: make(chan struct{}), done: make(chan struct{})}
	to := &net.UDPAddr{IP: net.ParseIP(dst), Port: 7}
	payload := func(seq int) []byte {
		b := make([]byte, 64+seq%1024)
		for i := range b {
			b[i] = byte(seq*31 + i)
		}
		binary.BigEndian.PutUint32(b, uint32(seq))
		return b
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 2048)
		for {
			k, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			if k < 4 {
				s.wrong++
				continue
			}
			seq := int(binary.BigEndian.Uint32(buf))
			if seq >= max || !bytes.Equal(buf[:k], payload(seq)) {
				s.wrong++
				if s.firstWrong == "" {
					s.firstWrong = fmt.Sprintf("%d bytes claiming seq %d", k, seq)
				}
				continue
			}
			s.got++
		}
	}()
	go func() {
		defer close(s.done)
		for seq := 0; seq < max; seq++ {
			select {
			case <-s.stop:
				seq = max
				continue
			case <-time.After(gap):
			}
			if _, err := c.WriteTo(payload(seq), to); err == nil {
				s.sent++
			}
		}
		// Let late answers come, then end the reader.
		time.Sleep(2 * time.Second)
		c.Close()
		<-readDone
	}()
	return s
}

// stopEcho stops the stream and returns datagrams sent, answers that were
// exact copies, and answers that were not (with the first of those).
func (s *echoStream) stopEcho() (sent, got, wrong int, firstWrong string) {
	close(s.stop)
	<-s.done
	return s.sent, s.got, s.wrong, s.firstWrong
}

// netDiag describes, for a failure message, what guest p and namespace n
// saw: the guest's `net` line, the namespace's interfaces with their
// counters and neighbours, chsnap's stderr and the console transcript.
func netDiag(p *vmProc, n *testNS) string {
	var b strings.Builder
	if p != nil {
		reply, err := p.con.Command("net", 10*time.Second)
		fmt.Fprintf(&b, "guest net: %q (%v)\n", reply, err)
	}
	if links, err := n.nl.LinkList(); err == nil {
		for _, l := range links {
			a := l.Attrs()
			fmt.Fprintf(&b, "link %s (%s) %s:", a.Name, l.Type(), a.OperState)
			if st := a.Statistics; st != nil {
				fmt.Fprintf(&b, " rx %d pkts %d dropped %d errors, tx %d pkts %d dropped %d errors",
					st.RxPackets, st.RxDropped, st.RxErrors, st.TxPackets, st.TxDropped, st.TxErrors)
			}
			b.WriteString("\n")
		}
	}
	if neigh, err := n.nl.NeighList(0, netlink.FAMILY_V4); err == nil {
		for _, e := range neigh {
			fmt.Fprintf(&b, "neighbour %s %s state %#x\n", e.IP, e.HardwareAddr, e.State)
		}
	}
	if p != nil {
		fmt.Fprintf(&b, "chsnap stderr:\n%s\nconsole:\n%s", p.stderr, p.con.Transcript())
	}
	return b.String()
}
