package kvmstate

import (
	"sync/atomic"
	"unsafe"
)

// immediateExitWord returns the aligned 32-bit word of the run page that
// holds immediate_exit (byte 1), or nil on a closed vCPU. Go has no atomic
// byte store, so the flag is updated with a compare-and-swap on this word;
// the kernel only reads these bytes, and chsnap writes nothing else in them.
// Callers hold v.mu for reading.
func (v *VCPU) immediateExitWord() *uint32 {
	if len(v.run) < runPageMinSize {
		return nil
	}
	// The run page is an mmap'd, page-aligned region, so offset 0 is aligned.
	return (*uint32)(unsafe.Pointer(&v.run[0]))
}

// immediateExitMask selects byte runImmediateExit of the little-endian word.
const immediateExitMask = 0xFF << (8 * runImmediateExit)

// SetImmediateExit sets or clears kvm_run.immediate_exit with an atomic
// store. While it is set, KVM_RUN returns EINTR at once instead of entering
// the guest (after completing a pending I/O or MMIO read). It is safe to
// call from any thread; to kick a running vCPU, set it and then signal TID,
// so that a signal landing just before KVM_RUN is not lost. On a closed vCPU
// it does nothing.
func (v *VCPU) SetImmediateExit(on bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	w := v.immediateExitWord()
	if w == nil {
		return
	}
	for {
		old := atomic.LoadUint32(w)
		nw := old &^ immediateExitMask
		if on {
			nw |= 1 << (8 * runImmediateExit)
		}
		if atomic.CompareAndSwapUint32(w, old, nw) {
			return
		}
	}
}

// ImmediateExit reports whether kvm_run.immediate_exit is set (an atomic
// load; safe from any thread). It is false on a closed vCPU.
func (v *VCPU) ImmediateExit() bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	w := v.immediateExitWord()
	return w != nil && atomic.LoadUint32(w)&immediateExitMask != 0
}
