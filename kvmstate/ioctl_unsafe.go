package kvmstate

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctlPtr issues an ioctl whose argument is a pointer to arg, retrying
// EINTR, and returns the kernel's non-negative result. The pointer becomes a
// uintptr only inside the Syscall argument list, as the unsafe.Pointer rules
// require; arg stays live for the whole call.
//
// arg must not itself hold Go pointers disguised as integers; callers whose
// struct carries an address field keep the target alive with
// runtime.KeepAlive after this returns.
func ioctlPtr[T any](fd int, req request, arg *T) (int, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req.num, uintptr(unsafe.Pointer(arg)))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, &IoctlError{Ioctl: req.name, Errno: errno}
		}
		return int(r), nil
	}
}
