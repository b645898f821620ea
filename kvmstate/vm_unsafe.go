package kvmstate

import (
	"fmt"
	"runtime"
	"unsafe"
)

// pageSize is the granularity of KVM memory slots on x86.
const pageSize = 4096

// SetUserMemoryRegion maps mem into the guest at gpa as memory slot slot
// (KVM_SET_USER_MEMORY_REGION); flags is 0 or a mix of MemLogDirtyPages and
// MemReadonly. An empty mem deletes the slot. gpa, len(mem) and &mem[0] must
// be page-aligned.
//
// mem must outlive the slot: it should be an mmap'd region (not Go heap) that
// the caller unmaps only after the slot is deleted or the VM closed, because
// the guest keeps using it after this call returns.
func (vm *VM) SetUserMemoryRegion(slot, flags uint32, gpa uint64, mem []byte) error {
	if gpa%pageSize != 0 || len(mem)%pageSize != 0 {
		return fmt.Errorf("kvm: KVM_SET_USER_MEMORY_REGION: slot %d: gpa %#x or size %#x is not page-aligned", slot, gpa, len(mem))
	}
	if gpa+uint64(len(mem)) < gpa {
		return fmt.Errorf("kvm: KVM_SET_USER_MEMORY_REGION: slot %d: gpa %#x + size %#x overflows", slot, gpa, len(mem))
	}
	r := &userspaceMemoryRegion{slot: slot, flags: flags, guestPhysAddr: gpa, memorySize: uint64(len(mem))}
	if len(mem) > 0 {
		// The kernel struct carries the address as an integer, invisible to
		// the GC: mem is kept alive below until the kernel has taken it.
		r.userspaceAddr = uint64(uintptr(unsafe.Pointer(unsafe.SliceData(mem))))
		if r.userspaceAddr%pageSize != 0 {
			return fmt.Errorf("kvm: KVM_SET_USER_MEMORY_REGION: slot %d: host address %#x is not page-aligned", slot, r.userspaceAddr)
		}
	}
	_, err := ioctlPtr(vm.fd, kvmSetUserMemoryRegion, r)
	runtime.KeepAlive(mem)
	if err != nil {
		return fmt.Errorf("slot %d at gpa %#x (%d bytes): %w", slot, gpa, len(mem), err)
	}
	return nil
}
