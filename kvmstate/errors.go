package kvmstate

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ErrNoKVM reports that the KVM device does not exist on this host (ENOENT,
// ENODEV or ENXIO from open): the kernel has no KVM module bound, or the
// device node is missing.
var ErrNoKVM = errors.New("kvm device absent")

// ErrKVMPermission reports that the KVM device exists but this process may
// not open it (EACCES or EPERM): typically the user is not in the kvm group.
var ErrKVMPermission = errors.New("kvm device not permitted")

// ErrClosed is returned by Close on a handle that was already closed.
var ErrClosed = errors.New("kvm: handle already closed")

// IoctlError is the error every KVM ioctl wrapper returns: the ioctl's kernel
// name and the errno. errors.Is(err, unix.EINTR) and the like work on it.
type IoctlError struct {
	// Ioctl is the kernel name of the request, e.g. "KVM_SET_SREGS".
	Ioctl string
	// Errno is what the kernel returned.
	Errno unix.Errno
}

// Error returns "kvm: IOCTL: errno text".
func (e *IoctlError) Error() string {
	return "kvm: " + e.Ioctl + ": " + e.Errno.Error()
}

// Unwrap returns the errno.
func (e *IoctlError) Unwrap() error { return e.Errno }

// MSRError reports that KVM_GET_MSRS or KVM_SET_MSRS stopped early: the kernel
// processes entries in order and stops at the first MSR it refuses.
type MSRError struct {
	// Ioctl is "KVM_GET_MSRS" or "KVM_SET_MSRS".
	Ioctl string
	// Index is the MSR the kernel refused.
	Index uint32
	// Done is how many MSRs were processed before it, across all chunks.
	Done int
	// Total is how many MSRs were asked for.
	Total int
}

// Error names the ioctl, the refused MSR and how far the call got.
func (e *MSRError) Error() string {
	return fmt.Sprintf("kvm: %s: msr %#x refused after %d of %d msrs", e.Ioctl, e.Index, e.Done, e.Total)
}

// openError maps the errno from opening the KVM device to ErrNoKVM or
// ErrKVMPermission, keeping the errno, and names the path.
func openError(path string, err error) error {
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
		return fmt.Errorf("open %s: %w: %w", path, ErrNoKVM, err)
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return fmt.Errorf("open %s: %w: %w", path, ErrKVMPermission, err)
	default:
		return fmt.Errorf("open %s: %w", path, err)
	}
}
