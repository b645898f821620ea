//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const (
	qnetGuestMAC = "52:54:00:12:34:56"
	qnetHostIP   = "10.0.0.1"
	qnetGuestIP  = "10.0.0.2"
	qnetTap      = "chsnap-qt0"
)

// qnetNS is an OS thread in a private network namespace of its own. Sockets
// and taps created through run live in that namespace (and keep working
// from any goroutine); the host's namespace is never touched. The thread
// stays locked and exits with its goroutine, so no other goroutine ever
// runs in the namespace.
type qnetNS struct {
	do chan func()
}

// qnetNewNS starts the thread, or skips the test loudly when this
// machine cannot create network namespaces or taps.
func qnetNewNS(t *testing.T) *qnetNS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: the QEMU virtio-net test needs root (a network namespace and a tap)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("SKIPPED: /dev/net/tun is missing: %v", err)
	}
	n := &qnetNS{do: make(chan func())}
	errc := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
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
		t.Skipf("SKIPPED: cannot create a private network namespace: %v", err)
	}
	t.Cleanup(func() { close(n.do) })
	return n
}

func (n *qnetNS) run(f func()) {
	done := make(chan struct{})
	n.do <- func() { defer close(done); f() }
	<-done
}

// netSetup creates tap qnetTap (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR) in the
// namespace, gives it qnetHostIP/24 and brings it and lo up. It returns the
// tap's fd as a file for QEMU and the tap's interface index.
func (n *qnetNS) netSetup(t *testing.T) (*os.File, int) {
	t.Helper()
	var (
		fd    = -1
		index int
		err   error
	)
	n.run(func() {
		if fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0); err != nil {
			err = fmt.Errorf("open /dev/net/tun: %w", err)
			return
		}
		var ifr *unix.Ifreq
		if ifr, err = unix.NewIfreq(qnetTap); err != nil {
			return
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		if err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			err = fmt.Errorf("TUNSETIFF %s: %w", qnetTap, err)
			return
		}
		var h *netlink.Handle
		if h, err = netlink.NewHandle(); err != nil {
			return
		}
		defer h.Delete()
		var lo, tap netlink.Link
		if lo, err = h.LinkByName("lo"); err != nil {
			return
		}
		if err = h.LinkSetUp(lo); err != nil {
			return
		}
		if tap, err = h.LinkByName(qnetTap); err != nil {
			return
		}
		var addr *netlink.Addr
		if addr, err = netlink.ParseAddr(qnetHostIP + "/24"); err != nil {
			return
		}
		if err = h.AddrAdd(tap, addr); err != nil {
			return
		}
		if err = h.LinkSetUp(tap); err != nil {
			return
		}
		index = tap.Attrs().Index
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		t.Fatalf("set up tap %s in the test's network namespace: %v", qnetTap, err)
	}
	f := os.NewFile(uintptr(fd), qnetTap)
	t.Cleanup(func() { f.Close() })
	return f, index
}

// qnetStartQEMU is startQEMU with files passed to QEMU as fds 3, 4, ...
func qnetStartQEMU(t *testing.T, cmdline string, limit time.Duration, files []*os.File, extra ...string) *qemuGuest {
	t.Helper()
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("SKIPPED: qemu-system-x86_64 not found in PATH; install qemu-system-x86 to run the QEMU guest tests")
	}
	img := testGuest(t, "guest.bzImage")
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	t.Cleanup(cancel)
	args := []string{
		"-M", "microvm", "-accel", "tcg", "-cpu", "max",
		"-smp", "1", "-m", "512M",
		"-nographic", "-no-reboot",
		"-kernel", img, "-append", cmdline,
	}
	cmd := exec.CommandContext(ctx, qemu, append(args, extra...)...)
	cmd.ExtraFiles = files
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("qemu stdin: %v", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("qemu stdout: %v", err)
	}
	g := &qemuGuest{stderr: &bytes.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = g.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", qemu, err)
	}
	g.con = newConsole(stdout, stdin)
	go func() {
		g.err = cmd.Wait()
		close(g.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-g.done
		if t.Failed() {
			t.Logf("console transcript:\n%s\nqemu stderr:\n%s", g.con.Transcript(), g.stderr.String())
		}
	})
	return g
}

// qnetChecksum is the Internet checksum (RFC 1071) of b.
func qnetChecksum(b []byte) uint16 {
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

// qnetStats is one device's part of the guest's "net" reply.
type qnetStats struct {
	features               uint64
	rx, tx, drop, announce uint64
	mac, ip, link          string
	line                   string
}

var qnetReplyRE = regexp.MustCompile(`^net devs=1 virtio=1 net0=mac:([0-9a-f:]+),ip:(\S+),link:(up|down),features:0x([0-9a-f]+),rx:(\d+),tx:(\d+),drop:(\d+),announce:(\d+)$`)

func qnetGuestStats(t *testing.T, c *console) qnetStats {
	t.Helper()
	r, err := c.Command("net", 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m := qnetReplyRE.FindStringSubmatch(r)
	if m == nil {
		t.Fatalf("net reply %q: want one device, matching %s", r, qnetReplyRE)
	}
	s := qnetStats{mac: m[1], ip: m[2], link: m[3], line: r}
	for i, p := range []*uint64{&s.features, &s.rx, &s.tx, &s.drop, &s.announce} {
		base := 10
		if i == 0 {
			base = 16
		}
		v, err := strconv.ParseUint(m[4+i], base, 64)
		if err != nil {
			t.Fatalf("net reply %q: field %d: %v", r, i, err)
		}
		*p = v
	}
	return s
}

// ping sends one ICMP echo request with payload from the raw socket fd and
// waits for the matching reply, checking its checksums and payload.
func qnetPing(fd int, id, seq uint16, payload []byte, timeout time.Duration) (time.Duration, error) {
	req := make([]byte, 8+len(payload))
	req[0] = 8
	binary.BigEndian.PutUint16(req[4:], id)
	binary.BigEndian.PutUint16(req[6:], seq)
	copy(req[8:], payload)
	binary.BigEndian.PutUint16(req[2:], qnetChecksum(req))
	to := &unix.SockaddrInet4{Addr: [4]byte(net.ParseIP(qnetGuestIP).To4())}
	start := time.Now()
	if err := unix.Sendto(fd, req, 0, to); err != nil {
		return 0, fmt.Errorf("send echo request %d: %w", seq, err)
	}
	buf := make([]byte, 2048)
	for time.Since(start) < timeout {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("receive echo reply %d: %w", seq, err)
		}
		p := buf[:n]
		if n < 20 || p[0]>>4 != 4 {
			continue
		}
		hl := int(p[0]&15) * 4
		if n < hl+8 || net.IP(p[12:16]).String() != qnetGuestIP {
			continue
		}
		icmp := p[hl:]
		if icmp[0] != 0 || binary.BigEndian.Uint16(icmp[4:]) != id || binary.BigEndian.Uint16(icmp[6:]) != seq {
			continue
		}
		rtt := time.Since(start)
		if qnetChecksum(p[:hl]) != 0 {
			return rtt, fmt.Errorf("echo reply %d: bad IPv4 header checksum", seq)
		}
		if tot := int(binary.BigEndian.Uint16(p[2:])); tot != n {
			return rtt, fmt.Errorf("echo reply %d: IPv4 total length %d, packet %d bytes", seq, tot, n)
		}
		if qnetChecksum(icmp) != 0 {
			return rtt, fmt.Errorf("echo reply %d: bad ICMP checksum", seq)
		}
		if !bytes.Equal(icmp[8:], payload) {
			return rtt, fmt.Errorf("echo reply %d: payload of %d bytes differs from the request's %d", seq, len(icmp)-8, len(payload))
		}
		return rtt, nil
	}
	return 0, fmt.Errorf("no echo reply %d (%d-byte payload) within %v", seq, len(payload), timeout)
}

func TestGuestQEMUNet(t *testing.T) {
	ns := qnetNewNS(t)
	tap, tapIndex := ns.netSetup(t)
	mon := filepath.Join(t.TempDir(), "monitor.sock")
	extra := []string{
		"-global", "virtio-mmio.force-legacy=false",
		"-netdev", "tap,id=n0,fd=3",
		"-device", "virtio-net-device,netdev=n0,mac=" + qnetGuestMAC + ",bus=virtio-mmio-bus.1",
		"-monitor", "unix:" + mon + ",server=on,wait=off",
	}
	// Transport 1 at 0xfeb00200, GSI 25 (microvm's second IOAPIC; see
	// blkDrive). Not transport 0: QEMU's IOAPIC model treats input pin 0 as
	// pin 2 (the ISA timer override, ioapic_set_irq), also on the second
	// IOAPIC, so GSI 24 arrives as GSI 26.
	cmdline := "net-test virtio_mmio.device=512@0xfeb00200:25 chsnap.ip=" + qnetGuestIP + "/24"
	g := qnetStartQEMU(t, cmdline, 180*time.Second, []*os.File{tap}, extra...)
	c := g.con
	if _, err := c.Expect(`^chsnap-guest ready cpus=1$`, 60*time.Second); err != nil {
		t.Fatal(err)
	}

	s0 := qnetGuestStats(t, c)
	if s0.mac != qnetGuestMAC || s0.ip != qnetGuestIP+"/24" || s0.link != "up" {
		t.Errorf("net reply %q: want mac %s, ip %s/24, link up", s0.line, qnetGuestMAC, qnetGuestIP)
	}
	const (
		version1      = 1 << 32
		fMAC          = 1 << 5
		fStatus       = 1 << 16
		fCtrlVQ       = 1 << 17
		fGuestAnnouce = 1 << 21
	)
	if want := uint64(version1 | fMAC | fStatus | fCtrlVQ | fGuestAnnouce); s0.features != want {
		t.Errorf("net reply %q: negotiated features %#x, want exactly %#x (no offloads)", s0.line, s0.features, want)
	}

	// ICMP echo, which also makes the host resolve the guest by ARP.
	var icmpFD int
	var err error
	ns.run(func() { icmpFD, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP) })
	if err != nil {
		t.Fatalf("raw ICMP socket in the namespace: %v", err)
	}
	defer unix.Close(icmpFD)
	if err := unix.SetsockoptTimeval(icmpFD, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200000}); err != nil {
		t.Fatal(err)
	}
	replies := uint64(0)
	for i, size := range []int{56, 0, 1, 1000, 1472, 56} {
		payload := make([]byte, size)
		for k := range payload {
			payload[k] = byte(k*7 + i)
		}
		rtt, err := qnetPing(icmpFD, 0x4242, uint16(i+1), payload, 10*time.Second)
		if err != nil {
			neighs, nerr := qnetNeighs(ns, tapIndex)
			t.Fatalf("%v (guest: %s; host neighbours: %v %v)", err, qnetGuestStats(t, c).line, neighs, nerr)
		}
		replies++
		t.Logf("ping %d bytes: %v", size, rtt)
	}

	neighs, err := qnetNeighs(ns, tapIndex)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, nb := range neighs {
		if nb.IP.String() == qnetGuestIP {
			found = true
			if nb.HardwareAddr.String() != qnetGuestMAC {
				t.Errorf("host's neighbour entry for %s: MAC %s, want %s", qnetGuestIP, nb.HardwareAddr, qnetGuestMAC)
			}
		}
	}
	if !found {
		t.Errorf("host has no neighbour entry for %s after the pings (ARP did not resolve): %v", qnetGuestIP, neighs)
	}

	// UDP echo on port 7.
	var conn *net.UDPConn
	ns.run(func() {
		conn, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP(qnetGuestIP), Port: 7})
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
		replies++
	}

	// A datagram to another port is dropped (and counted), not answered.
	before := qnetGuestStats(t, c)
	var other *net.UDPConn
	ns.run(func() {
		other, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP(qnetGuestIP), Port: 9})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Write([]byte("discard me")); err != nil {
		t.Fatal(err)
	}
	other.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := other.Read(buf); err == nil {
		t.Errorf("udp to port 9: got a %d-byte reply, want none", n)
	}
	after := qnetGuestStats(t, c)
	if after.drop <= before.drop {
		t.Errorf("udp to port 9: drop counter %d then %d, want it to grow", before.drop, after.drop)
	}
	if after.rx < replies || after.tx < replies {
		t.Errorf("net reply %q: rx/tx below the %d replies the host got", after.line, replies)
	}

	// announce_self on the monitor: QEMU sets VIRTIO_NET_S_ANNOUNCE and raises
	// a config interrupt; the guest sends a gratuitous ARP and acknowledges.
	garp := make(chan error, 1)
	var pfd int
	ns.run(func() {
		pfd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(qnetHtons(unix.ETH_P_ARP)))
		if err == nil {
			err = unix.Bind(pfd, &unix.SockaddrLinklayer{Protocol: qnetHtons(unix.ETH_P_ARP), Ifindex: tapIndex})
		}
	})
	if err != nil {
		t.Fatalf("packet socket on %s: %v", qnetTap, err)
	}
	defer unix.Close(pfd)
	if err := unix.SetsockoptTimeval(pfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200000}); err != nil {
		t.Fatal(err)
	}
	go func() { garp <- qnetWaitGARP(pfd, 20*time.Second) }()
	if err := qnetMonitor(mon, "announce_self"); err != nil {
		t.Fatal(err)
	}
	if err := <-garp; err != nil {
		t.Error(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := qnetGuestStats(t, c)
		if s.announce >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("net reply %q: announce counter still 0 after announce_self", s.line)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Still answering after the announce.
	if _, err := qnetPing(icmpFD, 0x4242, 100, []byte("after announce"), 10*time.Second); err != nil {
		t.Error(err)
	}

	for _, tc := range []struct{ cmd, want string }{
		{"ip 10.0.0.3/24", `^ip ok 0 10\.0\.0\.3/24$`},
		{"ip 0 " + qnetGuestIP + "/24", `^ip ok 0 10\.0\.0\.2/24$`},
		{"ip 1 10.0.0.4/24", `^error ip: no net device 1 \(1 found\)$`},
		{"ip 10.0.0.256/24", `^error ip: `},
		{"ip 10.0.0.2/33", `^error ip: `},
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

	if err := c.Send("poweroff"); err != nil {
		t.Fatal(err)
	}
	if code, err := g.wait(30 * time.Second); err != nil || code != 0 {
		t.Errorf("qemu after poweroff: exit status %d, %v; want 0", code, err)
	}
}

func qnetHtons(v uint16) uint16 { return v<<8 | v>>8 }

func qnetNeighs(ns *qnetNS, index int) ([]netlink.Neigh, error) {
	var neighs []netlink.Neigh
	var err error
	ns.run(func() {
		var h *netlink.Handle
		if h, err = netlink.NewHandle(); err != nil {
			return
		}
		defer h.Delete()
		neighs, err = h.NeighList(index, netlink.FAMILY_V4)
	})
	if err != nil {
		return nil, fmt.Errorf("list the namespace's neighbours: %w", err)
	}
	return neighs, nil
}

// qnetWaitGARP reads ARP frames from packet socket fd until one is a
// gratuitous ARP request from the guest (sender = target = qnetGuestIP,
// broadcast, the guest's MAC).
func qnetWaitGARP(fd int, timeout time.Duration) error {
	mac, _ := net.ParseMAC(qnetGuestMAC)
	ip := net.ParseIP(qnetGuestIP).To4()
	buf := make([]byte, 2048)
	for start := time.Now(); time.Since(start) < timeout; {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read ARP frames: %w", err)
		}
		f := buf[:n]
		if n < 42 || binary.BigEndian.Uint16(f[12:]) != unix.ETH_P_ARP {
			continue
		}
		a := f[14:]
		if binary.BigEndian.Uint16(a[6:]) == 1 && bytes.Equal(a[8:14], mac) && bytes.Equal(a[14:18], ip) &&
			bytes.Equal(a[24:28], ip) && bytes.Equal(f[:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) &&
			bytes.Equal(f[6:12], mac) {
			return nil
		}
	}
	return fmt.Errorf("no gratuitous ARP from %s within %v of announce_self", qnetGuestIP, timeout)
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
