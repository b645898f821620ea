package vm

import "sync"

// hostCPUIDAsm executes CPUID on the calling CPU (topology_amd64.s).
func hostCPUIDAsm(leaf, sub uint32) (eax, ebx, ecx, edx uint32)

// hostCacheLeaves holds this host's CPUID leaves 0x8000_0005 and
// 0x8000_0006, read once per process: Cloud Hypervisor copies them into the
// guest when KVM returns them empty (KVM before 6.6 omits 0x8000_0005 on
// AMD, before 5.7 0x8000_0006).
var hostCacheLeaves = sync.OnceValue(func() map[uint32][4]uint32 {
	out := map[uint32][4]uint32{}
	maxExt, _, _, _ := hostCPUIDAsm(0x8000_0000, 0)
	for _, leaf := range []uint32{0x8000_0005, 0x8000_0006} {
		if maxExt >= leaf {
			a, b, c, d := hostCPUIDAsm(leaf, 0)
			out[leaf] = [4]uint32{a, b, c, d}
		}
	}
	return out
})
