package fdmap

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// tunFilterLen returns the length of the socket filter program a tap last
// had attached with TUNATTACHFILTER (TUNGETFILTER copies struct sock_fprog,
// whose len is 0 until a program is attached).
func tunFilterLen(fd int) (int, error) {
	var prog unix.SockFprog
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNGETFILTER, uintptr(unsafe.Pointer(&prog)))
	if errno != 0 {
		return 0, errno
	}
	return int(prog.Len), nil
}

// tunAttachFilter attaches insns as the tap's socket filter
// (TUNATTACHFILTER). With no instructions it only resets the program the
// tap remembers and fails with EINVAL, attaching nothing.
func tunAttachFilter(fd int, insns []unix.SockFilter) error {
	prog := unix.SockFprog{Len: uint16(len(insns))}
	if len(insns) > 0 {
		prog.Filter = &insns[0]
	}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNATTACHFILTER, uintptr(unsafe.Pointer(&prog)))
	// The kernel copies the program during the call; keep it reachable
	// until then (prog.Filter is a pointer the GC sees, but be explicit).
	runtime.KeepAlive(insns)
	if errno != 0 {
		return errno
	}
	return nil
}
