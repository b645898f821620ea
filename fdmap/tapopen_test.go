package fdmap

import (
	"fmt"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestOpenTapInNetns opens a tap by name inside a private namespace through
// its /proc path, as `chsnap run --net tap=NAME --netns PATH` does, then
// configures its header size and offloads and makes it pollable.
func TestOpenTapInNetns(t *testing.T) {
	n := newNetns(t)
	var tid int
	n.run(func() { tid = unix.Gettid() })
	path := fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), tid)

	warmUp(t)
	before := countFDs(t)
	f, err := OpenTap("chs-open0", path)
	if err != nil {
		t.Fatalf("OpenTap: %v", err)
	}
	info, err := InspectTap(f)
	if err != nil {
		t.Fatalf("InspectTap: %v", err)
	}
	if info.Name != "chs-open0" || info.Kind != KindTap || info.Flags&(FlagTAP|FlagNoPI|FlagVnetHdr) != FlagTAP|FlagNoPI|FlagVnetHdr {
		t.Errorf("InspectTap = %+v (%s), want tap chs-open0 with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR", info, FlagString(info.Flags))
	}
	// The tap lives in the private namespace, not in ours.
	if _, err := os.Stat("/sys/class/net/chs-open0"); err == nil {
		t.Errorf("tap chs-open0 appeared in the test's own namespace")
	}
	var lerr error
	n.run(func() { _, lerr = netlink.LinkByName("chs-open0") })
	if lerr != nil {
		t.Errorf("tap chs-open0 is not in the private namespace: %v", lerr)
	}
	if err := ConfigureTap(f, VnetHdrLen, OffloadCsum|OffloadTSO4|OffloadTSO6); err != nil {
		t.Errorf("ConfigureTap: %v", err)
	}
	p, err := Pollable(f)
	if err != nil {
		t.Fatalf("Pollable: %v", err)
	}
	rc, _ := p.SyscallConn()
	var fl int
	rc.Control(func(fd uintptr) { fl, _ = unix.FcntlInt(fd, unix.F_GETFL, 0) })
	if fl&unix.O_NONBLOCK == 0 {
		t.Errorf("Pollable file is blocking")
	}
	p.Close()
	checkNoLeak(t, before)

	if _, err := OpenTap("", path); err == nil {
		t.Errorf("OpenTap with an empty name succeeded")
	}
	if _, err := OpenTap("chs-open1", "/nonexistent/ns"); err == nil {
		t.Errorf("OpenTap in a missing namespace succeeded")
	}
	checkNoLeak(t, before)
}

// TestInspectTapWithoutVnetHdr accepts a tap opened without IFF_VNET_HDR and
// refuses a regular file.
func TestInspectTapWithoutVnetHdr(t *testing.T) {
	n := newNetns(t)
	fd := n.tun(t, "chs-plain0", uint16(FlagTAP|FlagNoPI))
	f := os.NewFile(uintptr(fd), "plain")
	defer f.Close()
	info, err := InspectTap(f)
	if err != nil {
		t.Fatalf("InspectTap: %v", err)
	}
	if info.Flags&FlagVnetHdr != 0 {
		t.Errorf("flags %s report IFF_VNET_HDR", FlagString(info.Flags))
	}
	rf := os.NewFile(uintptr(rawFile(t)), "file")
	defer rf.Close()
	if _, err := InspectTap(rf); err == nil {
		t.Errorf("InspectTap accepted a regular file")
	}
}
