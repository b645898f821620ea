//go:build e2e

package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/chsnap/chsnap/formats"
)

// The guest's and the host side's IPv6 addresses (unique local, added
// without duplicate address detection on both sides).
const (
	hostIP6    = "fd00::1"
	hostCIDR6  = "fd00::1/64"
	guestIP6   = "fd00::2"
	guestCIDR6 = "fd00::2/64"
)

// linuxNetCmdline boots the Debian kernel showing only its warnings and
// errors, rebooting (so ending chsnap) at once on a panic;
// testdata/linuxnet/init.sh reads chsnap.ip and chsnap.ip6.
const linuxNetCmdline = "console=ttyS0 reboot=k panic=-1 loglevel=5 chsnap.ip=" + guestCIDR + " chsnap.ip6=" + guestCIDR6

// linuxTrouble matches kernel lines that mean the network path met
// something wrong: an oops, a warning raised in networking or virtio code,
// a stuck transmit queue, virtio-net's complaints about what the device put
// in its rings. linuxWarning matches any other kernel warning, which the
// test reports without failing (see checkLinuxHealth).
var (
	linuxTrouble = regexp.MustCompile(`BUG:|Oops|WARNING:.*(virtio|net|skb|tcp|ipv[46]|/ip|eth)|` +
		`NETDEV WATCHDOG|transmit queue \d+ timed out|` +
		`virtio_net.*(error|bad|unexpected|too|fail|invalid)|eth0:.*(error|bad|unexpected|too|fail|invalid)|` +
		`virtio_mmio.*(error|fail|invalid)|is not a head|out of range`)
	linuxWarning = regexp.MustCompile(`WARNING:|Call Trace`)
)

// linuxErrorCounters are eth0's counters (testdata/linuxnet's stats) that
// must stay 0.
var linuxErrorCounters = []string{"rx_errors", "tx_errors", "rx_dropped", "tx_dropped",
	"rx_length_errors", "rx_frame_errors", "rx_over_errors", "rx_fifo_errors", "tx_fifo_errors"}

// linuxNetBytes is the size of each TCP transfer, both ways.
const linuxNetBytes = 4 << 20

// linuxNetFeatures are the feature bits Linux's virtio_net must have
// negotiated on a vnet-header tap: everything chsnap offers there (Linux
// supports all of it), and nothing else.
var linuxNetFeatures = map[int]string{
	0: "CSUM", 1: "GUEST_CSUM", 5: "MAC", 7: "GUEST_TSO4", 8: "GUEST_TSO6", 9: "GUEST_ECN",
	11: "HOST_TSO4", 12: "HOST_TSO6", 13: "HOST_ECN", 15: "MRG_RXBUF", 16: "STATUS",
	17: "CTRL_VQ", 21: "GUEST_ANNOUNCE", 28: "RING_INDIRECT_DESC", 29: "RING_EVENT_IDX",
	32: "VERSION_1",
}

// linuxNetInitrd returns the initramfs of testdata/linuxnet: the file named
// by $CHSNAP_LINUXNET_INITRD, else linuxnet.cpio beside the kernel fixture
// (where scripts/e2e-nested.sh stages it), else one built now by
// testdata/linuxnet/build.sh from the fixture in kdir.
func linuxNetInitrd(t *testing.T, kdir string) string {
	t.Helper()
	if p := os.Getenv("CHSNAP_LINUXNET_INITRD"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("CHSNAP_LINUXNET_INITRD: %v", err)
		}
		return p
	}
	if p := filepath.Join(kdir, "linuxnet.cpio"); fileExists(p) {
		return p
	}
	out := filepath.Join(t.TempDir(), "linuxnet.cpio")
	cmd := exec.Command(filepath.Join(repoRoot, "testdata", "linuxnet", "build.sh"), out, kdir)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the linuxnet initramfs: %v\n%s", err, b)
	}
	return out
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestLinuxNet boots the stock Debian kernel with its own virtio_net driver
// on a vnet-header tap and checks what that driver does with chsnap's
// device: the offloads it negotiated (checksums, TSO both ways, mergeable
// buffers, announce), ping both ways, and over IPv4 and IPv6 a 4 MiB TCP
// stream each way whose bytes arrive intact, with at least one frame larger
// than 1514 bytes crossing the tap in each direction (so segmentation
// offload really happened: the host handed the guest TCP super-frames, and
// the guest handed them to the host). Then it saves the guest while echo
// requests pour in, kills it, restores it onto a tap in another namespace,
// waits for Linux's gratuitous ARP there (GUEST_ANNOUNCE) and checks it all
// again.
func TestLinuxNet(t *testing.T) {
	needNet(t)
	kdir := debianKernelDir(t)
	initrd := linuxNetInitrd(t, kdir)
	dir := shortDir(t)
	data := make([]byte, linuxNetBytes)
	rng := rand.NewChaCha8([32]byte{'c', 'h', 's', 'n', 'a', 'p'})
	rng.Read(data)

	ns, tap := linuxNetHostTap(t, "chs-ln0")
	frames := ns.captureFrames(t, "chs-ln0")
	sock := filepath.Join(dir, "a.sock")
	start := time.Now()
	p := startChsnapFiles(t, []*os.File{tap}, "run", "--kernel", filepath.Join(kdir, "vmlinux"),
		"--initrd", initrd, "--memory", "512M", "--cpus", "1", "--cmdline", linuxNetCmdline,
		"--net", "id=net0,fd=3,mac="+mac0, "--api-socket", sock)
	m, err := p.con.Expect(`^linuxnet-(ready|error) (.*)`, 2*time.Minute)
	if err != nil || m[1] != "ready" {
		t.Fatalf("Linux did not bring eth0 up: %v\nconsole:\n%s\nstderr:\n%s", err, p.con.Transcript(), p.stderr)
	}
	t.Logf("Linux up on chsnap's virtio-net after %v: %s", time.Since(start).Round(time.Millisecond), m[2])
	feats := checkLinuxFeatures(t, m[2])
	checkLinuxNet(t, p, ns, frames, data, "booted", nil)
	checkLinuxHealth(t, p, "booted")
	irqsBefore := p.command(t, "irqs", "irqs")

	// Save while echo requests pour in, so the device is caught with
	// frames in flight: receive chains used, interrupts raised.
	snap := filepath.Join(dir, "linux.snap")
	stopFlood := ns.floodPing(t, guestIP, time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	chsnapOK(t, "save", "--leave-paused", "--api-socket", sock, snap)
	t.Logf("echo requests sent during the save: %d", stopFlood())
	p.cmd.Process.Kill()
	p.wait(t, 10*time.Second)
	saved := archiveDevice(t, snap, "net0")
	t.Logf("net0 as saved: %s", saved)

	ns2, tap2 := linuxNetHostTap(t, "chs-ln1")
	arp := ns2.captureARP(t, "chs-ln1")
	frames2 := ns2.captureFrames(t, "chs-ln1")
	start = time.Now()
	sock2 := filepath.Join(dir, "b.sock")
	r := startChsnapFiles(t, []*os.File{tap2}, "restore", snap, "--net-fd", "net0=3",
		"--api-socket", sock2)
	// What a failure after the restore shows besides the usual: the
	// device as saved and as it is now (a second save), and the guest's
	// virtio interrupt counts then and now.
	restoredDiag := func() string {
		var b strings.Builder
		fmt.Fprintf(&b, "guest virtio interrupts before the save: %s\n", irqsBefore)
		reply, err := r.con.Command("irqs", 10*time.Second)
		fmt.Fprintf(&b, "guest virtio interrupts now: %s (%v)\n", reply, err)
		fmt.Fprintf(&b, "net0 as saved: %s\n", saved)
		again := filepath.Join(dir, "again.snap")
		out, err := exec.Command(chsnapBin, "save", "--leave-paused", "--api-socket", sock2, again).CombinedOutput()
		if err != nil {
			fmt.Fprintf(&b, "second save: %v %s\n", err, out)
		} else {
			fmt.Fprintf(&b, "net0 now (second save): %s\n", archiveDevice(t, again, "net0"))
			exec.Command(chsnapBin, "resume", "--api-socket", sock2).Run()
		}
		return b.String()
	}
	mac, _ := net.ParseMAC(mac0)
	if seen, err := arp.waitGratuitous(mac, guestIP, 30*time.Second); err != nil {
		t.Errorf("restored Linux did not announce itself on the new tap: %v\n%s", err, netDiag(nil, ns2)+linuxDiag(r, restoredDiag))
	} else {
		t.Logf("gratuitous ARP %v after %v (%d ARP frames)", seen[len(seen)-1], time.Since(start).Round(time.Millisecond), len(seen))
	}
	if got := checkLinuxFeatures(t, r.command(t, "feat", "feat ")); got != feats {
		t.Errorf("features after the restore %s, before %s", got, feats)
	}
	checkLinuxNet(t, r, ns2, frames2, data, "restored", restoredDiag)
	checkLinuxHealth(t, r, "restored")

	r.send(t, "poweroff")
	if st := r.wait(t, 30*time.Second); st != 0 {
		t.Errorf("exit status %d after poweroff; stderr:\n%s", st, r.stderr)
	}
}

// floodPing sends ICMP echo requests to dst from the namespace every gap
// (not waiting for replies) until the returned function is called, which
// returns how many were sent.
func (n *testNS) floodPing(t *testing.T, dst string, gap time.Duration) func() int {
	t.Helper()
	pg := n.pinger(t)
	stop, done := make(chan struct{}), make(chan int, 1)
	go func() {
		to := &net.IPAddr{IP: net.ParseIP(dst)}
		sent := 0
		for seq := 0; ; seq++ {
			select {
			case <-stop:
				done <- sent
				return
			case <-time.After(gap):
			}
			msg := make([]byte, 8+56)
			msg[0] = 8 // echo request
			binary.BigEndian.PutUint16(msg[4:], pg.id+1)
			binary.BigEndian.PutUint16(msg[6:], uint16(seq))
			binary.BigEndian.PutUint16(msg[2:], inetChecksum(msg))
			if _, err := pg.c.WriteTo(msg, to); err == nil {
				sent++
			}
		}
	}()
	return func() int {
		close(stop)
		return <-done
	}
}

// checkLinuxFeatures checks the features= field of a linuxnet-ready or feat
// line (the virtio device's /sys features: one '0' or '1' per bit, bit 0
// first) against linuxNetFeatures and the mac=, ip= and ip6= fields against
// the test's, and returns the bit string.
func checkLinuxFeatures(t *testing.T, line string) string {
	t.Helper()
	fields := map[string]string{}
	for _, w := range strings.Fields(line) {
		if k, v, ok := strings.Cut(w, "="); ok {
			fields[k] = v
		}
	}
	if fields["mac"] != mac0 || fields["ip"] != guestCIDR || fields["ip6"] != guestCIDR6 {
		t.Errorf("eth0 has MAC %q, addresses %q and %q; want %s, %s and %s (line %q)",
			fields["mac"], fields["ip"], fields["ip6"], mac0, guestCIDR, guestCIDR6, line)
	}
	bits := fields["features"]
	if len(bits) != 64 || strings.Trim(bits, "01") != "" {
		t.Fatalf("features=%q is not 64 bits (line %q)", bits, line)
	}
	var missing, extra []string
	for i, c := range bits {
		name, want := linuxNetFeatures[i]
		switch {
		case want && c == '0':
			missing = append(missing, name)
		case !want && c == '1':
			extra = append(extra, "bit "+strconv.Itoa(i))
		}
	}
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("Linux negotiated %s: missing %v, unexpected %v", bits, missing, extra)
	}
	return bits
}

// linuxNetHostTap is hostTap plus the host side's IPv6 address.
func linuxNetHostTap(t *testing.T, name string) (*testNS, *os.File) {
	t.Helper()
	n, f := hostTap(t, name, tapFlags)
	link, err := n.nl.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	addr, err := netlink.ParseAddr(hostCIDR6)
	if err != nil {
		t.Fatal(err)
	}
	addr.Flags = unix.IFA_F_NODAD
	if err := n.nl.AddrAdd(link, addr); err != nil {
		t.Fatalf("add %s to %s: %v", hostCIDR6, name, err)
	}
	return n, f
}

// checkLinuxNet checks a linuxnet guest p on the tap whose namespace is n
// and whose frames fc sees: ping both ways, then over IPv4 and IPv6 (TSO4
// and TSO6) data sent to its port 5000 arrives intact, the guest sends it
// back intact, and each way at least one frame larger than an Ethernet
// frame crossed the tap. Failure messages add extra's text (when not nil).
func checkLinuxNet(t *testing.T, p *vmProc, n *testNS, fc *frameCapture, data []byte, what string, extra func() string) {
	t.Helper()
	pg := n.pinger(t)
	if err := pg.pingUntil(guestIP, 30*time.Second); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, netDiag(nil, n)+linuxDiag(p, extra))
	}
	for _, size := range []int{0, 1, 56, 512, 1000, 1400, 1472} {
		if err := pg.ping(guestIP, size, 5*time.Second); err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	if reply := p.command(t, "ping "+hostIP, "ping "); reply != "ping rc=0" {
		t.Errorf("%s: the guest's ping to %s: %q", what, hostIP, reply)
	}
	for _, fam := range []struct {
		name        string
		guest, host string
		etherType   uint16
	}{
		{"IPv4", guestIP, hostIP, unix.ETH_P_IP},
		{"IPv6", guestIP6, hostIP6, unix.ETH_P_IPV6},
	} {
		w := what + " " + fam.name
		streamToLinux(t, p, n, fc, data, net.JoinHostPort(fam.guest, "5000"), fam.etherType, w, extra)
		streamFromLinux(t, p, n, fc, data, fam.host, fam.etherType, w, extra)
	}
}

// streamToLinux sends data from the namespace to the guest's listener at
// addr and checks what the guest received; the guest's receive path
// (GUEST_TSO, GUEST_CSUM, MRG_RXBUF). At least one frame of etherType over
// 1514 bytes must have gone into the tap.
func streamToLinux(t *testing.T, p *vmProc, n *testNS, fc *frameCapture, data []byte, addr string, etherType uint16, what string, extra func() string) {
	t.Helper()
	fc.reset(etherType)
	start := time.Now()
	if err := n.sendTCP(addr, data, time.Minute); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, netDiag(nil, n)+linuxDiag(p, extra))
	}
	m, err := p.con.Expect(`^rx bytes=(\d+) sha256=([0-9a-f]+)`, time.Minute)
	if err != nil {
		t.Fatalf("%s: the guest did not report the stream: %v\n%s", what, err, netDiag(nil, n)+linuxDiag(p, extra))
	}
	sum := sha256.Sum256(data)
	if m[1] != strconv.Itoa(len(data)) || m[2] != hex.EncodeToString(sum[:]) {
		t.Errorf("%s: the guest received %s bytes with sha256 %s, want %d bytes with %x", what, m[1], m[2], len(data), sum)
	}
	st := fc.stats()
	t.Logf("%s: %d bytes host to guest in %v; tap frames to the guest: %s", what, len(data), time.Since(start).Round(time.Millisecond), st.out)
	if st.out.big == 0 {
		t.Errorf("%s: no frame larger than 1514 bytes went from the host into the tap (%s): the host did not hand the guest a TSO super-frame", what, st.out)
	}
}

// streamFromLinux has the guest send back what it last received to a
// listener on host (in the namespace) and checks the bytes; the guest's
// transmit path (HOST_TSO, CSUM). At least one frame of etherType over
// 1514 bytes must have come out of the tap.
func streamFromLinux(t *testing.T, p *vmProc, n *testNS, fc *frameCapture, data []byte, host string, etherType uint16, what string, extra func() string) {
	t.Helper()
	fc.reset(etherType)
	start := time.Now()
	var ln net.Listener
	if err := n.do(func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(host, "0"))
		return err
	}); err != nil {
		t.Fatalf("%s: listen in the test namespace: %v", what, err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	gotErr := make(chan error, 1)
	go func() {
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(time.Minute))
		c, err := ln.Accept()
		if err != nil {
			gotErr <- fmt.Errorf("accept: %w", err)
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Minute))
		b, err := io.ReadAll(c)
		if err != nil {
			gotErr <- fmt.Errorf("read after %d bytes: %w", len(b), err)
			return
		}
		got <- b
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	reply := p.command(t, fmt.Sprintf("tx %s %d", host, port), "tx ")
	if !strings.HasPrefix(reply, "tx rc=0 ") {
		t.Errorf("%s: guest's send: %q", what, reply)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, data) {
			t.Errorf("%s: the guest sent back %d bytes, not the %d it received (or different ones)", what, len(b), len(data))
		}
	case err := <-gotErr:
		t.Errorf("%s: the guest's stream to the host: %v\n%s", what, err, netDiag(nil, n)+linuxDiag(p, extra))
	case <-time.After(90 * time.Second):
		t.Errorf("%s: the guest's stream to the host did not end", what)
	}
	st := fc.stats()
	t.Logf("%s: %d bytes guest to host in %v; tap frames from the guest: %s", what, len(data), time.Since(start).Round(time.Millisecond), st.in)
	if st.in.big == 0 {
		t.Errorf("%s: no frame larger than 1514 bytes came out of the tap from the guest (%s): the guest's TSO super-frames did not reach the host whole", what, st.in)
	}
}

// checkLinuxHealth checks that eth0's error and drop counters are 0 and
// that the kernel printed no linuxTrouble line, notes other warnings, and
// logs every kernel line it printed (warnings and errors only: loglevel=5).
func checkLinuxHealth(t *testing.T, p *vmProc, what string) {
	t.Helper()
	reply := p.command(t, "stats", "stats ")
	counters := map[string]string{}
	for _, w := range strings.Fields(reply)[1:] {
		if k, v, ok := strings.Cut(w, "="); ok {
			counters[k] = v
		}
	}
	for _, k := range linuxErrorCounters {
		if counters[k] != "0" {
			t.Errorf("%s: eth0's %s is %q, want 0 (%s)", what, k, counters[k], reply)
		}
	}
	t.Logf("%s: eth0 %s", what, reply)
	var kernel, trouble, warnings []string
	for _, l := range strings.Split(p.con.Transcript(), "\n") {
		if !strings.HasPrefix(l, "< [") {
			continue
		}
		kernel = append(kernel, l[2:])
		switch {
		case linuxTrouble.MatchString(l):
			trouble = append(trouble, l[2:])
		case linuxWarning.MatchString(l):
			warnings = append(warnings, l[2:])
		}
	}
	if len(trouble) > 0 {
		t.Errorf("%s: the kernel reported trouble in the network path:\n%s", what, strings.Join(trouble, "\n"))
	}
	if len(warnings) > 0 {
		t.Logf("%s: NOTE: kernel warnings outside the network path (not this test's subject; see the lines below):\n%s",
			what, strings.Join(warnings, "\n"))
	}
	t.Logf("%s: %d kernel lines on the console:\n%s", what, len(kernel), strings.Join(kernel, "\n"))
}

// linuxDiag is the guest's interface counters (if it still answers),
// extra's text (when not nil), chsnap's stderr and the console transcript,
// for failure messages.
func linuxDiag(p *vmProc, extra func() string) string {
	reply, err := p.con.Command("stats", 10*time.Second)
	more := ""
	if extra != nil {
		more = extra()
	}
	return fmt.Sprintf("guest: %q (%v)\n%schsnap stderr:\n%s\nconsole:\n%s", reply, err, more, p.stderr, p.con.Transcript())
}

// archiveDevice returns the JSON of the device section with id in the
// archive at path, or a line saying why there is none.
func archiveDevice(t *testing.T, path, id string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(open %s: %v)", path, err)
	}
	defer f.Close()
	r, err := formats.NewReader(f)
	if err != nil {
		return fmt.Sprintf("(read %s: %v)", path, err)
	}
	for {
		s, err := r.Next()
		if err != nil {
			return fmt.Sprintf("(no device %s in %s: %v)", id, path, err)
		}
		if s.Kind != formats.KindDevice {
			continue
		}
		var d struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(s.Payload, &d) == nil && d.ID == id {
			return string(s.Payload)
		}
	}
}

// sendTCP connects from the namespace to addr (retrying while it refuses:
// the guest's listener restarts after each stream), writes data and closes,
// all within timeout.
func (n *testNS) sendTCP(addr string, data []byte, timeout time.Duration) error {
	end := time.Now().Add(timeout)
	var c net.Conn
	for {
		err := n.do(func() error {
			var err error
			c, err = net.DialTimeout("tcp", addr, 5*time.Second)
			return err
		})
		if err == nil {
			break
		}
		if time.Now().After(end) {
			return fmt.Errorf("connect to %s: %w", addr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	defer c.Close()
	c.SetDeadline(end)
	if k, err := c.Write(data); err != nil {
		return fmt.Errorf("send %d bytes to %s: %w after %d", len(data), addr, err, k)
	}
	if err := c.Close(); err != nil {
		return fmt.Errorf("close the stream to %s: %w", addr, err)
	}
	return nil
}

// frameStats counts frames one way through a tap.
type frameStats struct {
	n, big, max int // frames, frames over 1514 bytes, the largest
}

func (s frameStats) String() string {
	return fmt.Sprintf("%d frames, %d over 1514 bytes, largest %d", s.n, s.big, s.max)
}

// frameCounts is what a frameCapture saw since its last reset, of the
// EtherType it was reset to: out, frames the host sent into the tap (to the
// guest); in, frames the guest wrote.
type frameCounts struct {
	out, in frameStats
}

// frameCapture is an AF_PACKET socket on a tap that measures every frame
// crossing it, each way. GSO super-frames are seen whole: a frame to the
// guest before any software segmentation (so one over 1514 bytes means the
// tap took TSO), a frame from the guest as the tap built it from the
// guest's virtio header.
type frameCapture struct {
	fd   int
	stop chan struct{}
	done chan struct{}

	mu        sync.Mutex
	c         frameCounts // guarded by mu
	etherType uint16      // the frames counted (0: all); guarded by mu
}

// captureFrames starts a capture on interface name in the namespace; it
// ends at the test's cleanup.
func (n *testNS) captureFrames(t *testing.T, name string) *frameCapture {
	t.Helper()
	// Room for a burst of 64 KiB super-frames.
	fd, err := n.packetSocket(name, unix.ETH_P_ALL, 16<<20)
	if err != nil {
		t.Fatalf("frame capture on %s: %v", name, err)
	}
	c := &frameCapture{fd: fd, stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	t.Cleanup(func() {
		close(c.stop)
		<-c.done
		unix.Close(c.fd)
	})
	return c
}

func (c *frameCapture) run() {
	defer close(c.done)
	buf := make([]byte, 128<<10)
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		pfd := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd, 100); err != nil || pfd[0].Revents&unix.POLLIN == 0 {
			continue
		}
		// MSG_TRUNC: the frame's real length even if buf were short.
		k, from, err := unix.Recvfrom(c.fd, buf, unix.MSG_DONTWAIT|unix.MSG_TRUNC)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok {
			continue
		}
		c.mu.Lock()
		if c.etherType != 0 && (k < 14 || binary.BigEndian.Uint16(buf[12:]) != c.etherType) {
			c.mu.Unlock()
			continue
		}
		s := &c.c.in
		if ll.Pkttype == unix.PACKET_OUTGOING {
			s = &c.c.out
		}
		s.n++
		if k > 1514 {
			s.big++
		}
		s.max = max(s.max, k)
		c.mu.Unlock()
	}
}

// reset zeroes the counts and counts only frames of etherType from now on
// (0: all).
func (c *frameCapture) reset(etherType uint16) {
	c.mu.Lock()
	c.c = frameCounts{}
	c.etherType = etherType
	c.mu.Unlock()
}

// stats returns the counts since the last reset, after letting frames
// already queued on the socket be read.
func (c *frameCapture) stats() frameCounts {
	time.Sleep(300 * time.Millisecond)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.c
}
