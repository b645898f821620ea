package kvmstate

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// DefaultPath is where Linux puts the KVM device.
const DefaultPath = "/dev/kvm"

// System is an open KVM device (/dev/kvm). It owns its fd and closes it once,
// in Close. Its methods may be called from any goroutine, but not
// concurrently with Close.
type System struct {
	path string
	fd   int
}

// Open opens the KVM device at path (normally DefaultPath) and checks that it
// speaks KVM API version 12. A missing device gives an error wrapping
// ErrNoKVM, a device this process may not open one wrapping ErrKVMPermission;
// both name the path.
func Open(path string) (*System, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, openError(path, err)
	}
	s := &System{path: path, fd: fd}
	v, err := s.APIVersion()
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if v != APIVersion {
		s.Close()
		return nil, fmt.Errorf("open %s: kvm api version %d, want %d", path, v, APIVersion)
	}
	return s, nil
}

// Close closes the device. VMs created from it stay valid. A second Close
// returns ErrClosed.
func (s *System) Close() error {
	if s.fd < 0 {
		return ErrClosed
	}
	fd := s.fd
	s.fd = -1
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("close %s: %w", s.path, err)
	}
	return nil
}

// Path returns the path the device was opened from.
func (s *System) Path() string { return s.path }

// APIVersion returns KVM_GET_API_VERSION (12 on every kernel since 2.6.22).
func (s *System) APIVersion() (int, error) {
	return ioctlInt(s.fd, kvmGetAPIVersion, 0)
}

// CheckExtension returns KVM_CHECK_EXTENSION for capability c (a Cap…
// constant) on the device: 0 when unsupported, otherwise 1 or a
// capability-specific value.
func (s *System) CheckExtension(c int) (int, error) {
	return ioctlInt(s.fd, kvmCheckExtension, uintptr(c))
}

// VCPUMmapSize returns KVM_GET_VCPU_MMAP_SIZE: the size of the region each
// vCPU fd maps (struct kvm_run plus the PIO data page and the coalesced MMIO
// ring).
func (s *System) VCPUMmapSize() (int, error) {
	return ioctlInt(s.fd, kvmGetVCPUMmapSize, 0)
}

// createVMRetries bounds the KVM_CREATE_VM EINTR retries: the kernel's
// mm_take_all_locks() gives up with EINTR whenever a signal is pending, and
// Go's runtime signals often are.
const createVMRetries = 5

// CreateVM creates a VM (KVM_CREATE_VM, machine type 0). The caller owns the
// returned VM and closes it. It requests AMX guest permission first where the
// host has AMX (see SupportedCPUID), so that the VM's XSAVE size covers it.
func (s *System) CreateVM() (*VM, error) {
	requestGuestXComp()
	mmapSize, err := s.VCPUMmapSize()
	if err != nil {
		return nil, err
	}
	if mmapSize < runPageMinSize {
		return nil, fmt.Errorf("kvm: KVM_GET_VCPU_MMAP_SIZE: %d bytes is less than struct kvm_run (%d)", mmapSize, runPageMinSize)
	}
	var fd int
	for retries := 0; ; retries++ {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(s.fd), kvmCreateVM.num, 0)
		if errno == unix.EINTR && retries < createVMRetries {
			continue
		}
		if errno != 0 {
			return nil, &IoctlError{Ioctl: kvmCreateVM.name, Errno: errno}
		}
		fd = int(r)
		break
	}
	return &VM{fd: fd, mmapSize: mmapSize}, nil
}
