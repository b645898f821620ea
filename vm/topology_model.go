package vm

import (
	"slices"
	"strings"

	"github.com/chsnap/chsnap/kvmstate"
)

// CPUModel is the CPU a guest of a given topology gets on this host: what
// chsnap cpu prints.
type CPUModel struct {
	Vendor   string `json:"vendor"`
	Brand    string `json:"brand,omitempty"`
	Family   int    `json:"family"`
	Model    int    `json:"model"`
	Stepping int    `json:"stepping"`
	// Topology and the APIC id of each vCPU, in vCPU order.
	Topology Topology `json:"topology"`
	APICIDs  []uint32 `json:"apic_ids"`
	// Caches as the guest decodes them from CPUID.
	Caches []Cache `json:"caches"`
	// PhysAddrBits is the guest's physical address width (0x8000_0008 EAX[7:0]).
	PhysAddrBits int `json:"phys_addr_bits,omitempty"`
	// Features are the named feature flags the guest sees.
	Features []string `json:"features"`
	// CPUID is vCPU 0's full CPUID, for --json.
	CPUID []kvmstate.CPUIDEntry `json:"cpuid,omitempty"`
}

// DescribeCPU returns the CPU model vCPU 0 of a VM with topology topo sees,
// from this host's KVM_GET_SUPPORTED_CPUID, shaped exactly as a boot shapes
// it.
func DescribeCPU(supported []kvmstate.CPUIDEntry, topo Topology) CPUModel {
	c := vcpuCPUID(shapeCPUID(supported, topo, hostCacheLeaves()), topo, 0)
	m := CPUModel{Vendor: cpuidVendor(c), Topology: topo, APICIDs: topo.APICIDs(), Caches: decodeCaches(c), CPUID: c}
	if e := findCPUID(c, 1, 0); e != nil {
		fam := int(e.EAX >> 8 & 0xF)
		mod := int(e.EAX >> 4 & 0xF)
		if fam == 0xF {
			fam += int(e.EAX >> 20 & 0xFF)
		}
		if fam >= 6 {
			mod |= int(e.EAX>>16&0xF) << 4
		}
		m.Family, m.Model, m.Stepping = fam, mod, int(e.EAX&0xF)
	}
	if maxLeaf(c, 0x8000_0000) >= 0x8000_0004 {
		var b []byte
		for fn := uint32(0x8000_0002); fn <= 0x8000_0004; fn++ {
			if e := findCPUID(c, fn, 0); e != nil {
				for _, r := range []uint32{e.EAX, e.EBX, e.ECX, e.EDX} {
					b = append(b, byte(r), byte(r>>8), byte(r>>16), byte(r>>24))
				}
			}
		}
		m.Brand = strings.TrimSpace(strings.TrimRight(string(b), "\x00"))
	}
	if e := findCPUID(c, 0x8000_0008, 0); e != nil {
		m.PhysAddrBits = int(e.EAX & 0xFF)
	}
	for r, names := range featureNames {
		e := findCPUID(c, r.fn, r.index)
		if e == nil {
			continue
		}
		v := [4]uint32{e.EAX, e.EBX, e.ECX, e.EDX}[r.reg]
		for b, name := range names {
			if v&(1<<b) != 0 {
				m.Features = append(m.Features, name)
			}
		}
	}
	slices.Sort(m.Features)
	return m
}
