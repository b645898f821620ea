package fdmap

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNotTap is returned for a descriptor that cannot back a virtio-net
// device: not a tun/tap character device, a tun (layer 3) device, or a tap
// whose flags do not match what the snapshot recorded.
var ErrNotTap = errors.New("fdmap: not a usable tap device")

// Interface flags reported by TUNGETIFF (linux/if_tun.h). They are the IFF_*
// values from golang.org/x/sys/unix, restated as uint32 because the archive
// records flags in a uint32.
const (
	FlagTUN        uint32 = unix.IFF_TUN         // layer-3 tun: refused
	FlagTAP        uint32 = unix.IFF_TAP         // layer-2 tap: required
	FlagNoPI       uint32 = unix.IFF_NO_PI       // no packet-information prefix: required
	FlagVnetHdr    uint32 = unix.IFF_VNET_HDR    // virtio_net_hdr before each frame
	FlagMultiQueue uint32 = unix.IFF_MULTI_QUEUE // one fd per queue pair
)

// tunMajor and tunMinor are the device number of /dev/net/tun (misc device
// 10:200, Documentation/admin-guide/devices.txt). macvtap and ipvtap
// devices (/dev/tapN) have a dynamically allocated major instead.
const (
	tunMajor = 10
	tunMinor = 200
)

// TapKind says which driver serves a tap descriptor.
type TapKind string

// The kinds of tap descriptor CheckTap accepts.
const (
	// KindTap is a tap opened through /dev/net/tun (drivers/net/tun.c).
	KindTap TapKind = "tap"
	// KindMacvtap is a /dev/tapN descriptor of a macvtap or ipvtap
	// interface (drivers/net/tap.c). The kernel opens these with
	// IFF_TAP|IFF_NO_PI|IFF_VNET_HDR already set, and answers TUNGETIFF
	// with the macvtap interface's name.
	KindMacvtap TapKind = "macvtap"
)

// TapInfo describes a descriptor that CheckTap accepted.
type TapInfo struct {
	// Name is the interface name TUNGETIFF reported. It may differ from
	// the name at snapshot time: restoring onto another tap is allowed.
	Name string
	// Flags are the IFF_* flags TUNGETIFF reported.
	Flags uint32
	// Kind says whether this is a /dev/net/tun tap or a macvtap/ipvtap.
	Kind TapKind
}

// CheckTap checks that f is a tap descriptor a virtio-net device can use in
// place of the one recorded with wantFlags (the IFF_* flags TUNGETIFF gave at
// snapshot time): a character device, attached to an interface, in tap mode
// (IFF_TAP, not IFF_TUN), without packet information (IFF_NO_PI), and with
// IFF_VNET_HDR set exactly when wantFlags has it, because the device's frame
// layout depends on it. Other flags (IFF_PERSIST, IFF_MULTI_QUEUE, ...) and
// the interface name are reported but not compared.
//
// CheckTap borrows f: it neither closes it nor changes its blocking mode.
// Errors wrap ErrNotTap (or the errno for a descriptor that cannot be
// examined) and name the descriptor number, as "fd 7 is a regular file, not
// a tap device".
func CheckTap(f *os.File, wantFlags uint32) (TapInfo, error) {
	return checkTap(f, wantFlags, true)
}

// checkTap is CheckTap; with compareVnet false, IFF_VNET_HDR may be either.
func checkTap(f *os.File, wantFlags uint32, compareVnet bool) (TapInfo, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return TapInfo{}, fmt.Errorf("%w: %s: %w", ErrBadFD, f.Name(), err)
	}
	var info TapInfo
	var cerr error
	if err := rc.Control(func(fd uintptr) { info, cerr = checkTapFD(int(fd), wantFlags, compareVnet) }); err != nil {
		return TapInfo{}, fmt.Errorf("%w: %s: %w", ErrBadFD, f.Name(), err)
	}
	return info, cerr
}

func checkTapFD(fd int, wantFlags uint32, compareVnet bool) (TapInfo, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return TapInfo{}, fmt.Errorf("%w: fstat fd %d: %w", ErrBadFD, fd, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR {
		return TapInfo{}, fmt.Errorf("%w: fd %d is %s, not a tap device", ErrNotTap, fd, fileKind(st.Mode))
	}
	major, minor := unix.Major(st.Rdev), unix.Minor(st.Rdev)
	kind := KindMacvtap
	if major == tunMajor && minor == tunMinor {
		kind = KindTap
	}
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return TapInfo{}, fmt.Errorf("fd %d: %w", fd, err)
	}
	if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
		switch {
		case kind == KindTap && errors.Is(err, unix.EBADFD):
			return TapInfo{}, fmt.Errorf("%w: fd %d is /dev/net/tun not attached to an interface (no TUNSETIFF, or a detached queue): %w", ErrNotTap, fd, err)
		case errors.Is(err, unix.ENOLINK):
			return TapInfo{}, fmt.Errorf("%w: fd %d is a macvtap whose interface is gone: %w", ErrNotTap, fd, err)
		default:
			return TapInfo{}, fmt.Errorf("%w: fd %d is character device %d:%d, not a tap device (TUNGETIFF: %w)", ErrNotTap, fd, major, minor, err)
		}
	}
	info := TapInfo{Name: ifr.Name(), Flags: uint32(ifr.Uint16()), Kind: kind}
	if info.Flags&FlagTUN != 0 || info.Flags&FlagTAP == 0 {
		return info, fmt.Errorf("%w: fd %d is tun device %s (%s), not a tap device", ErrNotTap, fd, info.Name, FlagString(info.Flags))
	}
	if kind == KindTap {
		// tun.c ORs IFF_NOFILTER (no socket filter attached) into
		// TUNGETIFF's answer, and IFF_NOFILTER == IFF_NO_PI == 0x1000:
		// the bit alone cannot tell a tap with packet information apart.
		// tap.c (macvtap) reports its real flags.
		if info.Flags&unix.IFF_DETACH_QUEUE != 0 {
			return info, fmt.Errorf("%w: fd %d is a detached queue of tap %s; attach it (TUNSETQUEUE) first", ErrNotTap, fd, info.Name)
		}
		noPI, err := tunNoPI(fd, info.Flags)
		if err != nil {
			return info, fmt.Errorf("%w: fd %d is tap %s, but whether it has IFF_NO_PI cannot be told: %w", ErrNotTap, fd, info.Name, err)
		}
		info.Flags &^= FlagNoPI
		if noPI {
			info.Flags |= FlagNoPI
		}
	}
	if info.Flags&FlagNoPI == 0 {
		return info, fmt.Errorf("%w: fd %d is tap %s without IFF_NO_PI (%s); open it with IFF_NO_PI", ErrNotTap, fd, info.Name, FlagString(info.Flags))
	}
	switch have, want := info.Flags&FlagVnetHdr != 0, wantFlags&FlagVnetHdr != 0; {
	case !compareVnet:
	case want && !have:
		return info, fmt.Errorf("%w: fd %d is tap %s without IFF_VNET_HDR, which the snapshot recorded (%s)", ErrNotTap, fd, info.Name, FlagString(info.Flags))
	case have && !want:
		return info, fmt.Errorf("%w: fd %d is tap %s with IFF_VNET_HDR, which the snapshot did not record (%s)", ErrNotTap, fd, info.Name, FlagString(info.Flags))
	}
	return info, nil
}

// acceptAll is a classic BPF program that passes every packet whole
// (return 0xffffffff: sk_filter_trim_cap trims to at most that length).
var acceptAll = []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0xffffffff}}

// tunNoPI tells whether a /dev/net/tun tap has IFF_NO_PI, given the flags
// TUNGETIFF returned. When the shared bit is clear, a filter is attached and
// the bit means IFF_NO_PI alone. When it is set and the tap never had a
// filter (TUNGETFILTER's length is 0), tunNoPI attaches a pass-everything
// filter for the length of one TUNGETIFF, detaches it, and resets the
// remembered program, so the tap is left as it was found. A tap that has
// had a filter is trusted as reported: probing it would replace someone's
// packet filter.
func tunNoPI(fd int, flags uint32) (bool, error) {
	if flags&FlagNoPI == 0 {
		return false, nil
	}
	n, err := tunFilterLen(fd)
	if err != nil {
		return false, fmt.Errorf("TUNGETFILTER: %w", err)
	}
	if n != 0 {
		return true, nil
	}
	if err := tunAttachFilter(fd, acceptAll); err != nil {
		return false, fmt.Errorf("TUNATTACHFILTER: %w", err)
	}
	ifr, err := unix.NewIfreq("")
	if err == nil {
		err = unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr)
	}
	derr := unix.IoctlSetInt(fd, unix.TUNDETACHFILTER, 0)
	// Attaching an empty program fails with EINVAL after the kernel has
	// copied it over the remembered one: that forgets our probe (whose
	// user-space pointer tun.c would otherwise reuse for a new queue).
	if rerr := tunAttachFilter(fd, nil); rerr != nil && rerr != unix.EINVAL {
		return false, fmt.Errorf("reset probe filter (TUNATTACHFILTER): %w", rerr)
	}
	if err != nil {
		return false, fmt.Errorf("TUNGETIFF with a probe filter: %w", err)
	}
	if derr != nil {
		return false, fmt.Errorf("TUNDETACHFILTER: %w", derr)
	}
	return uint32(ifr.Uint16())&FlagNoPI != 0, nil
}

// fileKind names the file type in st_mode for error messages.
func fileKind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "a regular file"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFIFO:
		return "a pipe"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFLNK:
		return "a symbolic link"
	case 0:
		return "an anonymous inode"
	}
	return fmt.Sprintf("file type %#o", mode&unix.S_IFMT)
}

// FlagString renders IFF_* tun flags as "IFF_TAP|IFF_NO_PI|IFF_VNET_HDR".
func FlagString(flags uint32) string {
	names := []struct {
		bit  uint32
		name string
	}{
		{FlagTUN, "IFF_TUN"},
		{FlagTAP, "IFF_TAP"},
		{FlagNoPI, "IFF_NO_PI"},
		{unix.IFF_ONE_QUEUE, "IFF_ONE_QUEUE"},
		{FlagVnetHdr, "IFF_VNET_HDR"},
		{unix.IFF_TUN_EXCL, "IFF_TUN_EXCL"},
		{unix.IFF_NAPI, "IFF_NAPI"},
		{unix.IFF_NAPI_FRAGS, "IFF_NAPI_FRAGS"},
		{FlagMultiQueue, "IFF_MULTI_QUEUE"},
		{unix.IFF_PERSIST, "IFF_PERSIST"},
	}
	var parts []string
	for _, n := range names {
		if flags&n.bit != 0 {
			parts = append(parts, n.name)
			flags &^= n.bit
		}
	}
	if flags != 0 {
		parts = append(parts, fmt.Sprintf("%#x", flags))
	}
	if len(parts) == 0 {
		return "no flags"
	}
	return strings.Join(parts, "|")
}
