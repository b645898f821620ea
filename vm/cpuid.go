package vm

import (
	"slices"

	"github.com/chsnap/chsnap/kvmstate"
)

// CPUID bits chsnap sets or clears on top of what KVM supports.
const (
	cpuid1ECXTSCDeadline = 1 << 24
	cpuid1ECXHypervisor  = 1 << 31
	cpuid1EDXHTT         = 1 << 28
	cpuidExtECXCmpLegacy = 1 << 1 // 0x8000_0001 ECX
)

// Level types of CPUID leaves 0xB and 0x1F (ECX[15:8]).
const (
	topoLevelInvalid = 0
	topoLevelSMT     = 1
	topoLevelCore    = 2
	topoLevelDie     = 5
)

// CPU vendors, from CPUID leaf 0.
const (
	vendorIntel = "GenuineIntel"
	vendorAMD   = "AuthenticAMD"
	vendorHygon = "HygonGenuine"
)

// cpuidVendor returns the 12-byte vendor string of leaf 0, or "".
func cpuidVendor(entries []kvmstate.CPUIDEntry) string {
	e := findCPUID(entries, 0, 0)
	if e == nil {
		return ""
	}
	b := make([]byte, 0, 12)
	for _, r := range []uint32{e.EBX, e.EDX, e.ECX} {
		b = append(b, byte(r), byte(r>>8), byte(r>>16), byte(r>>24))
	}
	return string(b)
}

// isAMD reports whether the vendor uses AMD's topology and cache leaves.
func isAMD(vendor string) bool { return vendor == vendorAMD || vendor == vendorHygon }

// findCPUID returns the entry for (fn, index), or nil. Entries without a
// significant index match any index.
func findCPUID(entries []kvmstate.CPUIDEntry, fn, index uint32) *kvmstate.CPUIDEntry {
	for i := range entries {
		e := &entries[i]
		if e.Function == fn && (e.Index == index || e.Flags&kvmstate.CPUIDFlagSignificantIndex == 0) {
			return e
		}
	}
	return nil
}

// maxLeaf returns the highest leaf of the range base (0 or 0x8000_0000)
// that entries report, or 0.
func maxLeaf(entries []kvmstate.CPUIDEntry, base uint32) uint32 {
	if e := findCPUID(entries, base, 0); e != nil {
		return e.EAX
	}
	return 0
}

// shapeCPUID derives the CPUID every vCPU of a VM with topology topo shares
// from KVM_GET_SUPPORTED_CPUID (base), once per VM; vcpuCPUID then patches
// the few per-vCPU fields. hostLeaves holds the host's own 0x8000_0005 and
// 0x8000_0006, used where KVM returned those cache leaves empty.
//
// What it sets:
//   - leaf 1: EBX[23:16] the APIC-id space of a package, EDX HTT when a
//     package has more than one logical CPU, ECX hypervisor and TSC-deadline;
//   - leaf 4 (Intel) and 0x8000_001D (AMD): the sharing field EAX[25:14] —
//     L1 and L2 are per core, L3 per die — and leaf 4 EAX[31:26], the core-id
//     space of a package; sizes, ways and line sizes stay the host's;
//   - leaf 0xB (whenever the maximum basic leaf reaches it) and 0x1F (Intel
//     hosts whose maximum basic leaf reaches it): rebuilt from topo;
//   - AMD 0x8000_0001 ECX CmpLegacy, 0x8000_0008 ECX NC and ApicIdSize, and
//     0x8000_001E (threads per core, nodes per package);
//   - 0x8000_0005 and 0x8000_0006 from the host if KVM left them empty;
//   - leaf 0xD made consistent (normalizeXSAVE).
func shapeCPUID(base []kvmstate.CPUIDEntry, topo Topology, hostLeaves map[uint32][4]uint32) []kvmstate.CPUIDEntry {
	vendor := cpuidVendor(base)
	amd := isAMD(vendor)
	tw, cw, dw := topo.widths()
	perPackage := topo.Threads * topo.Cores * topo.Dies
	maxBasic, maxExt := maxLeaf(base, 0), maxLeaf(base, 0x8000_0000)

	out := make([]kvmstate.CPUIDEntry, 0, len(base)+8)
	for _, e := range base {
		if e.Function == 0xB || e.Function == 0x1F {
			continue // rebuilt below
		}
		out = append(out, e)
	}
	for i := range out {
		e := &out[i]
		switch e.Function {
		case 1:
			e.EBX = e.EBX&^(0xFF<<16) | uint32(logicalCount(1<<(tw+cw+dw)))<<16
			e.ECX |= cpuid1ECXHypervisor | cpuid1ECXTSCDeadline
			if perPackage > 1 {
				e.EDX |= cpuid1EDXHTT
			} else {
				e.EDX &^= cpuid1EDXHTT
			}
		case 4:
			if e.EAX&0x1F == 0 {
				continue
			}
			e.EAX = e.EAX&^(0xFFF<<14) | cacheSharing(e.EAX, tw, cw)<<14
			e.EAX = e.EAX&^(0x3F<<26) | uint32(min(1<<(cw+dw)-1, 0x3F))<<26
		case 0x8000_0001:
			if !amd {
				continue
			}
			if perPackage > 1 {
				e.ECX |= cpuidExtECXCmpLegacy
			} else {
				e.ECX &^= cpuidExtECXCmpLegacy
			}
		case 0x8000_0008:
			if !amd {
				continue
			}
			e.ECX = e.ECX&^0xF0FF | uint32(tw+cw+dw)<<12 | uint32(perPackage-1)&0xFF
		case 0x8000_001D:
			if e.EAX&0x1F == 0 {
				continue
			}
			e.EAX = e.EAX&^(0xFFF<<14) | cacheSharing(e.EAX, tw, cw)<<14
		case 0x8000_001E:
			e.EBX = uint32(topo.Threads-1) << 8
			e.ECX = uint32(min(topo.Dies-1, 7)) << 8
			e.EDX = 0
		}
	}

	// Cache leaves KVM left empty: take the host's (Cloud Hypervisor v40).
	for _, leaf := range []uint32{0x8000_0005, 0x8000_0006} {
		h, ok := hostLeaves[leaf]
		if maxExt < leaf || !ok || h == [4]uint32{} {
			continue
		}
		e := findCPUID(out, leaf, 0)
		if e == nil {
			out = append(out, kvmstate.CPUIDEntry{Function: leaf})
			e = &out[len(out)-1]
		}
		if e.EAX|e.EBX|e.ECX|e.EDX == 0 {
			e.EAX, e.EBX, e.ECX, e.EDX = h[0], h[1], h[2], h[3]
		}
	}

	// Leaf 0xB knows threads and cores only: its core level spans the package.
	if maxBasic >= 0xB {
		out = append(out, topoLevels(0xB, []topoLevel{
			{topoLevelSMT, tw, topo.Threads},
			{topoLevelCore, tw + cw + dw, perPackage},
		})...)
	}
	if maxBasic >= 0x1F && vendor == vendorIntel {
		levels := []topoLevel{
			{topoLevelSMT, tw, topo.Threads},
			{topoLevelCore, tw + cw, topo.Threads * topo.Cores},
		}
		if topo.Dies > 1 {
			levels = append(levels, topoLevel{topoLevelDie, tw + cw + dw, perPackage})
		}
		out = append(out, topoLevels(0x1F, levels)...)
	}
	normalizeXSAVE(out)
	return out
}

// topoLevel is one level of leaf 0xB or 0x1F: its type, the APIC-id shift
// to the next level up, and the logical CPUs it holds.
type topoLevel struct {
	kind, shift, count int
}

// topoLevels builds the subleaves of leaf fn (0xB or 0x1F), ending with an
// invalid level. EDX (the x2APIC id) is patched per vCPU.
func topoLevels(fn uint32, levels []topoLevel) []kvmstate.CPUIDEntry {
	out := make([]kvmstate.CPUIDEntry, 0, len(levels)+1)
	for i, l := range levels {
		out = append(out, kvmstate.CPUIDEntry{
			Function: fn, Index: uint32(i), Flags: kvmstate.CPUIDFlagSignificantIndex,
			EAX: uint32(l.shift), EBX: uint32(l.count), ECX: uint32(l.kind)<<8 | uint32(i),
		})
	}
	n := uint32(len(levels))
	return append(out, kvmstate.CPUIDEntry{
		Function: fn, Index: n, Flags: kvmstate.CPUIDFlagSignificantIndex,
		ECX: topoLevelInvalid<<8 | n,
	})
}

// cacheSharing is the "logical CPUs sharing this cache, minus one" field of
// leaf 4 and 0x8000_001D for a cache described by eax: L1 and L2 are shared
// by the threads of a core, L3 and beyond by the cores of a die. Linux uses
// its bit length to group CPUs by cache, so it is a power of two minus one.
func cacheSharing(eax uint32, tw, cw int) uint32 {
	if level := eax >> 5 & 7; level <= 2 {
		return 1<<tw - 1
	}
	return 1<<(tw+cw) - 1
}

// vcpuCPUID returns vCPU i's CPUID: the VM's shaped set with the vCPU's APIC
// id and place written where the guest looks for them. It is cheap (no cpuid
// instruction, one pass) and leaves shaped unchanged.
func vcpuCPUID(shaped []kvmstate.CPUIDEntry, topo Topology, i int) []kvmstate.CPUIDEntry {
	out := slices.Clone(shaped)
	apicID := topo.APICID(i)
	tw, _, _ := topo.widths()
	p := topo.Place(i)
	node := uint32(p.Package*topo.Dies+p.Die) & 0xFF
	for j := range out {
		e := &out[j]
		switch e.Function {
		case 1:
			e.EBX = e.EBX&0x00FF_FFFF | apicID<<24
		case 0xB, 0x1F:
			e.EDX = apicID
		case 0x8000_001E:
			e.EAX = apicID
			e.EBX = e.EBX&^0xFF | apicID>>tw&0xFF
			e.ECX = e.ECX&^0xFF | node
		}
	}
	return out
}

// logicalCount is leaf 1 EBX[23:16]: the addressable logical processors in
// the package, a power of two covering n, at most 255.
func logicalCount(n int) int {
	c := 1
	for c < n {
		c <<= 1
	}
	return min(c, 255)
}

// XSAVE (CPUID leaf 0xD; Intel SDM vol. 1 §13.2, AMD APM vol. 3 E.3.8).
const (
	xsaveLegacySize = 512 + 64 // the FXSAVE region and the XSAVE header
	xfeatureX87     = 1 << 0
	xfeatureSSE     = 1 << 1
)

// xfeatureGroups are XSAVE components the guest may only enable together:
// Linux (fpu/xstate.c) and the SDM's XSETBV rules treat MPX's two, AVX-512's
// three and AMX's two as one (XSETBV with half a pair raises #GP).
var xfeatureGroups = []uint64{1<<3 | 1<<4, 1<<5 | 1<<6 | 1<<7, 1<<17 | 1<<18}

// guestXCR0 returns the XCR0 bits leaf 0xD sub-leaf 0 lets the guest set
// (EDX:EAX).
func guestXCR0(entries []kvmstate.CPUIDEntry) uint64 {
	e := findCPUID(entries, 0xD, 0)
	if e == nil {
		return 0
	}
	return uint64(e.EDX)<<32 | uint64(e.EAX)
}

// xsaveComponent returns the size and standard-format offset of XSAVE
// component i (sub-leaf i's EAX and EBX), and whether leaf 0xD describes it
// as an XCR0 (user) component with a place past the legacy region.
func xsaveComponent(entries []kvmstate.CPUIDEntry, i uint32) (size, offset uint32, ok bool) {
	e := findCPUID(entries, 0xD, i)
	if e == nil || e.Index != i || e.EAX == 0 || e.ECX&1 != 0 || e.EBX < xsaveLegacySize {
		return 0, 0, false
	}
	return e.EAX, e.EBX, true
}

// xsaveSize is the standard-format XSAVE area size for xcr0 by leaf 0xD's
// component offsets and sizes: what the guest computes and what sub-leaf 0
// EBX must report once that XCR0 is set.
func xsaveSize(entries []kvmstate.CPUIDEntry, xcr0 uint64) uint32 {
	end := uint32(xsaveLegacySize)
	for i := uint32(2); i < 64; i++ {
		if xcr0&(1<<i) == 0 {
			continue
		}
		if size, off, ok := xsaveComponent(entries, i); ok {
			end = max(end, off+size)
		}
	}
	return end
}

// normalizeXSAVE makes leaf 0xD agree with itself, in place. Sub-leaf 0
// EDX:EAX, the XCR0 bits the guest may enable, keeps x87 and SSE and each
// component (or group of components that go together) whose sub-leaf gives
// it a size and an offset; ECX, the area size for every one of them,
// becomes their furthest end; EBX, the size for the XCR0 in use, becomes
// the size for all of them, the XCR0 the guest is started with
// (bootXCR0). KVM reports the leaves it supports; this only guards against
// a leaf that names a component it does not describe, which Linux answers
// with "XSAVE consistency problem" and no XSAVE at all.
func normalizeXSAVE(entries []kvmstate.CPUIDEntry) {
	e := findCPUID(entries, 0xD, 0)
	if e == nil || e.Index != 0 {
		return
	}
	xcr0 := guestXCR0(entries)
	keep := xcr0 & (xfeatureX87 | xfeatureSSE)
	for i := uint32(2); i < 64; i++ {
		if xcr0&(1<<i) == 0 {
			continue
		}
		if _, _, ok := xsaveComponent(entries, i); ok {
			keep |= 1 << i
		}
	}
	for _, g := range xfeatureGroups {
		if keep&g != g {
			keep &^= g
		}
	}
	e.EAX, e.EDX = uint32(keep), uint32(keep>>32)
	e.ECX = xsaveSize(entries, keep)
	e.EBX = e.ECX
}

// bootXCR0 is the XCR0 a new vCPU starts with: every component leaf 0xD
// offers, rather than the architectural reset value (x87 only). KVM derives
// sub-leaf 0 EBX from the XCR0 it knows, on KVM_SET_CPUID2, KVM_SET_XCRS
// and the guest's XSETBV. Where the guest's XSETBV never reaches KVM (KVM
// nested under QEMU TCG, whose emulated SVM does not intercept it), EBX
// would keep the size for XCR0 = 1 while Linux enables everything the leaf
// offers, and Linux gives up XSAVE with an "XSAVE consistency problem"
// warning. Starting with the full XCR0 makes EBX right for what Linux
// enables; the guest still sets its own XCR0 before it uses XSAVE (it needs
// CR4.OSXSAVE first, and KVM loads the guest XCR0 only then).
func bootXCR0(entries []kvmstate.CPUIDEntry) uint64 {
	return guestXCR0(entries) | xfeatureX87
}
