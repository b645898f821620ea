//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The test's two links: tap i in the namespace has host address
// qnetHost[i]/24, the guest's net device i has qnetGuest[i] and qnetMAC[i].
var (
	qnetHost  = [2]string{"10.0.0.1", "10.0.1.1"}
	qnetGuest = [2]string{"10.0.0.2", "10.0.1.2"}
	qnetMAC   = [2]string{"52:54:00:12:34:56", "52:54:00:12:34:57"}
	qnetTap   = [2]string{"chsnap-qt0", "chsnap-qt1"}
)

// qnetNewNS makes the test's network namespace (newNS), or skips the test
// loudly when this machine cannot create namespaces or taps. Unlike
// needNet it does not need KVM: QEMU runs with TCG.
func qnetNewNS(t *testing.T) *testNS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: the QEMU virtio-net test needs root (a network namespace and a tap)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("SKIPPED: /dev/net/tun is missing: %v", err)
	}
	return newNS(t)
}

// run runs f on a thread inside the namespace; f reports through its own
// variables.
func (n *testNS) run(t *testing.T, f func()) {
	t.Helper()
	if err := n.do(func() error { f(); return nil }); err != nil {
		t.Fatal(err)
	}
}

// netSetup creates tap name (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR) in the
// namespace, gives it address cidr and brings it up. It returns the tap's
// fd as a file for QEMU and the tap's interface index.
func (n *testNS) netSetup(t *testing.T, name, cidr string) (*os.File, int) {
	t.Helper()
	f := n.tap(t, name, tapFlags)
	n.up(t, name, cidr)
	link, err := n.nl.LinkByName(name)
	if err != nil {
		t.Fatalf("tap %s: %v", name, err)
	}
	return f, link.Attrs().Index
}

// qnetStartQEMU boots the test guest on one vCPU with files passed to QEMU
// as fds 3, 4, ...
func qnetStartQEMU(t *testing.T, cmdline string, limit time.Duration, files []*os.File, extra ...string) *qemuGuest {
	t.Helper()
	return startQEMUFiles(t, "guest.bzImage", 1, cmdline, limit, files, extra...)
}

// qnetStats is one device's part of the guest's "net" reply.
type qnetStats struct {
	features               uint64
	rx, tx, drop, announce uint64
	mac, ip, link          string
}

var (
	qnetReplyRE = regexp.MustCompile(`^net devs=(\d+) virtio=(\d+)((?: net\d+=\S+)*)$`)
	qnetDevRE   = regexp.MustCompile(`^net(\d+)=mac:([0-9a-f:]{17}),ip:(\S+),link:(up|down),features:0x([0-9a-f]+),rx:(\d+),tx:(\d+),drop:(\d+),announce:(\d+)$`)
)

// qnetGuestStats sends "net" and parses the reply, which must list want
// devices, in order.
func qnetGuestStats(t *testing.T, c *console, want int) (string, []qnetStats) {
	t.Helper()
	r, err := c.Command("net", 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m := qnetReplyRE.FindStringSubmatch(r)
	if m == nil || m[1] != strconv.Itoa(want) || m[2] != strconv.Itoa(want) {
		t.Fatalf("net reply %q: want devs=%d virtio=%d and the devices", r, want, want)
	}
	var devs []qnetStats
	for i, f := range strings.Fields(m[3]) {
		d := qnetDevRE.FindStringSubmatch(f)
		if d == nil || d[1] != strconv.Itoa(i) {
			t.Fatalf("net reply %q: device field %q does not match %s", r, f, qnetDevRE)
		}
		s := qnetStats{mac: d[2], ip: d[3], link: d[4]}
		for k, p := range []*uint64{&s.features, &s.rx, &s.tx, &s.drop, &s.announce} {
			base := 10
			if k == 0 {
				base = 16
			}
			if *p, err = strconv.ParseUint(d[5+k], base, 64); err != nil {
				t.Fatalf("net reply %q: %v", r, err)
			}
		}
		devs = append(devs, s)
	}
	if len(devs) != want {
		t.Fatalf("net reply %q: %d devices listed, want %d", r, len(devs), want)
	}
	return r, devs
}

// qnetPing sends one ICMP echo request with payload to dst from the raw
// socket fd and waits for the matching reply, checking its checksums and
// payload. An echo reply from dst with another identifier is an error (the
// test's malformed requests use their own).
func qnetPing(fd int, dst string, id, seq uint16, payload []byte, timeout time.Duration) (time.Duration, error) {
	req := make([]byte, 8+len(payload))
	req[0] = 8
	binary.BigEndian.PutUint16(req[4:], id)
	binary.BigEndian.PutUint16(req[6:], seq)
	copy(req[8:], payload)
	binary.BigEndian.PutUint16(req[2:], inetChecksum(req))
	to := &unix.SockaddrInet4{Addr: [4]byte(net.ParseIP(dst).To4())}
	start := time.Now()
	if err := unix.Sendto(fd, req, 0, to); err != nil {
		return 0, fmt.Errorf("send echo request %d to %s: %w", seq, dst, err)
	}
	for time.Since(start) < timeout {
		p, err := qnetEchoReply(fd, dst)
		if err != nil {
			return 0, err
		}
		if p == nil {
			continue
		}
		if got := binary.BigEndian.Uint16(p[4:]); got != id {
			return 0, fmt.Errorf("echo reply from %s with identifier %#x (seq %d), want %#x: the guest answered a request it should have dropped", dst, got, binary.BigEndian.Uint16(p[6:]), id)
		}
		if binary.BigEndian.Uint16(p[6:]) != seq {
			continue
		}
		rtt := time.Since(start)
		if !bytes.Equal(p[8:], payload) {
			return rtt, fmt.Errorf("echo reply %d from %s: payload of %d bytes differs from the request's %d", seq, dst, len(p)-8, len(payload))
		}
		return rtt, nil
	}
	return 0, fmt.Errorf("no echo reply %d from %s (%d-byte payload) within %v", seq, dst, len(payload), timeout)
}

// qnetEchoReply reads one packet from raw ICMP socket fd (waiting at most
// its receive timeout) and returns the ICMP message if it is an echo reply
// from src, with valid IPv4 and ICMP checksums; nil otherwise.
func qnetEchoReply(fd int, src string) ([]byte, error) {
	buf := make([]byte, 2048)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("receive echo replies: %w", err)
	}
	p := buf[:n]
	if n < 20 || p[0]>>4 != 4 {
		return nil, nil
	}
	hl := int(p[0]&15) * 4
	if n < hl+8 || net.IP(p[12:16]).String() != src {
		return nil, nil
	}
	icmp := p[hl:]
	if icmp[0] != 0 {
		return nil, nil
	}
	if inetChecksum(p[:hl]) != 0 {
		return nil, fmt.Errorf("echo reply from %s: bad IPv4 header checksum", src)
	}
	if tot := int(binary.BigEndian.Uint16(p[2:])); tot != n {
		return nil, fmt.Errorf("echo reply from %s: IPv4 total length %d, packet %d bytes", src, tot, n)
	}
	if inetChecksum(icmp) != 0 {
		return nil, fmt.Errorf("echo reply from %s: bad ICMP checksum", src)
	}
	return icmp, nil
}

// qnetFrame builds Ethernet frames from the host's tap to the guest.
type qnetFrame struct {
	guestMAC, hostMAC net.HardwareAddr
	guestIP, hostIP   net.IP
}

func (f qnetFrame) eth(dst net.HardwareAddr, typ uint16, payload []byte) []byte {
	b := append(append(append([]byte{}, dst...), f.hostMAC...), byte(typ>>8), byte(typ))
	return append(b, payload...)
}

// ipv4 returns an IPv4 packet (no options) from the host to dst; fix may
// change the header before its checksum is computed.
func (f qnetFrame) ipv4(dst net.IP, proto byte, payload []byte, fix func(h []byte)) []byte {
	h := make([]byte, 20, 20+len(payload))
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	h[8] = 64
	h[9] = proto
	copy(h[12:], f.hostIP.To4())
	copy(h[16:], dst.To4())
	if fix != nil {
		fix(h)
	}
	binary.BigEndian.PutUint16(h[10:], inetChecksum(h[:20]))
	return append(h, payload...)
}

func qnetEcho(id uint16, payload []byte) []byte {
	m := append([]byte{8, 0, 0, 0, byte(id >> 8), byte(id), 0, 1}, payload...)
	binary.BigEndian.PutUint16(m[2:], inetChecksum(m))
	return m
}

func (f qnetFrame) udp(srcPort, dstPort uint16, payload []byte, ulen int) []byte {
	u := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:], srcPort)
	binary.BigEndian.PutUint16(u[2:], dstPort)
	binary.BigEndian.PutUint16(u[4:], uint16(ulen))
	u = append(u, payload...)
	ps := append(append(append([]byte{}, f.hostIP.To4()...), f.guestIP.To4()...), 0, 17, byte(len(u)>>8), byte(len(u)))
	c := inetChecksum(append(ps, u...))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return u
}

// malformed returns frames the guest must drop without replying; echo
// requests in them use identifier badID and UDP ones source port badPort.
func (f qnetFrame) malformed(badID, badPort uint16) map[string][]byte {
	other := net.ParseIP("10.0.0.99").To4()
	echo := qnetEcho(badID, []byte("must not be answered"))
	badSum := append([]byte{}, echo...)
	badSum[10] ^= 0xff
	arp := func(op uint16, tpa net.IP, n int) []byte {
		a := make([]byte, 28)
		binary.BigEndian.PutUint16(a[0:], 1)
		binary.BigEndian.PutUint16(a[2:], 0x0800)
		a[4], a[5] = 6, 4
		binary.BigEndian.PutUint16(a[6:], op)
		copy(a[8:], f.hostMAC)
		copy(a[14:], f.hostIP.To4())
		copy(a[24:], tpa.To4())
		return f.eth(f.guestMAC, 0x0806, a[:n])
	}
	ip := func(proto byte, payload []byte, fix func(h []byte)) []byte {
		return f.eth(f.guestMAC, 0x0800, f.ipv4(f.guestIP, proto, payload, fix))
	}
	udpGood := f.udp(badPort, 7, []byte("hello"), 13)
	frames := map[string][]byte{
		"ethernet header only":    f.eth(f.guestMAC, 0x0800, nil),
		"unknown ethertype":       f.eth(f.guestMAC, 0x88b5, make([]byte, 46)),
		"truncated arp":           arp(1, f.guestIP, 20),
		"arp for another address": arp(1, other, 28),
		"arp reply":               arp(2, f.guestIP, 28),
		"ipv4 header truncated":   f.eth(f.guestMAC, 0x0800, f.ipv4(f.guestIP, 1, echo, nil)[:16]),
		"ipv4 version 6":          ip(1, echo, func(h []byte) { h[0] = 0x65 }),
		"ipv4 ihl 4":              ip(1, echo, func(h []byte) { h[0] = 0x44 }),
		"ipv4 ihl 15":             ip(1, echo, func(h []byte) { h[0] = 0x4f }),
		"ipv4 total beyond frame": ip(1, echo, func(h []byte) { binary.BigEndian.PutUint16(h[2:], 1400) }),
		"ipv4 total below header": ip(1, echo, func(h []byte) { binary.BigEndian.PutUint16(h[2:], 12) }),
		"ipv4 more fragments":     ip(1, echo, func(h []byte) { h[6] = 0x20 }),
		"ipv4 fragment offset":    ip(1, echo, func(h []byte) { h[7] = 0x10 }),
		"ipv4 bad checksum":       append(f.eth(f.guestMAC, 0x0800, nil), func() []byte { p := f.ipv4(f.guestIP, 1, echo, nil); p[10] ^= 0x55; return p }()...),
		"ipv4 to another address": f.eth(f.guestMAC, 0x0800, f.ipv4(other, 1, echo, nil)),
		"ipv4 from 0.0.0.0":       ip(1, echo, func(h []byte) { copy(h[12:], []byte{0, 0, 0, 0}) }),
		"ipv4 from broadcast":     ip(1, echo, func(h []byte) { copy(h[12:], []byte{255, 255, 255, 255}) }),
		"ipv4 from multicast":     ip(1, echo, func(h []byte) { copy(h[12:], []byte{224, 0, 0, 1}) }),
		"ipv4 broadcast mac":      f.eth(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0x0800, f.ipv4(f.guestIP, 1, echo, nil)),
		"another mac":             f.eth(net.HardwareAddr{0x52, 0x54, 0, 0x99, 0x99, 0x99}, 0x0800, f.ipv4(f.guestIP, 1, echo, nil)),
		"unknown protocol":        ip(99, echo, nil),
		"icmp bad checksum":       ip(1, badSum, nil),
		"icmp truncated":          ip(1, echo[:6], nil),
		"icmp not a request": ip(1, func() []byte {
			m := append([]byte{}, echo...)
			m[0] = 13
			m[2], m[3] = 0, 0
			binary.BigEndian.PutUint16(m[2:], inetChecksum(m))
			return m
		}(), nil),
		"udp truncated":        ip(17, udpGood[:6], nil),
		"udp length beyond ip": ip(17, f.udp(badPort, 7, []byte("hello"), 200), nil),
		"udp length below 8":   ip(17, f.udp(badPort, 7, []byte("hello"), 4), nil),
		"udp bad checksum":     ip(17, func() []byte { u := append([]byte{}, udpGood...); u[6] ^= 0x0f; return u }(), nil),
		"udp other port":       ip(17, f.udp(badPort, 9, []byte("hello"), 13), nil),
	}
	return frames
}

func TestGuestQEMUNet(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("SKIPPED: qemu-system-x86_64 not found in PATH; install qemu-system-x86 to run the QEMU guest tests")
	}
	ns := qnetNewNS(t)
	var taps [2]*os.File
	var index [2]int
	for i := range taps {
		taps[i], index[i] = ns.netSetup(t, qnetTap[i], qnetHost[i]+"/24")
	}
	mon := filepath.Join(t.TempDir(), "monitor.sock")
	// Transports 1 and 2 (0xfeb00200 + 512(n-1)), GSIs 25 and 26 on
	// microvm's second IOAPIC (see blkDrive). Not transport 0: QEMU's IOAPIC
	// model delivers input 0 of every IOAPIC on pin 2 (the ISA timer
	// override in ioapic_set_irq), so GSI 24 arrives as GSI 26.
	extra := []string{"-global", "virtio-mmio.force-legacy=false", "-monitor", "unix:" + mon + ",server=on,wait=off"}
	cmdline := "net-test"
	for i := range taps {
		extra = append(extra,
			"-netdev", fmt.Sprintf("tap,id=n%d,fd=%d", i, 3+i),
			"-device", fmt.Sprintf("virtio-net-device,netdev=n%d,mac=%s,bus=virtio-mmio-bus.%d", i, qnetMAC[i], i+1))
		cmdline += fmt.Sprintf(" virtio_mmio.device=512@%#x:%d", 0xfeb00000+512*(i+1), 24+i+1)
	}
	cmdline += " chsnap.ip=" + qnetGuest[0] + "/24," + qnetGuest[1] + "/24"
	g := qnetStartQEMU(t, cmdline, 180*time.Second, taps[:], extra...)
	c := g.con
	if _, err := c.Expect(`^chsnap-guest ready cpus=1$`, 60*time.Second); err != nil {
		t.Fatal(err)
	}

	line, devs := qnetGuestStats(t, c, 2)
	const (
		version1      = 1 << 32
		fMAC          = 1 << 5
		fStatus       = 1 << 16
		fCtrlVQ       = 1 << 17
		fGuestAnnouce = 1 << 21
	)
	for i, d := range devs {
		if d.mac != qnetMAC[i] || d.ip != qnetGuest[i]+"/24" || d.link != "up" {
			t.Errorf("net reply %q: device %d: want mac %s, ip %s/24, link up", line, i, qnetMAC[i], qnetGuest[i])
		}
		if want := uint64(version1 | fMAC | fStatus | fCtrlVQ | fGuestAnnouce); d.features != want {
			t.Errorf("net reply %q: device %d: negotiated features %#x, want exactly %#x (no offloads)", line, i, d.features, want)
		}
	}

	// ICMP echo, which also makes the host resolve the guest by ARP.
	var icmpFD int
	var err error
	ns.run(t, func() { icmpFD, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP) })
	if err != nil {
		t.Fatalf("raw ICMP socket in the namespace: %v", err)
	}
	defer unix.Close(icmpFD)
	if err := unix.SetsockoptTimeval(icmpFD, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000}); err != nil {
		t.Fatal(err)
	}
	var replies [2]uint64
	for dev := range taps {
		for i, size := range []int{56, 0, 1, 1000, 1472, 56} {
			payload := make([]byte, size)
			for k := range payload {
				payload[k] = byte(k*7 + i)
			}
			rtt, err := qnetPing(icmpFD, qnetGuest[dev], 0x4242, uint16(i+1), payload, 10*time.Second)
			if err != nil {
				neighs, nerr := qnetNeighs(ns, index[dev])
				line, _ := qnetGuestStats(t, c, 2)
				t.Fatalf("%v (guest: %s; host neighbours: %v %v)", err, line, neighs, nerr)
			}
			replies[dev]++
			t.Logf("ping %s, %d bytes: %v", qnetGuest[dev], size, rtt)
		}
		neighs, err := qnetNeighs(ns, index[dev])
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, nb := range neighs {
			if nb.IP.String() == qnetGuest[dev] {
				found = true
				if nb.HardwareAddr.String() != qnetMAC[dev] {
					t.Errorf("host's neighbour entry for %s: MAC %s, want %s", qnetGuest[dev], nb.HardwareAddr, qnetMAC[dev])
				}
			}
		}
		if !found {
			t.Errorf("host has no neighbour entry for %s after the pings (ARP did not resolve): %v", qnetGuest[dev], neighs)
		}
	}

	// UDP echo on port 7.
	var conn *net.UDPConn
	ns.run(t, func() {
		conn, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP(qnetGuest[1]), Port: 7})
	})
	if err != nil {
		t.Fatalf("udp socket in the namespace: %v", err)
	}
	defer conn.Close()
	buf := make([]byte, 2048)
	for i, size := range []int{1, 100, 1472, 0} {
		payload := bytes.Repeat([]byte{byte('a' + i)}, size)
		if _, err := conn.Write(payload); err != nil {
			t.Fatalf("udp write %d bytes: %v", size, err)
		}
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("udp echo of %d bytes: %v", size, err)
		}
		if !bytes.Equal(buf[:n], payload) {
			t.Errorf("udp echo of %d bytes: got %d bytes %.32q", size, n, buf[:n])
		}
		replies[1]++
	}
	// Idle at the prompt, the guest sleeps until an interrupt: each device's
	// must wake it (it has no periodic poll).
	time.Sleep(500 * time.Millisecond)
	for dev := range taps {
		rtt, err := qnetPing(icmpFD, qnetGuest[dev], 0x4242, 100, []byte("after a quiet while"), 2*time.Second)
		if err != nil {
			t.Fatalf("idle guest: %v", err)
		}
		replies[dev]++
		t.Logf("ping %s after 500 ms idle: %v", qnetGuest[dev], rtt)
		time.Sleep(500 * time.Millisecond)
	}
	line, devs = qnetGuestStats(t, c, 2)
	for i, d := range devs {
		if d.rx < replies[i] || d.tx < replies[i] {
			t.Errorf("net reply %q: device %d: rx/tx below the %d replies the host got", line, i, replies[i])
		}
	}

	// Malformed and foreign frames, written to tap 0 by a packet socket, are
	// dropped and counted, never answered, and the guest carries on.
	const badID, badPort = 0x5555, 40007
	var pfd int
	var bad *net.UDPConn
	ns.run(t, func() {
		pfd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			bad, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(qnetHost[0]), Port: badPort})
		}
	})
	if err != nil {
		t.Fatalf("packet and udp sockets in the namespace: %v", err)
	}
	defer unix.Close(pfd)
	defer bad.Close()
	tapLink, err := qnetLink(ns, qnetTap[0])
	if err != nil {
		t.Fatal(err)
	}
	gmac, _ := net.ParseMAC(qnetMAC[0])
	fr := qnetFrame{guestMAC: gmac, hostMAC: tapLink.Attrs().HardwareAddr, guestIP: net.ParseIP(qnetGuest[0]), hostIP: net.ParseIP(qnetHost[0])}
	_, before := qnetGuestStats(t, c, 2)
	frames := fr.malformed(badID, badPort)
	for name, f := range frames {
		if err := unix.Sendto(pfd, f, 0, &unix.SockaddrLinklayer{Ifindex: index[0], Halen: 6}); err != nil {
			t.Fatalf("send %q frame: %v", name, err)
		}
	}
	// A valid one after them: its reply shows the guest has seen them all.
	if _, err := qnetPing(icmpFD, qnetGuest[0], 0x4242, 200, []byte("after the malformed frames"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); {
		p, err := qnetEchoReply(icmpFD, qnetGuest[0])
		if err != nil {
			t.Fatal(err)
		}
		if p != nil && binary.BigEndian.Uint16(p[4:]) == badID {
			t.Errorf("the guest answered a malformed echo request: % x", p)
		}
	}
	bad.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, _, err := bad.ReadFrom(buf); err == nil {
		t.Errorf("the guest answered a malformed udp datagram: %q", buf[:n])
	}
	line, after := qnetGuestStats(t, c, 2)
	t.Logf("after %d malformed frames and one ping: %s (device 0 before: %+v)", len(frames), line, before[0])
	if got := after[0].drop - before[0].drop; got < uint64(len(frames)) {
		t.Errorf("net reply %q: device 0 dropped %d frames, want at least the %d malformed ones", line, got, len(frames))
	}

	// announce_self on the monitor: QEMU sets VIRTIO_NET_S_ANNOUNCE and raises
	// a config interrupt; the guest sends a gratuitous ARP and acknowledges.
	capture := ns.captureARP(t, qnetTap[1])
	guestMAC, _ := net.ParseMAC(qnetMAC[1])
	type garpResult struct {
		seen []arpFrame
		err  error
	}
	garp := make(chan garpResult, 1)
	go func() {
		seen, err := capture.waitGratuitous(guestMAC, qnetGuest[1], 20*time.Second)
		garp <- garpResult{seen, err}
	}()
	if err := qnetMonitor(mon, "announce_self"); err != nil {
		t.Fatal(err)
	}
	if r := <-garp; r.err != nil {
		t.Errorf("after announce_self: %v", r.err)
	} else {
		// The gratuitous ARP is a broadcast request from the guest's MAC.
		f := r.seen[len(r.seen)-1]
		bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
		if f.op != 1 || !bytes.Equal(f.dst, bcast) || !bytes.Equal(f.src, guestMAC) {
			t.Errorf("gratuitous ARP after announce_self: %s, Ethernet %s -> %s; want a request broadcast from %s", f, f.src, f.dst, guestMAC)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		line, devs := qnetGuestStats(t, c, 2)
		if devs[0].announce >= 1 && devs[1].announce >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("net reply %q: an announce counter still 0 after announce_self", line)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for dev := range taps {
		if _, err := qnetPing(icmpFD, qnetGuest[dev], 0x4242, 300, []byte("after announce"), 10*time.Second); err != nil {
			t.Error(err)
		}
	}

	for _, tc := range []struct{ cmd, want string }{
		{"ip 10.0.0.3/24", `^ip ok 0 10\.0\.0\.3/24$`},
		{"ip 0 " + qnetGuest[0] + "/24", `^ip ok 0 10\.0\.0\.2/24$`},
		{"ip 1 10.0.1.2/24", `^ip ok 1 10\.0\.1\.2/24$`},
		{"ip 2 10.0.2.2/24", `^error ip: no net device 2 \(2 found\)$`},
		{"ip 10.0.0.256/24", `^error ip: `},
		{"ip 10.0.0.2/33", `^error ip: `},
		{"ip 10.0.0.2", `^error ip: `},
		{"ip x 10.0.0.2/24", `^error ip: DEV must be a number$`},
		{"ip", `^error ip: usage`},
		{"net x", `^error net: takes no arguments$`},
	} {
		got, err := c.Command(tc.cmd, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(tc.want).MatchString(got) {
			t.Errorf("%q: reply %q, want a match for %s", tc.cmd, got, tc.want)
		}
	}
	// The address change takes effect: 10.0.0.3 answers, then 10.0.0.2 again.
	if _, err := c.Command("ip 0 10.0.0.3/24", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := qnetPing(icmpFD, "10.0.0.3", 0x4242, 400, []byte("new address"), 10*time.Second); err != nil {
		t.Error(err)
	}

	if err := c.Send("poweroff"); err != nil {
		t.Fatal(err)
	}
	if code, err := g.wait(30 * time.Second); err != nil || code != 0 {
		t.Errorf("qemu after poweroff: exit status %d, %v; want 0", code, err)
	}
}

func qnetLink(ns *testNS, name string) (netlink.Link, error) {
	l, err := ns.nl.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("find %s in the namespace: %w", name, err)
	}
	return l, nil
}

func qnetNeighs(ns *testNS, index int) ([]netlink.Neigh, error) {
	neighs, err := ns.nl.NeighList(index, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list the namespace's neighbours: %w", err)
	}
	return neighs, nil
}

// qnetMonitor sends one HMP command over the monitor socket at path.
func qnetMonitor(path, cmd string) error {
	var conn net.Conn
	var err error
	for i := 0; i < 50; i++ {
		if conn, err = net.Dial("unix", path); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("qemu monitor %s: %w", path, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	if _, err := r.ReadString(')'); err != nil { // "(qemu)" prompt
		return fmt.Errorf("qemu monitor prompt: %w", err)
	}
	if _, err := conn.Write([]byte(cmd + "\n")); err != nil {
		return fmt.Errorf("qemu monitor %q: %w", cmd, err)
	}
	if _, err := r.ReadString(')'); err != nil {
		return fmt.Errorf("qemu monitor %q: no prompt after it: %w", cmd, err)
	}
	return nil
}
