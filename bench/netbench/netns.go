package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The addresses on the tap's link: the host side and the guest.
var (
	hostAddr  = netip.MustParsePrefix("10.0.0.1/24")
	guestAddr = netip.MustParsePrefix("10.0.0.2/24")
)

// echoPort is the guest's UDP echo port.
const echoPort = 7

// tapName is the tap's name inside each private namespace.
const tapName = "nb0"

// netEnv is one VMM's private network: a fresh network namespace holding a
// tap with the host side's address, and a UDP socket in that namespace
// connected to the guest's echo port. Nothing in it touches the namespace
// netbench was started in. The namespace lives as long as any of the fds
// that pin it (tap, socket, netlink handle, ns handle).
type netEnv struct {
	tap  *os.File // the tap, handed to the VMM
	sock *udpSock
	nl   *netlink.Handle // netlink in the namespace, for the neighbour table
	ns   netns.NsHandle
	link int // the tap's interface index
}

// newNetEnv creates the namespace, the tap (flags IFF_TAP|IFF_NO_PI|
// IFF_VNET_HDR) and the socket on a thread of its own, which ends with
// the namespace still current (Go then discards the thread), so no other
// goroutine ever runs in it.
func newNetEnv() (*netEnv, error) {
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return nil, fmt.Errorf("no /dev/net/tun (is the tun module loaded?): %w", err)
	}
	type result struct {
		env *netEnv
		err error
	}
	done := make(chan result)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		env, err := setupNetns()
		done <- result{env, err}
	}()
	r := <-done
	return r.env, r.err
}

// setupNetns runs on a locked thread and leaves it in the new namespace.
func setupNetns() (_ *netEnv, err error) {
	ns, err := netns.New()
	if err != nil {
		return nil, fmt.Errorf("new network namespace (needs CAP_SYS_ADMIN): %w", err)
	}
	env := &netEnv{ns: ns}
	defer func() {
		if err != nil {
			env.close()
		}
	}()
	if env.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
		return nil, fmt.Errorf("netlink in the new namespace: %w", err)
	}
	if env.tap, err = openTap(tapName, unix.IFF_TAP|unix.IFF_NO_PI|unix.IFF_VNET_HDR); err != nil {
		return nil, err
	}
	lo, err := env.nl.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("loopback in the new namespace: %w", err)
	}
	if err := env.nl.LinkSetUp(lo); err != nil {
		return nil, fmt.Errorf("set lo up: %w", err)
	}
	link, err := env.nl.LinkByName(tapName)
	if err != nil {
		return nil, fmt.Errorf("tap %s: %w", tapName, err)
	}
	env.link = link.Attrs().Index
	// No IPv6 link-local address: no DAD, router or listener traffic
	// reaching the guest during a measurement. Best effort (a kernel
	// without IPv6 has none of it anyway).
	_ = env.nl.LinkSetIP6AddrGenMode(link, 1 /* IN6_ADDR_GEN_MODE_NONE */)
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: hostAddr.Addr().AsSlice(), Mask: net.CIDRMask(hostAddr.Bits(), 32)}}
	if err := env.nl.AddrAdd(link, addr); err != nil {
		return nil, fmt.Errorf("address %v on tap %s: %w", hostAddr, tapName, err)
	}
	if err := env.nl.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("set tap %s up: %w", tapName, err)
	}
	env.sock, err = dialUDP(netip.AddrPortFrom(hostAddr.Addr(), 0), netip.AddrPortFrom(guestAddr.Addr(), echoPort))
	if err != nil {
		return nil, err
	}
	return env, nil
}

// openTap creates tap name in the calling thread's namespace.
func openTap(name string, flags uint16) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap name %q: %w", name, err)
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create tap %s (TUNSETIFF): %w", name, err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}

// guestNeighbour describes the host's neighbour entry for the guest's
// address ("REACHABLE", "FAILED", ... or "none").
func (env *netEnv) guestNeighbour() string {
	neighs, err := env.nl.NeighList(env.link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Sprintf("unknown (%v)", err)
	}
	for _, n := range neighs {
		if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == guestAddr.Addr() {
			return neighState(n.State)
		}
	}
	return "none"
}

// tapStats describes the tap's frame counters from the host side.
func (env *netEnv) tapStats() string {
	link, err := env.nl.LinkByIndex(env.link)
	if err != nil || link.Attrs().Statistics == nil {
		return fmt.Sprintf("tap counters unknown (%v)", err)
	}
	st := link.Attrs().Statistics
	return fmt.Sprintf("tap %s sent %d frames to the VMM (%d dropped), got %d from it", tapName, st.TxPackets, st.TxDropped, st.RxPackets)
}

// resolved reports whether the neighbour state names a resolved address.
func resolved(state string) bool {
	for _, s := range []string{"REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT", "NOARP"} {
		if strings.Contains(state, s) {
			return true
		}
	}
	return false
}

func neighState(s int) string {
	names := []struct {
		bit  int
		name string
	}{
		{netlink.NUD_INCOMPLETE, "INCOMPLETE"}, {netlink.NUD_REACHABLE, "REACHABLE"},
		{netlink.NUD_STALE, "STALE"}, {netlink.NUD_DELAY, "DELAY"}, {netlink.NUD_PROBE, "PROBE"},
		{netlink.NUD_FAILED, "FAILED"}, {netlink.NUD_NOARP, "NOARP"}, {netlink.NUD_PERMANENT, "PERMANENT"},
	}
	var out []string
	for _, n := range names {
		if s&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	if len(out) == 0 {
		return "NONE"
	}
	return strings.Join(out, "|")
}

// close releases every fd; the namespace goes with the last one (a VMM
// that still holds the tap keeps it).
func (env *netEnv) close() error {
	var errs []error
	if env.sock != nil {
		errs = append(errs, env.sock.close())
	}
	if env.tap != nil {
		errs = append(errs, env.tap.Close())
	}
	if env.nl != nil {
		env.nl.Close()
	}
	if env.ns.IsOpen() {
		errs = append(errs, env.ns.Close())
	}
	return errors.Join(errs...)
}
