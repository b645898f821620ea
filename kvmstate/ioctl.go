package kvmstate

import "golang.org/x/sys/unix"

// Linux ioctl request encoding (include/uapi/asm-generic/ioctl.h, which x86
// uses): nr in bits 0–7, type in 8–15, size in 16–29, direction in 30–31.
const (
	iocNone  = 0
	iocWrite = 1
	iocRead  = 2

	iocNRShift   = 0
	iocTypeShift = 8
	iocSizeShift = 16
	iocDirShift  = 30
	iocSizeMask  = 1<<14 - 1

	kvmIO = 0xAE // KVMIO, the ioctl type byte of every KVM request
)

// request is one KVM ioctl: its kernel name, used in every error, and its
// number.
type request struct {
	name string
	num  uintptr
}

// requests lists every request the package defines, so that layout_test.go
// checks each number against <linux/kvm.h> and none can be forgotten.
var requests []request

func ioc(name string, dir, nr, size uintptr) request {
	if size > iocSizeMask {
		// Only reachable if a mirror struct is redefined past 16 KiB; the
		// layout test would fail first. Encode nothing rather than a wrong
		// size: the kernel then rejects the call with ENOTTY.
		size, dir = 0, iocNone
		nr = 0xFF
	}
	r := request{name: name, num: dir<<iocDirShift | size<<iocSizeShift | kvmIO<<iocTypeShift | nr<<iocNRShift}
	requests = append(requests, r)
	return r
}

// _IO mirrors the kernel macro _IO(KVMIO, nr): no argument struct.
func _IO(name string, nr uintptr) request { return ioc(name, iocNone, nr, 0) }

// _IOR mirrors _IOR(KVMIO, nr, T) with size = sizeof(T): the kernel writes T.
func _IOR(name string, nr, size uintptr) request { return ioc(name, iocRead, nr, size) }

// _IOW mirrors _IOW(KVMIO, nr, T): the kernel reads T.
func _IOW(name string, nr, size uintptr) request { return ioc(name, iocWrite, nr, size) }

// _IOWR mirrors _IOWR(KVMIO, nr, T): the kernel reads and writes T.
func _IOWR(name string, nr, size uintptr) request { return ioc(name, iocRead|iocWrite, nr, size) }

// ioctlInt issues an ioctl whose argument is a plain integer, retrying EINTR,
// and returns the kernel's non-negative result.
func ioctlInt(fd int, req request, arg uintptr) (int, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req.num, arg)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, &IoctlError{Ioctl: req.name, Errno: errno}
		}
		return int(r), nil
	}
}
