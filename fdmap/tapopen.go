package fdmap

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Offload bits of TUNSETOFFLOAD (linux/if_tun.h): which offloads the reader
// of a tap (the guest) accepts in frames the kernel hands it.
const (
	OffloadCsum   uint32 = 0x01 // TUN_F_CSUM: partial checksums
	OffloadTSO4   uint32 = 0x02 // TUN_F_TSO4
	OffloadTSO6   uint32 = 0x04 // TUN_F_TSO6
	OffloadTSOECN uint32 = 0x08 // TUN_F_TSO_ECN
)

// VnetHdrLen is the virtio_net_hdr size chsnap uses on taps with
// IFF_VNET_HDR: the virtio 1.x header, num_buffers included.
const VnetHdrLen = 12

// OpenTap opens tap interface name in tap mode with IFF_NO_PI and
// IFF_VNET_HDR (creating it if it does not exist, which needs
// CAP_NET_ADMIN), inside the network namespace at netnsPath (a file such as
// /var/run/netns/NAME or /proc/PID/ns/net) or, with netnsPath "", in
// chsnap's own. The namespace is entered by one locked OS thread for the
// length of the open and left again; the rest of the process never changes
// namespace. The returned file is non-blocking and close-on-exec, and the
// caller owns it.
func OpenTap(name, netnsPath string) (*os.File, error) {
	if name == "" || len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("%w: tap name %q must be 1-%d characters", ErrNotTap, name, unix.IFNAMSIZ-1)
	}
	var (
		fd  int
		err error
	)
	if netnsPath == "" {
		fd, err = openTapHere(name)
	} else {
		fd, err = inNetns(netnsPath, func() (int, error) { return openTapHere(name) })
	}
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "tap "+name), nil
}

// openTapHere opens and attaches the tap in the calling thread's namespace.
func openTapHere(name string) (int, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("tap %s: open /dev/net/tun: %w", name, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("tap %s: %w", name, err)
	}
	ifr.SetUint16(uint16(FlagTAP | FlagNoPI | FlagVnetHdr))
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		switch {
		case errors.Is(err, unix.EPERM):
			return -1, fmt.Errorf("tap %s: TUNSETIFF: %w (creating or attaching a tap needs CAP_NET_ADMIN, or a persistent tap owned by this user)", name, err)
		case errors.Is(err, unix.EBUSY):
			return -1, fmt.Errorf("tap %s: TUNSETIFF: %w (another process holds it, or it is a single-queue tap already attached)", name, err)
		case errors.Is(err, unix.EINVAL):
			return -1, fmt.Errorf("tap %s: TUNSETIFF: %w (is %s a tun device, not a tap?)", name, err, name)
		}
		return -1, fmt.Errorf("tap %s: TUNSETIFF: %w", name, err)
	}
	return fd, nil
}

// inNetns runs f on a locked OS thread inside the network namespace at path
// and returns the thread to its namespace afterwards. If the thread cannot
// be returned, it is left locked so that Go retires it rather than reuse it.
func inNetns(path string, f func() (int, error)) (int, error) {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return -1, fmt.Errorf("network namespace %s: %w", path, err)
	}
	defer target.Close()
	type result struct {
		fd  int
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{-1, fmt.Errorf("current network namespace: %w", err)}
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			done <- result{-1, fmt.Errorf("enter network namespace %s: %w", path, err)}
			return
		}
		fd, ferr := f()
		if err := netns.Set(orig); err != nil {
			// Stay locked: the goroutine's exit then ends this thread.
			done <- result{fd, ferr}
			return
		}
		runtime.UnlockOSThread()
		done <- result{fd, ferr}
	}()
	r := <-done
	return r.fd, r.err
}

// Pollable returns a file for the same open tap as f that Go's poller
// drives: non-blocking, so that reads can be interrupted with a deadline. It
// consumes f (closing it) and the caller owns the result. The O_NONBLOCK flag
// belongs to the open file description, so a process sharing it (the one
// that passed the fd) sees it too, as with any VMM that polls a tap.
func Pollable(f *os.File) (*os.File, error) {
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	var nfd int
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 3)
		if derr == nil {
			if derr = unix.SetNonblock(nfd, true); derr != nil {
				unix.Close(nfd)
			}
		}
	}); err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	if derr != nil {
		return nil, fmt.Errorf("%s: make non-blocking: %w", f.Name(), derr)
	}
	return os.NewFile(uintptr(nfd), f.Name()), nil
}

// ConfigureTap sets the virtio_net_hdr length a tap with IFF_VNET_HDR uses
// (TUNSETVNETHDRSZ) and the offloads its reader accepts (TUNSETOFFLOAD,
// Offload… bits). It works on /dev/net/tun taps and on macvtap.
func ConfigureTap(f *os.File, hdrLen int, offloads uint32) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("%s: %w", f.Name(), err)
	}
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		if cerr = unix.IoctlSetPointerInt(int(fd), unix.TUNSETVNETHDRSZ, hdrLen); cerr != nil {
			cerr = fmt.Errorf("TUNSETVNETHDRSZ %d: %w", hdrLen, cerr)
			return
		}
		if cerr = unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD, int(offloads)); cerr != nil {
			cerr = fmt.Errorf("TUNSETOFFLOAD %#x: %w", offloads, cerr)
		}
	}); err != nil {
		return fmt.Errorf("%s: %w", f.Name(), err)
	}
	if cerr != nil {
		return fmt.Errorf("%s: %w", f.Name(), cerr)
	}
	return nil
}

// InspectTap checks that f is a tap descriptor a virtio-net device can use
// (as CheckTap, but accepting IFF_VNET_HDR either way) and reports it.
func InspectTap(f *os.File) (TapInfo, error) {
	return checkTap(f, 0, false)
}
