package kvmstate

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// VCPU is one virtual CPU: its fd and its mmap'd run page (struct kvm_run),
// created by VM.CreateVCPU. It owns both and releases them once, in Close.
//
// Threading: every method except SetImmediateExit and ImmediateExit must be
// called from the OS thread that created the vCPU (the vm package's locked
// goroutine for this vCPU). A state ioctl issued from another thread would
// block until KVM_RUN returns anyway, because KVM holds the vCPU mutex while
// the guest runs. SetImmediateExit is the one call meant for other threads:
// it is how a pause request reaches a running vCPU.
type VCPU struct {
	id        int
	tid       int  // OS thread that created the vCPU
	xsaveSize int  // the VM's XSAVESize when this vCPU was created
	xsave2    bool // KVM_GET_XSAVE2 exists

	// mu lets SetImmediateExit run on another thread without racing with
	// Close's munmap. The owner thread reads run without it: Close runs on
	// that thread too.
	mu  sync.RWMutex
	fd  int    // guarded by mu for writes; -1 once closed
	run []byte // guarded by mu for writes; nil once closed
}

// ID returns the vCPU id given to CreateVCPU (its initial APIC ID).
func (v *VCPU) ID() int { return v.id }

// TID returns the id of the OS thread that created the vCPU: the thread to
// signal (tgkill) to kick it out of KVM_RUN.
func (v *VCPU) TID() int { return v.tid }

// Close unmaps the run page and closes the vCPU fd. It waits for a
// concurrent SetImmediateExit to finish; later ones do nothing. A second
// Close returns ErrClosed.
// Preconditions: the vCPU is not inside Run.
func (v *VCPU) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.fd < 0 {
		return ErrClosed
	}
	var errs []error
	if v.run != nil {
		if err := unix.Munmap(v.run); err != nil {
			errs = append(errs, fmt.Errorf("munmap kvm_run: %w", err))
		}
		v.run = nil
	}
	if err := unix.Close(v.fd); err != nil {
		errs = append(errs, fmt.Errorf("close: %w", err))
	}
	v.fd = -1
	if len(errs) > 0 {
		return fmt.Errorf("close vcpu %d: %w", v.id, errors.Join(errs...))
	}
	return nil
}

// errRunEINTR is what Run returns on EINTR, preallocated because that
// happens on every kick and on Go runtime signals.
var errRunEINTR = &IoctlError{Ioctl: "KVM_RUN", Errno: unix.EINTR}

// Run enters the guest (KVM_RUN) until the next exit, then returns nil; read
// ExitReason and the matching accessor. It does not retry EINTR: an error
// for which errors.Is(err, unix.EINTR) holds means a signal arrived or the
// immediate-exit flag was set, and the caller should check its mailbox and
// call Run again (which also completes a pending I/O or MMIO read).
func (v *VCPU) Run() error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(v.fd), kvmRun.num, 0)
	switch errno {
	case 0:
		return nil
	case unix.EINTR:
		return errRunEINTR
	default:
		return &IoctlError{Ioctl: kvmRun.name, Errno: errno}
	}
}

// KVMClockCtrl tells the guest, through its kvmclock page, that the vCPU was
// paused by the host (KVM_KVMCLOCK_CTRL), so its soft-lockup watchdog does
// not fire on resume. The kernel returns EINVAL until the guest has enabled
// kvmclock; callers treat that as harmless.
// Preconditions: the vCPU is paused.
func (v *VCPU) KVMClockCtrl() error {
	_, err := ioctlInt(v.fd, kvmKVMClockCtrl, 0)
	return err
}
