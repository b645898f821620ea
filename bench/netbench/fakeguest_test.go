package main

import (
	"encoding/binary"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// vnetHdrLen is the size of struct virtio_net_hdr, which a tap opened with
// IFF_VNET_HDR puts before every frame (TUNSETVNETHDRSZ not used).
const vnetHdrLen = 10

// fakeGuest stands in for the test guest on the tap: it answers ARP for
// 10.0.0.2 and echoes UDP to port 7, like testdata/guest does.
type fakeGuest struct {
	tap        *os.File
	noARP      bool              // ignore ARP requests
	noEcho     bool              // ignore UDP
	drop       func(uint64) bool // drop the echo request with this sequence number
	stop, done chan struct{}
}

var fakeMAC = []byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

// testEnv makes a private namespace with its tap, or skips the test when
// this machine cannot.
func testEnv(t *testing.T) *netEnv {
	t.Helper()
	env, err := newNetEnv()
	if err != nil {
		if strings.Contains(err.Error(), "tun") || strings.Contains(err.Error(), "namespace") {
			t.Skipf("SKIP (netns tests not run): %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { env.close() })
	return env
}

func (g *fakeGuest) start(t *testing.T) {
	g.stop, g.done = make(chan struct{}), make(chan struct{})
	go g.serve()
	t.Cleanup(func() { close(g.stop); <-g.done })
}

func (g *fakeGuest) serve() {
	defer close(g.done)
	fd := int(g.tap.Fd())
	buf := make([]byte, 65536)
	for {
		select {
		case <-g.stop:
			return
		default:
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(pfd, 20); err != nil || n == 0 {
			continue
		}
		n, err := unix.Read(fd, buf)
		if err != nil || n < vnetHdrLen+14 {
			continue
		}
		if reply := g.answer(buf[vnetHdrLen:n]); reply != nil {
			unix.Write(fd, append(make([]byte, vnetHdrLen), reply...))
		}
	}
}

// answer returns the reply to one Ethernet frame, or nil.
func (g *fakeGuest) answer(f []byte) []byte {
	ip := guestAddr.Addr().As4()
	switch binary.BigEndian.Uint16(f[12:]) {
	case 0x0806: // ARP
		a := f[14:]
		if g.noARP || len(a) < 28 || binary.BigEndian.Uint16(a[6:]) != 1 || string(a[24:28]) != string(ip[:]) {
			return nil
		}
		r := make([]byte, 42)
		copy(r[0:], a[8:14]) // to the asker
		copy(r[6:], fakeMAC)
		copy(r[12:], f[12:14])
		copy(r[14:], a[:6]) // htype, ptype, hlen, plen
		binary.BigEndian.PutUint16(r[20:], 2)
		copy(r[22:], fakeMAC)
		copy(r[28:], ip[:])
		copy(r[32:], a[8:18]) // the asker's MAC and IP
		return r
	case 0x0800: // IPv4
		h := f[14:]
		if g.noEcho || len(h) < 20 || h[9] != 17 || string(h[16:20]) != string(ip[:]) {
			return nil
		}
		ihl := int(h[0]&15) * 4
		if len(h) < ihl+8 || binary.BigEndian.Uint16(h[ihl+2:]) != echoPort {
			return nil
		}
		payload := h[ihl+8:]
		if g.drop != nil && len(payload) >= minPayload && g.drop(binary.BigEndian.Uint64(payload[8:])) {
			return nil
		}
		r := append([]byte(nil), f...)
		copy(r[0:6], f[6:12])
		copy(r[6:12], fakeMAC)
		rh := r[14:]
		copy(rh[12:16], h[16:20])
		copy(rh[16:20], h[12:16])
		rh[10], rh[11] = 0, 0
		binary.BigEndian.PutUint16(rh[10:], ipChecksum(rh[:ihl]))
		copy(rh[ihl:ihl+2], h[ihl+2:ihl+4])
		copy(rh[ihl+2:ihl+4], h[ihl:ihl+2])
		rh[ihl+6], rh[ihl+7] = 0, 0 // no UDP checksum
		return r
	}
	return nil
}

func ipChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// TestEnvPrivate checks that the tap and its address exist only in the
// private namespace.
func TestEnvPrivate(t *testing.T) {
	env := testEnv(t)
	if _, err := netlink.LinkByName(tapName); err == nil {
		t.Fatalf("tap %s shows in the test's own namespace", tapName)
	}
	link, err := env.nl.LinkByName(tapName)
	if err != nil {
		t.Fatalf("tap %s not in the private namespace: %v", tapName, err)
	}
	addrs, err := env.nl.AddrList(link, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != hostAddr.String() {
		t.Fatalf("tap addresses %v (%v), want %v", addrs, err, hostAddr)
	}
	if link.Attrs().Flags&(1<<0) == 0 { // net.FlagUp
		t.Errorf("tap %s is not up", tapName)
	}
}

// TestEchoThroughTap runs the probe, the latency and the rate measurement
// against the fake guest.
func TestEchoThroughTap(t *testing.T) {
	env := testEnv(t)
	g := &fakeGuest{tap: env.tap}
	g.start(t)
	e := newEchoer(env.sock, 64)
	if err := waitEcho(env, e, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if s := env.guestNeighbour(); !resolved(s) {
		t.Errorf("guest neighbour %s after an echo, want resolved", s)
	}
	lat, err := e.measureLatency(200, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(lat.RTTs) != 200 || lat.Lost != 0 {
		t.Fatalf("latency: %d round trips, %d lost; want 200, 0", len(lat.RTTs), lat.Lost)
	}
	if p := percentile(lat.RTTs, 50); p <= 0 || p > time.Second {
		t.Errorf("p50 %v out of range", p)
	}
	r, err := e.measureRate(8, 300*time.Millisecond, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Replies == 0 || r.Lost != 0 || r.Sent != r.Replies+r.Drained+r.Lost {
		t.Errorf("rate: %+v; want replies, none lost, sent = replies+drained+lost", r)
	}
	if r.Drained > 8 {
		t.Errorf("rate: %d drained, more than the window of 8", r.Drained)
	}
	if e.bad != 0 {
		t.Errorf("%d bad echoes", e.bad)
	}
}

// TestLossCounted drops every tenth request and checks both measurements
// count exactly those.
func TestLossCounted(t *testing.T) {
	env := testEnv(t)
	var mu sync.Mutex
	dropped := 0
	g := &fakeGuest{tap: env.tap, drop: func(seq uint64) bool {
		if seq%10 != 0 {
			return false
		}
		mu.Lock()
		dropped++
		mu.Unlock()
		return true
	}}
	g.start(t)
	e := newEchoer(env.sock, 64)
	if err := waitEcho(env, e, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	e.seq = 0 // requests 1..100 follow: 10 of them dropped
	lat, err := e.measureLatency(100, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if lat.Lost != 10 || len(lat.RTTs) != 90 {
		t.Fatalf("latency: %d lost, %d answered; want 10, 90", lat.Lost, len(lat.RTTs))
	}
	r, err := e.measureRate(4, 300*time.Millisecond, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent != r.Replies+r.Drained+r.Lost {
		t.Errorf("rate: %+v; sent != replies+drained+lost", r)
	}
	// Requests seq%10 == 0 among those the rate run sent were dropped; an
	// echo slower than the loss timeout (a loaded host) counts lost and
	// then late.
	want := 0
	for s := uint64(101); s <= uint64(100+r.Sent); s++ {
		if s%10 == 0 {
			want++
		}
	}
	if r.Lost-r.Late != want {
		t.Errorf("rate: %d lost (%d of them late), want %d (every tenth of %d sent)", r.Lost, r.Late, want, r.Sent)
	}
}

// TestNoARP checks the error when the guest never answers ARP.
func TestNoARP(t *testing.T) {
	env := testEnv(t)
	g := &fakeGuest{tap: env.tap, noARP: true}
	g.start(t)
	err := waitEcho(env, newEchoer(env.sock, 64), time.Second)
	if err == nil || !strings.Contains(err.Error(), "did not answer ARP for 10.0.0.2 within 1s") {
		t.Fatalf("waitEcho = %v, want the ARP error", err)
	}
}

// TestNoEcho checks the error when ARP is answered but UDP is not.
func TestNoEcho(t *testing.T) {
	env := testEnv(t)
	g := &fakeGuest{tap: env.tap, noEcho: true}
	g.start(t)
	err := waitEcho(env, newEchoer(env.sock, 64), time.Second)
	if err == nil || !strings.Contains(err.Error(), "answered ARP but no UDP echo on 10.0.0.2 port 7") {
		t.Fatalf("waitEcho = %v, want the no-echo error", err)
	}
}
