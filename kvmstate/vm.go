package kvmstate

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// VM is a KVM virtual machine fd, created by System.CreateVM. It owns the fd
// and closes it once, in Close; close every VCPU first. VM methods may be
// called from any goroutine (KVM serialises VM ioctls itself), but not
// concurrently with Close.
type VM struct {
	fd       int
	mmapSize int

	xsaveOnce sync.Once
	xsaveSize int  // guarded by xsaveOnce
	xsave2    bool // guarded by xsaveOnce: KVM_GET_XSAVE2 is available

	// slotsMu guards slotPages.
	slotsMu sync.Mutex
	// slotPages maps each memory slot to its size in pages, so GetDirtyLog
	// can check a bitmap before the kernel writes into it. Guarded by slotsMu.
	slotPages map[uint32]uint64
}

// Close closes the VM fd. The kernel frees the VM once every VCPU fd is
// closed too. A second Close returns ErrClosed.
func (vm *VM) Close() error {
	if vm.fd < 0 {
		return ErrClosed
	}
	fd := vm.fd
	vm.fd = -1
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("close vm: %w", err)
	}
	return nil
}

// CheckExtension returns KVM_CHECK_EXTENSION for capability c on this VM,
// which can differ from the device's answer (CapXSAVE2, CapNrMemslots).
func (vm *VM) CheckExtension(c int) (int, error) {
	return ioctlInt(vm.fd, kvmCheckExtension, uintptr(c))
}

// SetTSSAddr places the three-page region KVM needs for real-mode emulation
// on Intel (KVM_SET_TSS_ADDR). It must be guest-physical space that no memory
// slot covers and the guest does not use, below 4 GiB.
func (vm *VM) SetTSSAddr(gpa uint64) error {
	if gpa > 1<<32-3*4096 {
		return fmt.Errorf("kvm: KVM_SET_TSS_ADDR: address %#x does not leave three pages below 4 GiB", gpa)
	}
	_, err := ioctlInt(vm.fd, kvmSetTSSAddr, uintptr(gpa))
	return err
}

// SetIdentityMapAddr places the one-page identity-map page table KVM needs
// for real mode on Intel (KVM_SET_IDENTITY_MAP_ADDR); call it before
// creating vCPUs.
func (vm *VM) SetIdentityMapAddr(gpa uint64) error {
	addr := new(uint64)
	*addr = gpa
	_, err := ioctlPtr(vm.fd, kvmSetIdentityMapAddr, addr)
	return err
}

// CreateIRQChip creates the in-kernel PIC pair, IOAPIC and per-vCPU local
// APICs (KVM_CREATE_IRQCHIP). Call it before creating vCPUs.
func (vm *VM) CreateIRQChip() error {
	_, err := ioctlInt(vm.fd, kvmCreateIRQChip, 0)
	return err
}

// CreatePIT2 creates the in-kernel i8254 PIT (KVM_CREATE_PIT2); flags is 0 or
// PITSpeakerDummy. It needs the irqchip.
func (vm *VM) CreatePIT2(flags uint32) error {
	cfg := &pitConfig{flags: flags}
	_, err := ioctlPtr(vm.fd, kvmCreatePIT2, cfg)
	return err
}

// IRQLine sets the level of an in-kernel irqchip input (KVM_IRQ_LINE): gsi
// 0–15 reaches the PICs and the IOAPIC, 16–23 only the IOAPIC. An edge is a
// raise followed by a lower.
func (vm *VM) IRQLine(gsi uint32, level bool) error {
	l := &irqLevel{irq: gsi}
	if level {
		l.level = 1
	}
	_, err := ioctlPtr(vm.fd, kvmIRQLine, l)
	return err
}

// IRQFD binds eventfd efd to gsi (KVM_IRQFD): a write to efd raises and
// lowers the line inside the kernel without waking chsnap. With deassign the
// binding is removed. efd is borrowed: KVM takes its own reference, and the
// caller still owns and closes efd.
func (vm *VM) IRQFD(efd int, gsi uint32, deassign bool) error {
	if efd < 0 {
		return fmt.Errorf("kvm: KVM_IRQFD: bad eventfd %d", efd)
	}
	a := &irqfd{fd: uint32(efd), gsi: gsi}
	if deassign {
		a.flags = irqfdFlagDeassign
	}
	_, err := ioctlPtr(vm.fd, kvmIRQFD, a)
	return err
}

// IOEvent describes one KVM_IOEVENTFD binding: a guest write of Len bytes to
// Addr (in MMIO or, with PIO, port space), optionally only of the value
// DataMatch, signals eventfd FD inside the kernel instead of exiting to
// chsnap.
type IOEvent struct {
	// FD is the eventfd to signal. It is borrowed: KVM takes its own
	// reference, and the caller still owns and closes it.
	FD int
	// Addr is the guest-physical address, or the port number when PIO is set.
	Addr uint64
	// Len is the access width that matches: 1, 2, 4 or 8 bytes, or 0 for any
	// width (MMIO only; a zero length cannot be combined with Match).
	Len uint32
	// PIO selects I/O port space instead of MMIO.
	PIO bool
	// Match restricts the binding to writes of the value DataMatch.
	Match     bool
	DataMatch uint64
}

// IOEventFD registers ev (KVM_IOEVENTFD), or with deassign removes the
// registration that matches it exactly.
func (vm *VM) IOEventFD(ev IOEvent, deassign bool) error {
	if ev.FD < 0 {
		return fmt.Errorf("kvm: KVM_IOEVENTFD: bad eventfd %d", ev.FD)
	}
	switch ev.Len {
	case 0, 1, 2, 4, 8:
	default:
		return fmt.Errorf("kvm: KVM_IOEVENTFD: length %d is not 0, 1, 2, 4 or 8", ev.Len)
	}
	if ev.PIO && ev.Addr > 0xFFFF {
		return fmt.Errorf("kvm: KVM_IOEVENTFD: port %#x is above 0xffff", ev.Addr)
	}
	a := &ioeventfd{addr: ev.Addr, len: ev.Len, fd: int32(ev.FD)}
	if ev.PIO {
		a.flags |= ioeventfdFlagPIO
	}
	if ev.Match {
		a.flags |= ioeventfdFlagDatamatch
		a.datamatch = ev.DataMatch
	}
	if deassign {
		a.flags |= ioeventfdFlagDeassign
	}
	_, err := ioctlPtr(vm.fd, kvmIOEventFD, a)
	return err
}

// legacyXSAVESize is the size of struct kvm_xsave without extra state.
const legacyXSAVESize = 4096

// maxXSAVESize bounds the XSAVE buffer whatever KVM_CAP_XSAVE2 says (AMX
// makes it about 11 KiB).
const maxXSAVESize = 1 << 20

// XSAVESize returns the byte size of a vCPU's XSAVE state: the value of
// KVM_CAP_XSAVE2 on this VM, or 4096 when the kernel lacks it (then only
// KVM_GET_XSAVE exists). It is read once per VM; query it after AMX
// permission was requested (CreateVM does that).
func (vm *VM) XSAVESize() int {
	vm.xsaveOnce.Do(func() {
		vm.xsaveSize = legacyXSAVESize
		n, err := vm.CheckExtension(CapXSAVE2)
		if err == nil && n > 0 {
			vm.xsave2 = true
			if n > legacyXSAVESize && n <= maxXSAVESize {
				vm.xsaveSize = n
			}
		}
	})
	return vm.xsaveSize
}

// CreateVCPU creates vCPU id (KVM_CREATE_VCPU; id becomes its initial APIC
// ID) and maps its run page. The caller owns the VCPU and closes it before
// the VM.
//
// Preconditions: call it on the OS thread that will run the vCPU, with the
// goroutine locked to that thread (runtime.LockOSThread) for the vCPU's whole
// life; KVM expects every vCPU ioctl from the thread that created the vCPU
// (api.rst), and the vm package runs one locked goroutine per vCPU. Create
// the irqchip first if the VM has one.
func (vm *VM) CreateVCPU(id int) (*VCPU, error) {
	if id < 0 {
		return nil, fmt.Errorf("kvm: KVM_CREATE_VCPU: bad vcpu id %d", id)
	}
	xsaveSize := vm.XSAVESize()
	fd, err := ioctlInt(vm.fd, kvmCreateVCPU, uintptr(id))
	if err != nil {
		return nil, fmt.Errorf("vcpu %d: %w", id, err)
	}
	run, err := unix.Mmap(fd, 0, vm.mmapSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vcpu %d: mmap kvm_run (%d bytes): %w", id, vm.mmapSize, err)
	}
	v := &VCPU{
		id:        id,
		fd:        fd,
		tid:       unix.Gettid(),
		run:       run,
		xsaveSize: xsaveSize,
		xsave2:    vm.xsave2,
	}
	return v, nil
}
