package vm

import "github.com/chsnap/chsnap/kvmstate"

// CPUID bits chsnap sets or clears on top of what KVM supports.
const (
	cpuid1ECXTSCDeadline = 1 << 24
	cpuid1ECXHypervisor  = 1 << 31
	cpuid1EDXHTT         = 1 << 28
)

// vcpuCPUID derives vCPU id's CPUID from the VM's supported set, which is read
// once per VM (no cpuid instruction per vCPU). It writes the APIC id where the
// guest looks for it and marks the hypervisor; the full topology model
// (threads, cores, dies, packages and caches) builds on this.
func vcpuCPUID(base []kvmstate.CPUIDEntry, id, ncpus int) []kvmstate.CPUIDEntry {
	out := make([]kvmstate.CPUIDEntry, len(base))
	copy(out, base)
	apicID := uint32(id)
	for i := range out {
		e := &out[i]
		switch e.Function {
		case 1:
			e.EBX = e.EBX&0x0000FFFF | apicID<<24 | uint32(logicalCount(ncpus))<<16
			e.ECX |= cpuid1ECXHypervisor | cpuid1ECXTSCDeadline
			if ncpus > 1 {
				e.EDX |= cpuid1EDXHTT
			} else {
				e.EDX &^= cpuid1EDXHTT
			}
		case 0xB, 0x1F:
			e.EDX = apicID
		case 0x8000_001E:
			e.EAX = apicID
		}
	}
	return out
}

// logicalCount is leaf 1 EBX[23:16]: the addressable logical processors in
// the package, a power of two covering ncpus, at most 255.
func logicalCount(ncpus int) int {
	n := 1
	for n < ncpus {
		n <<= 1
	}
	if n > 255 {
		n = 255
	}
	return n
}
