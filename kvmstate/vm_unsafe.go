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
	// Held across the ioctl so that GetDirtyLog never sizes a bitmap for a
	// slot that is being replaced.
	vm.slotsMu.Lock()
	defer vm.slotsMu.Unlock()
	_, err := ioctlPtr(vm.fd, kvmSetUserMemoryRegion, r)
	runtime.KeepAlive(mem)
	if err != nil {
		return fmt.Errorf("slot %d at gpa %#x (%d bytes): %w", slot, gpa, len(mem), err)
	}
	if len(mem) == 0 {
		delete(vm.slotPages, slot)
	} else {
		if vm.slotPages == nil {
			vm.slotPages = make(map[uint32]uint64)
		}
		vm.slotPages[slot] = uint64(len(mem)) / pageSize
	}
	return nil
}

// dirtyLog mirrors struct kvm_dirty_log. Its bitmap address is a real
// pointer field (the C union's void *), so the GC sees it.
type dirtyLog struct {
	slot   uint32
	_      uint32
	bitmap unsafe.Pointer
}

// DirtyLogWords returns how many uint64 words GetDirtyLog needs for slot:
// one bit per 4 KiB page, rounded up to whole words. It is 0 for a slot
// SetUserMemoryRegion did not create.
func (vm *VM) DirtyLogWords(slot uint32) int {
	vm.slotsMu.Lock()
	defer vm.slotsMu.Unlock()
	return vm.dirtyLogWordsLocked(slot)
}

// dirtyLogWordsLocked is DirtyLogWords with slotsMu held.
func (vm *VM) dirtyLogWordsLocked(slot uint32) int {
	return int((vm.slotPages[slot] + 63) / 64)
}

// GetDirtyLog fills bitmap with the pages of slot written since the last
// call, one bit per page (bit i of word w is page 64*w+i), and resets
// KVM's record (KVM_GET_DIRTY_LOG). The slot must have been registered with
// MemLogDirtyPages. bitmap must hold at least DirtyLogWords(slot) words: the
// kernel writes the whole bitmap, so a shorter one is refused here.
func (vm *VM) GetDirtyLog(slot uint32, bitmap []uint64) error {
	vm.slotsMu.Lock()
	defer vm.slotsMu.Unlock()
	need := vm.dirtyLogWordsLocked(slot)
	if need == 0 {
		return fmt.Errorf("kvm: KVM_GET_DIRTY_LOG: slot %d is not a memory slot of this vm", slot)
	}
	if len(bitmap) < need {
		return fmt.Errorf("kvm: KVM_GET_DIRTY_LOG: slot %d: bitmap of %d words, need %d", slot, len(bitmap), need)
	}
	d := &dirtyLog{slot: slot, bitmap: unsafe.Pointer(unsafe.SliceData(bitmap))}
	_, err := ioctlPtr(vm.fd, kvmGetDirtyLog, d)
	runtime.KeepAlive(bitmap)
	return err
}
