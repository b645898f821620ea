package fdmap

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// netnsThread is an OS thread in a fresh network namespace of its own. Taps
// created through it live in that namespace, never the host's: the thread
// unshares before it opens anything, and the namespace disappears once the
// thread has exited and the last tap fd (which pins it) is closed.
type netnsThread struct {
	do chan func()
}

// newNetns starts the thread, or skips the test loudly when this machine
// cannot create network namespaces or taps.
func newNetns(t *testing.T) *netnsThread {
	t.Helper()
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("SKIP (tap tests not run): /dev/net/tun is missing: %v", err)
	}
	n := &netnsThread{do: make(chan func())}
	errc := make(chan error)
	go func() {
		// Never unlocked: when this goroutine returns, Go ends the
		// thread, so no goroutine ever runs in this namespace again.
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
		t.Skipf("SKIP (tap tests not run): cannot create a private network namespace (needs CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() { close(n.do) })
	return n
}

func (n *netnsThread) run(f func()) {
	done := make(chan struct{})
	n.do <- func() { defer close(done); f() }
	<-done
}

// tun opens /dev/net/tun inside the namespace and attaches it to interface
// name with flags (TUNSETIFF). The fd is a raw one without FD_CLOEXEC, as an
// fd inherited from a parent arrives; the caller closes it (or hands it to a
// Set). name "" leaves the fd unattached.
func (n *netnsThread) tun(t *testing.T, name string, flags uint16) int {
	t.Helper()
	var fd int
	var err error
	n.run(func() {
		fd, err = unix.Open("/dev/net/tun", unix.O_RDWR, 0)
		if err != nil || name == "" {
			return
		}
		var ifr *unix.Ifreq
		if ifr, err = unix.NewIfreq(name); err != nil {
			unix.Close(fd)
			return
		}
		ifr.SetUint16(flags)
		if err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
		}
	})
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		t.Skipf("SKIP (tap tests not run): creating tap %s needs CAP_NET_ADMIN: %v", name, err)
	}
	if err != nil {
		t.Fatalf("create tun/tap %q flags %s: %v", name, FlagString(uint32(flags)), err)
	}
	return fd
}

// macvtap creates a veth pair and a macvtap on it inside the namespace and
// opens its /dev/tapN (raw, without FD_CLOEXEC). It skips the calling test
// when the kernel has no veth or macvtap.
func (n *netnsThread) macvtap(t *testing.T, name string) int {
	t.Helper()
	var fd int
	var err error
	var skip string
	n.run(func() {
		var h *netlink.Handle
		if h, err = netlink.NewHandle(); err != nil {
			return
		}
		defer h.Delete()
		lower := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name + "-v0"}, PeerName: name + "-v1"}
		if err = h.LinkAdd(lower); err != nil {
			skip = fmt.Sprintf("no veth here: %v", err)
			return
		}
		var parent netlink.Link
		if parent, err = h.LinkByName(lower.Name); err != nil {
			return
		}
		// NewLinkAttrs, not a bare literal: a zero TxQLen would give the
		// macvtap a queue of 0 frames, which drops all it is sent.
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.ParentIndex = name, parent.Attrs().Index
		mv := &netlink.Macvtap{Macvlan: netlink.Macvlan{
			LinkAttrs: attrs,
			Mode:      netlink.MACVLAN_MODE_BRIDGE,
		}}
		if err = h.LinkAdd(mv); err != nil {
			skip = fmt.Sprintf("no macvtap here: %v", err)
			return
		}
		var link netlink.Link
		if link, err = h.LinkByName(name); err != nil {
			return
		}
		// The kernel names the character device after the ifindex;
		// devtmpfs makes the node before RTM_NEWLINK returns.
		dev := fmt.Sprintf("/dev/tap%d", link.Attrs().Index)
		if fd, err = unix.Open(dev, unix.O_RDWR, 0); err != nil {
			skip = fmt.Sprintf("cannot open %s: %v", dev, err)
		}
	})
	if skip != "" {
		t.Skipf("SKIP (macvtap case not run): %s", skip)
	}
	if err != nil {
		t.Fatalf("create macvtap %s: %v", name, err)
	}
	return fd
}

// countFDs counts this process's open descriptors.
func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("list /proc/self/fd: %v", err)
	}
	return len(ents)
}

// checkNoLeak fails the test if the descriptor count differs from before.
func checkNoLeak(t *testing.T, before int) {
	t.Helper()
	if after := countFDs(t); after != before {
		t.Errorf("open fds: %d after, %d before; leaked or double-closed\n%s", after, before, listFDs())
	}
}

func listFDs() string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var b strings.Builder
	for _, e := range ents {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		fmt.Fprintf(&b, "  %s -> %s\n", e.Name(), target)
	}
	return b.String()
}

// isOpen reports whether descriptor number fd is open.
func isOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}

// rawFile opens a regular file as a raw fd without FD_CLOEXEC.
func rawFile(t *testing.T) int {
	t.Helper()
	fd, err := unix.Open(t.TempDir()+"/disk.img", unix.O_RDWR|unix.O_CREAT, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// rawPipe returns a pipe's read end and write end as raw fds.
func rawPipe(t *testing.T) (int, int) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], 0); err != nil {
		t.Fatal(err)
	}
	return p[0], p[1]
}

// warmUp makes the Go runtime open the descriptors it opens lazily (the
// netpoller's epoll fd and eventfd), so they do not show up as leaks.
func warmUp(t *testing.T) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	w.Close()
}
