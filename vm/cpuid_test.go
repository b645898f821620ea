package vm

import (
	"fmt"
	"slices"
	"testing"

	"github.com/chsnap/chsnap/kvmstate"
)

const sig = kvmstate.CPUIDFlagSignificantIndex

// vendorRegs packs a 12-byte vendor string into leaf 0's EBX, EDX, ECX.
func vendorRegs(v string) (ebx, edx, ecx uint32) {
	w := func(s string) uint32 { return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24 }
	return w(v[0:4]), w(v[4:8]), w(v[8:12])
}

// cache4 encodes a leaf 4 / 0x8000_001D subleaf: type, level, ways, line
// and sets, with sharing field share.
func cache4(fn, index, typ, level, ways, line, sets, share uint32) kvmstate.CPUIDEntry {
	return kvmstate.CPUIDEntry{Function: fn, Index: index, Flags: sig,
		EAX: typ | level<<5 | 1<<8 | share<<14 | 7<<26,
		EBX: (ways-1)<<22 | (line - 1), ECX: sets - 1}
}

// intelHost is a made-up KVM_GET_SUPPORTED_CPUID of an Intel host: 48K/12
// L1d, 32K/8 L1i, 1280K/20 L2, 48M/12 L3, 64-byte lines.
func intelHost() []kvmstate.CPUIDEntry {
	b, d, c := vendorRegs(vendorIntel)
	return []kvmstate.CPUIDEntry{
		{Function: 0, EAX: 0x1F, EBX: b, ECX: c, EDX: d},
		{Function: 1, EAX: 0x000606A6, EBX: 0x3F400800, ECX: 0xFEDA3203 | cpuid1ECXHypervisor, EDX: 0x1F8BFBFF},
		cache4(4, 0, 1, 1, 12, 64, 64, 1),
		cache4(4, 1, 2, 1, 8, 64, 64, 1),
		cache4(4, 2, 3, 2, 20, 64, 1024, 1),
		cache4(4, 3, 3, 3, 12, 64, 65536, 127),
		{Function: 4, Index: 4, Flags: sig},
		{Function: 7, Index: 0, Flags: sig, EAX: 2, EBX: 0xF3BFA7EB, ECX: 0x1A405F4E, EDX: 0xAC004410},
		{Function: 0xB, Index: 0, Flags: sig, EAX: 1, EBX: 2, ECX: 0x100, EDX: 0x3F},
		{Function: 0xB, Index: 1, Flags: sig, EAX: 7, EBX: 64, ECX: 0x201, EDX: 0x3F},
		{Function: 0x1F, Index: 0, Flags: sig, EAX: 1, EBX: 2, ECX: 0x100, EDX: 0x3F},
		{Function: 0x8000_0000, EAX: 0x8000_0008},
		{Function: 0x8000_0001, ECX: 0x121, EDX: 0x2C100800},
		{Function: 0x8000_0006, ECX: 1280<<16 | 7<<12 | 64},
		{Function: 0x8000_0008, EAX: 0x3030},
	}
}

// amdHost is a made-up AMD host: 32K/8 L1d and L1i, 512K/8 L2, 32M/16 L3.
// KVM left 0x8000_0005 empty, as KVM before 6.6 does.
func amdHost() []kvmstate.CPUIDEntry {
	b, d, c := vendorRegs(vendorAMD)
	return []kvmstate.CPUIDEntry{
		{Function: 0, EAX: 0x10, EBX: b, ECX: c, EDX: d},
		{Function: 1, EAX: 0x00A00F11, EBX: 0x00100800, ECX: 0xFED83203 | cpuid1ECXHypervisor, EDX: 0x178BFBFF},
		{Function: 7, Index: 0, Flags: sig, EBX: 0x219C97A9},
		{Function: 0xB, Index: 0, Flags: sig, EAX: 1, EBX: 2, ECX: 0x100},
		{Function: 0x8000_0000, EAX: 0x8000_0021},
		{Function: 0x8000_0001, EAX: 0x00A00F11, ECX: 0x75C237FF | 1<<22, EDX: 0x2FD3FBFF},
		{Function: 0x8000_0005},
		{Function: 0x8000_0006, ECX: 512<<16 | 6<<12 | 64, EDX: 64<<18 | 8<<12 | 64},
		{Function: 0x8000_0008, EAX: 0x3030, ECX: 0x400F},
		cache4(0x8000_001D, 0, 1, 1, 8, 64, 64, 1),
		cache4(0x8000_001D, 1, 2, 1, 8, 64, 64, 1),
		cache4(0x8000_001D, 2, 3, 2, 8, 64, 1024, 1),
		cache4(0x8000_001D, 3, 3, 3, 16, 64, 32768, 15),
		{Function: 0x8000_001D, Index: 4, Flags: sig},
		{Function: 0x8000_001E, EAX: 3, EBX: 0x101, ECX: 0},
	}
}

// amdHostL1 is the host's own 0x8000_0005: 32K 8-way 64-byte L1d and L1i.
var amdHostL1 = map[uint32][4]uint32{0x8000_0005: {0, 0, 32<<24 | 8<<16 | 1<<8 | 64, 32<<24 | 8<<16 | 1<<8 | 64}}

var testTopologies = []Topology{
	DefaultTopology(1), DefaultTopology(2), DefaultTopology(4), DefaultTopology(8), DefaultTopology(6),
	{2, 2, 1, 2}, {2, 4, 2, 1}, {1, 2, 2, 2}, {2, 1, 1, 3},
}

func regs(e *kvmstate.CPUIDEntry) [4]uint32 { return [4]uint32{e.EAX, e.EBX, e.ECX, e.EDX} }

// guestTopology decodes what a guest learns from vCPU CPUID sets the way
// Linux and the test guest do: each vCPU's x2APIC id from leaf 0xB EDX,
// split with the shifts of 0x1F if present, else 0xB.
func guestTopology(t *testing.T, sets [][]kvmstate.CPUIDEntry) (ids []uint32, places []Place) {
	t.Helper()
	for _, s := range sets {
		leaf := uint32(0xB)
		if maxLeaf(s, 0) >= 0x1F && findCPUID(s, 0x1F, 0) != nil {
			leaf = 0x1F
		}
		shift := map[int]int{}
		top := 0
		var x2 uint32
		for i := uint32(0); ; i++ {
			e := findCPUID(s, leaf, i)
			if e == nil {
				t.Fatalf("leaf %#x has no invalid level ending it", leaf)
			}
			x2 = e.EDX
			kind := int(e.ECX >> 8 & 0xFF)
			if kind == topoLevelInvalid {
				break
			}
			if int(e.ECX&0xFF) != int(i) {
				t.Errorf("leaf %#x.%d ECX[7:0] = %d", leaf, i, e.ECX&0xFF)
			}
			shift[kind] = int(e.EAX & 0x1F)
			top = int(e.EAX & 0x1F)
		}
		smt := shift[topoLevelSMT]
		core := shift[topoLevelCore]
		die, ok := shift[topoLevelDie]
		if !ok {
			die = core
		}
		mask := func(n int) uint32 { return 1<<n - 1 }
		ids = append(ids, x2)
		places = append(places, Place{
			Thread:  int(x2 & mask(smt)),
			Core:    int(x2 >> smt & mask(core-smt)),
			Die:     int(x2 >> core & mask(die-core)),
			Package: int(x2 >> top),
		})
	}
	return ids, places
}

func TestShapeCPUIDTopology(t *testing.T) {
	for _, host := range []struct {
		name string
		set  []kvmstate.CPUIDEntry
	}{{"intel", intelHost()}, {"amd", amdHost()}} {
		for _, topo := range testTopologies {
			t.Run(fmt.Sprintf("%s/%s", host.name, topo), func(t *testing.T) {
				if err := topo.Validate(); err != nil {
					t.Fatal(err)
				}
				base := host.set
				orig := slices.Clone(base)
				shaped := shapeCPUID(base, topo, amdHostL1)
				if !slices.Equal(base, orig) {
					t.Fatal("shapeCPUID modified the supported set")
				}
				tw, cw, dw := topo.widths()
				per := topo.Threads * topo.Cores * topo.Dies
				sets := make([][]kvmstate.CPUIDEntry, topo.CPUs())
				for i := range sets {
					sets[i] = vcpuCPUID(shaped, topo, i)
				}
				if !slices.Equal(shaped, shapeCPUID(host.set, topo, amdHostL1)) {
					t.Fatal("vcpuCPUID modified the shared set")
				}

				// What the guest decodes agrees with the MADT's ids and the places.
				ids, places := guestTopology(t, sets)
				if want := topo.APICIDs(); !slices.Equal(ids, want) {
					t.Errorf("leaf 0xB x2APIC ids %v, MADT ids %v", ids, want)
				}
				for i, p := range places {
					want := topo.Place(i)
					if host.name == "amd" {
						// Leaf 0xB has no die level: a package's cores are
						// numbered across its dies (AMD puts the die in
						// 0x8000_001E's node id, checked below).
						want.Core += want.Die * topo.Cores
						want.Die = 0
					}
					if p != want {
						t.Errorf("vCPU %d: guest decodes %+v, want %+v", i, p, want)
					}
				}

				for i, s := range sets {
					id := topo.APICID(i)
					l1 := findCPUID(s, 1, 0)
					if l1.EBX>>24 != id || l1.EBX>>16&0xFF != uint32(logicalCount(1<<(tw+cw+dw))) || l1.EBX&0xFFFF != 0x0800 {
						t.Errorf("vCPU %d: leaf 1 EBX %#x, want id %d, count %d, low half 0x0800", i, l1.EBX, id, 1<<(tw+cw+dw))
					}
					if got := l1.EDX&cpuid1EDXHTT != 0; got != (per > 1) {
						t.Errorf("vCPU %d: HTT %v with %d CPUs per package", i, got, per)
					}
					if l1.ECX&(cpuid1ECXHypervisor|cpuid1ECXTSCDeadline) != cpuid1ECXHypervisor|cpuid1ECXTSCDeadline {
						t.Errorf("vCPU %d: leaf 1 ECX %#x lacks hypervisor or TSC deadline", i, l1.ECX)
					}
					wantB := [][4]uint32{
						{uint32(tw), uint32(topo.Threads), 0x100, id},
						{uint32(tw + cw + dw), uint32(per), 0x201, id},
						{0, 0, 2, id},
					}
					for j, w := range wantB {
						if e := findCPUID(s, 0xB, uint32(j)); e == nil || regs(e) != w {
							t.Errorf("vCPU %d leaf 0xB.%d = %+v, want %x", i, j, e, w)
						}
					}
					if host.name == "intel" {
						want1F := [][4]uint32{{uint32(tw), uint32(topo.Threads), 0x100, id}, {uint32(tw + cw), uint32(topo.Threads * topo.Cores), 0x201, id}}
						if topo.Dies > 1 {
							want1F = append(want1F, [4]uint32{uint32(tw + cw + dw), uint32(per), 0x502, id})
						}
						want1F = append(want1F, [4]uint32{0, 0, uint32(len(want1F)), id})
						for j, w := range want1F {
							if e := findCPUID(s, 0x1F, uint32(j)); e == nil || regs(e) != w {
								t.Errorf("vCPU %d leaf 0x1F.%d = %+v, want %x", i, j, e, w)
							}
						}
						for j := uint32(0); j < 4; j++ {
							e := findCPUID(s, 4, j)
							want := uint32(1<<tw - 1)
							if j == 3 {
								want = 1<<(tw+cw) - 1
							}
							if e.EAX>>14&0xFFF != want || e.EAX>>26 != uint32(1<<(cw+dw)-1) {
								t.Errorf("vCPU %d leaf 4.%d EAX %#x: sharing %d, cores %d; want %d, %d", i, j, e.EAX, e.EAX>>14&0xFFF, e.EAX>>26, want, 1<<(cw+dw)-1)
							}
						}
						if e := findCPUID(s, 0x8000_0008, 0); e.ECX != 0 {
							t.Errorf("Intel leaf 0x8000_0008 ECX = %#x, want untouched 0", e.ECX)
						}
						continue
					}
					if findCPUID(s, 0x1F, 0) != nil {
						t.Error("AMD set has leaf 0x1F (its maximum basic leaf is 0x10)")
					}
					if e := findCPUID(s, 0x8000_0008, 0); e.ECX != uint32(tw+cw+dw)<<12|uint32(per-1) || e.EAX != 0x3030 {
						t.Errorf("vCPU %d leaf 0x8000_0008 EAX %#x ECX %#x, want NC %d ApicIdSize %d", i, e.EAX, e.ECX, per-1, tw+cw+dw)
					}
					p := topo.Place(i)
					want1E := [4]uint32{id, uint32(topo.Threads-1)<<8 | id>>tw, uint32(topo.Dies-1)<<8 | uint32(p.Package*topo.Dies+p.Die), 0}
					if e := findCPUID(s, 0x8000_001E, 0); regs(e) != want1E {
						t.Errorf("vCPU %d leaf 0x8000_001E = %x, want %x", i, regs(e), want1E)
					}
					if e := findCPUID(s, 0x8000_0001, 0); (e.ECX&cpuidExtECXCmpLegacy != 0) != (per > 1) || e.ECX&(1<<22) == 0 {
						t.Errorf("vCPU %d leaf 0x8000_0001 ECX %#x: CmpLegacy should be %v, TopoExt set", i, e.ECX, per > 1)
					}
					for j := uint32(0); j < 4; j++ {
						e := findCPUID(s, 0x8000_001D, j)
						want := uint32(1<<tw - 1)
						if j == 3 {
							want = 1<<(tw+cw) - 1
						}
						if e.EAX>>14&0xFFF != want {
							t.Errorf("vCPU %d leaf 0x8000_001D.%d sharing %d, want %d", i, j, e.EAX>>14&0xFFF, want)
						}
					}
				}
			})
		}
	}
}

func TestShapeCPUIDCaches(t *testing.T) {
	topo := Topology{2, 2, 1, 2}
	for _, tc := range []struct {
		name string
		set  []kvmstate.CPUIDEntry
		want string
	}{
		{"intel", intelHost(), "L1d=48K/12/64 L1i=32K/8/64 L2=1280K/20/64 L3=48M/12/64"},
		{"amd", amdHost(), "L1d=32K/8/64 L1i=32K/8/64 L2=512K/8/64 L3=32M/16/64"},
	} {
		s := vcpuCPUID(shapeCPUID(tc.set, topo, amdHostL1), topo, 3)
		var got []string
		for _, c := range decodeCaches(s) {
			got = append(got, c.String())
		}
		if fmt.Sprint(got) != "["+tc.want+"]" {
			t.Errorf("%s: caches %v, want %s", tc.name, got, tc.want)
		}
		for _, c := range decodeCaches(s) {
			want := 2 // threads per core
			if c.Level == 3 {
				want = 4 // the cores of a die
			}
			if c.SharedBy != want {
				t.Errorf("%s: %s shared by %d, want %d", tc.name, c.Name(), c.SharedBy, want)
			}
		}
	}
}

func TestAMDLegacyCachesAndHostFallback(t *testing.T) {
	set := amdHost()
	// Without TopoExt the guest reads 0x8000_0005 and 0x8000_0006.
	for i := range set {
		if set[i].Function == 0x8000_0001 {
			set[i].ECX &^= 1 << 22
		}
	}
	topo := DefaultTopology(2)
	s := shapeCPUID(set, topo, amdHostL1)
	var got []string
	for _, c := range decodeCaches(s) {
		got = append(got, c.String())
	}
	if want := "[L1d=32K/8/64 L1i=32K/8/64 L2=512K/8/64 L3=32M/16/64]"; fmt.Sprint(got) != want {
		t.Errorf("legacy caches %v, want %s", got, want)
	}
	// Without the host's leaf the empty 0x8000_0005 stays empty.
	if e := findCPUID(shapeCPUID(set, topo, nil), 0x8000_0005, 0); e == nil || regs(e) != [4]uint32{} {
		t.Errorf("0x8000_0005 without host data = %+v, want empty", e)
	}
	// A leaf KVM filled is never replaced.
	set2 := amdHost()
	for i := range set2 {
		if set2[i].Function == 0x8000_0005 {
			set2[i].ECX = 64<<24 | 4<<16 | 64
		}
	}
	if e := findCPUID(shapeCPUID(set2, topo, amdHostL1), 0x8000_0005, 0); e.ECX != 64<<24|4<<16|64 {
		t.Errorf("KVM's 0x8000_0005 ECX replaced: %#x", e.ECX)
	}
	// A missing leaf within range is added.
	var set3 []kvmstate.CPUIDEntry
	for _, e := range amdHost() {
		if e.Function != 0x8000_0005 {
			set3 = append(set3, e)
		}
	}
	if e := findCPUID(shapeCPUID(set3, topo, amdHostL1), 0x8000_0005, 0); e == nil || e.ECX != amdHostL1[0x8000_0005][2] {
		t.Errorf("missing 0x8000_0005 not added from the host: %+v", e)
	}
}

func TestLogicalCount(t *testing.T) {
	for n, want := range map[int]int{1: 1, 2: 2, 3: 4, 8: 8, 9: 16, 200: 255} {
		if got := logicalCount(n); got != want {
			t.Errorf("logicalCount(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestDescribeCPU(t *testing.T) {
	m := DescribeCPU(intelHost(), Topology{2, 2, 1, 2})
	if m.Vendor != vendorIntel || m.Family != 6 || m.Model != 0x6A || m.Stepping != 6 || m.PhysAddrBits != 48 {
		t.Errorf("model %s family %d model %#x stepping %d phys %d", m.Vendor, m.Family, m.Model, m.Stepping, m.PhysAddrBits)
	}
	if !slices.Equal(m.APICIDs, []uint32{0, 1, 2, 3, 4, 5, 6, 7}) || len(m.Caches) != 4 {
		t.Errorf("apic ids %v, %d caches", m.APICIDs, len(m.Caches))
	}
	for _, f := range []string{"hypervisor", "tsc_deadline_timer", "avx2", "lm"} {
		if !slices.Contains(m.Features, f) {
			t.Errorf("features %v lack %s", m.Features, f)
		}
	}
}

// BenchmarkShapeAndPatchCPUID measures what configureVCPU does per vCPU on
// a set the size KVM returns (~80 entries): no cpuid instruction, a few
// microseconds at most.
func BenchmarkShapeAndPatchCPUID(b *testing.B) {
	set := intelHost()
	for i := uint32(0); len(set) < 80; i++ {
		set = append(set, kvmstate.CPUIDEntry{Function: 0xD, Index: i, Flags: sig, EAX: 0x40, EBX: 0x240})
	}
	topo := DefaultTopology(32)
	hostCacheLeaves() // read once per process, as in a VM
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = vcpuCPUID(shapeCPUID(set, topo, hostCacheLeaves()), topo, i%32)
	}
}

// xsaveLeaf is leaf 0xD as KVM_GET_SUPPORTED_CPUID gave it on the nested
// test host (x87, SSE, AVX, PKRU), plus extra sub-leaves.
func xsaveLeaf(xcr0 uint32, extra ...kvmstate.CPUIDEntry) []kvmstate.CPUIDEntry {
	sig := uint32(kvmstate.CPUIDFlagSignificantIndex)
	return append([]kvmstate.CPUIDEntry{
		{Function: 0xD, Index: 0, Flags: sig, EAX: xcr0, EBX: 0xa88, ECX: 0xa88},
		{Function: 0xD, Index: 1, Flags: sig, EAX: 5},
		{Function: 0xD, Index: 2, Flags: sig, EAX: 0x100, EBX: 0x240},
		{Function: 0xD, Index: 9, Flags: sig, EAX: 8, EBX: 0xa80},
	}, extra...)
}

// TestXSAVELeaf holds leaf 0xD against the XCR0 bits it offers: every
// offered component has a sub-leaf, ECX and EBX are the size Linux computes
// from the sub-leaves for all of them (its "XSAVE consistency problem"
// check), and the vCPU starts with that XCR0.
func TestXSAVELeaf(t *testing.T) {
	sig := uint32(kvmstate.CPUIDFlagSignificantIndex)
	for _, tc := range []struct {
		name     string
		in       []kvmstate.CPUIDEntry
		wantXCR0 uint64
		wantSize uint32
	}{
		{"as KVM gave it", xsaveLeaf(0x207), 0x207, 2696},
		{"a component without a sub-leaf (MPX) is not offered", xsaveLeaf(0x21f), 0x207, 2696},
		{"half of MPX is not offered", xsaveLeaf(0x21f,
			kvmstate.CPUIDEntry{Function: 0xD, Index: 3, Flags: sig, EAX: 0x40, EBX: 0x3c0}), 0x207, 2696},
		{"both halves of MPX are", xsaveLeaf(0x21f,
			kvmstate.CPUIDEntry{Function: 0xD, Index: 3, Flags: sig, EAX: 0x40, EBX: 0x3c0},
			kvmstate.CPUIDEntry{Function: 0xD, Index: 4, Flags: sig, EAX: 0x40, EBX: 0x400}), 0x21f, 2696},
		{"ECX too small is corrected", func() []kvmstate.CPUIDEntry {
			l := xsaveLeaf(0x207)
			l[0].ECX = 0x340
			return l
		}(), 0x207, 2696},
		{"a supervisor component is no XCR0 bit", xsaveLeaf(0x1207,
			kvmstate.CPUIDEntry{Function: 0xD, Index: 12, Flags: sig, EAX: 0x18, ECX: 1}), 0x207, 2696},
		{"x87 and SSE only", xsaveLeaf(0x3), 0x3, 576},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := shapeCPUID(append(xsaveLeaf(0)[:0:0], tc.in...), Topology{Threads: 1, Cores: 1, Dies: 1, Packages: 1}, nil)
			xcr0 := guestXCR0(out)
			if xcr0 != tc.wantXCR0 {
				t.Errorf("XCR0 bits offered %#x, want %#x", xcr0, tc.wantXCR0)
			}
			e := findCPUID(out, 0xD, 0)
			if e.ECX != tc.wantSize || e.EBX != tc.wantSize {
				t.Errorf("sub-leaf 0 EBX %d ECX %d, want both %d", e.EBX, e.ECX, tc.wantSize)
			}
			for i := uint32(2); i < 64; i++ {
				if xcr0&(1<<i) == 0 {
					continue
				}
				size, off, ok := xsaveComponent(out, i)
				if !ok || off+size > e.ECX {
					t.Errorf("component %d offered but described as size %d at %d (ok %v), area %d", i, size, off, ok, e.ECX)
				}
			}
			for _, g := range xfeatureGroups {
				if xcr0&g != 0 && xcr0&g != g {
					t.Errorf("XCR0 %#x offers part of group %#x", xcr0, g)
				}
			}
			if got := bootXCR0(out); got != xcr0|1 {
				t.Errorf("boot XCR0 %#x, want %#x", got, xcr0|1)
			}
		})
	}
}
