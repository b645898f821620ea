package vm

import (
	"slices"
	"sync"

	"github.com/chsnap/chsnap/kvmstate"
)

// msrDebugCtl is IA32_DEBUGCTL.
const msrDebugCtl = 0x1d9

// cpuidSVMEDXLbrVirt is CPUID 0x8000_000A EDX bit 1: SVM virtualizes the
// last-branch-record state, DEBUGCTL included.
const cpuidSVMEDXLbrVirt = 1 << 1

// msrsKVMIgnores returns the MSRs that this host's KVM lists in
// KVM_GET_MSR_INDEX_LIST and lets KVM_GET_MSRS read, but whose KVM_SET_MSRS
// it accepts only to drop the value with an "Unhandled WRMSR" line in the
// host's log: saving them carries nothing, and restoring them writes that
// line once per vCPU. On AMD without LBR virtualization that is
// IA32_DEBUGCTL (kvm_amd's svm_set_msr; it reads as 0 there whatever the
// guest wrote).
var msrsKVMIgnores = sync.OnceValue(func() map[uint32]bool {
	out := map[uint32]bool{}
	_, ebx, ecx, edx := hostCPUIDAsm(0, 0)
	vendor := string([]byte{byte(ebx), byte(ebx >> 8), byte(ebx >> 16), byte(ebx >> 24),
		byte(edx), byte(edx >> 8), byte(edx >> 16), byte(edx >> 24),
		byte(ecx), byte(ecx >> 8), byte(ecx >> 16), byte(ecx >> 24)})
	if !isAMD(vendor) {
		return out
	}
	maxExt, _, _, _ := hostCPUIDAsm(0x8000_0000, 0)
	var svmEDX uint32
	if maxExt >= 0x8000_000A {
		_, _, _, svmEDX = hostCPUIDAsm(0x8000_000A, 0)
	}
	if svmEDX&cpuidSVMEDXLbrVirt == 0 {
		out[msrDebugCtl] = true
	}
	return out
})

// withoutIgnoredMSRs returns msrs less those msrsKVMIgnores names (an
// archive written before they were left out, or on another host).
func withoutIgnoredMSRs(msrs []kvmstate.MSREntry) []kvmstate.MSREntry {
	ign := msrsKVMIgnores()
	return slices.DeleteFunc(slices.Clone(msrs), func(e kvmstate.MSREntry) bool { return ign[e.Index] })
}
