package vm

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/chsnap/chsnap/kvmstate"
)

// doctor returns a copy of set with fn's entry (index idx) changed by f.
func doctor(set []kvmstate.CPUIDEntry, fn, idx uint32, f func(e *kvmstate.CPUIDEntry)) []kvmstate.CPUIDEntry {
	out := slices.Clone(set)
	e := findCPUID(out, fn, idx)
	if e == nil {
		panic("doctor: no such leaf")
	}
	f(e)
	return out
}

// savedFrom is what an archive holds for vCPU i of a VM booted on host.
func savedFrom(host []kvmstate.CPUIDEntry, topo Topology, i int) []kvmstate.CPUIDEntry {
	return vcpuCPUID(shapeCPUID(host, topo, amdHostL1), topo, i)
}

func TestCheckCPUCompatSameHost(t *testing.T) {
	for _, host := range [][]kvmstate.CPUIDEntry{intelHost(), amdHost()} {
		for _, topo := range testTopologies {
			saved := savedFrom(host, topo, topo.CPUs()-1)
			// What a guest changes at run time (OSXSAVE, OSPKE) is allowed too.
			saved = doctor(saved, 1, 0, func(e *kvmstate.CPUIDEntry) { e.ECX |= 1 << 27 })
			warns, err := CheckCPUCompat(saved, 2_000_000, host, 2_000_100)
			if err != nil || len(warns) != 0 {
				t.Errorf("%s on its own host: warnings %q, error %v", topo, warns, err)
			}
		}
	}
}

func TestCheckCPUCompatDiffs(t *testing.T) {
	topo := Topology{2, 2, 1, 2}
	intel := intelHost()
	saved := savedFrom(intel, topo, 5)
	for _, tc := range []struct {
		name  string
		host  []kvmstate.CPUIDEntry
		want  []string // each must appear in the error
		warns []string
	}{
		{"missing avx2 and avx512f", doctor(intel, 7, 0, func(e *kvmstate.CPUIDEntry) { e.EBX &^= 1<<5 | 1<<16 }),
			[]string{"leaf 0x7.0 EBX: bits 5 (avx2), 16 (avx512f) not offered by this host"}, nil},
		{"missing an unnamed bit", doctor(intel, 7, 0, func(e *kvmstate.CPUIDEntry) { e.ECX &^= 1 << 6 }),
			[]string{"leaf 0x7.0 ECX: bit 6 not offered"}, nil},
		{"missing x2apic and lm", doctor(doctor(intel, 1, 0, func(e *kvmstate.CPUIDEntry) { e.ECX &^= 1 << 20 }),
			0x8000_0001, 0, func(e *kvmstate.CPUIDEntry) { e.EDX &^= 1 << 29 }),
			[]string{"leaf 0x1.0 ECX: bit 20 (sse4_2)", "leaf 0x80000001.0 EDX: bit 29 (lm)"}, nil},
		{"fewer address bits", doctor(intel, 0x8000_0008, 0, func(e *kvmstate.CPUIDEntry) { e.EAX = 0x302E }),
			[]string{"leaf 0x80000008.0 EAX[7:0]: physical address bits 48, more than this host's 46"}, nil},
		{"lower maximum leaf", doctor(intel, 0, 0, func(e *kvmstate.CPUIDEntry) { e.EAX = 0xD }),
			[]string{"leaf 0x0.0 EAX[31:0]: maximum leaf 31, more than this host's 13"}, nil},
		{"other vendor", amdHost(), []string{`vendor "GenuineIntel", this host "AuthenticAMD"`},
			[]string{"leaf 0x1.0 EAX: saved 0x606a6, this host 0xa00f11 (CPU identity differs)", "leaf 0x80000001.0 EAX: saved 0x0, this host 0xa00f11 (CPU identity differs)"}},
		{"other model only", doctor(intel, 1, 0, func(e *kvmstate.CPUIDEntry) { e.EAX = 0x000806F8 }),
			nil, []string{"leaf 0x1.0 EAX: saved 0x606a6, this host 0x806f8 (CPU identity differs)"}},
		{"other caches and topology only", doctor(doctor(intel, 4, 3, func(e *kvmstate.CPUIDEntry) { e.ECX = 1023 }),
			0xB, 1, func(e *kvmstate.CPUIDEntry) { e.EBX = 128 }), nil, nil},
		{"more features here", doctor(intel, 7, 0, func(e *kvmstate.CPUIDEntry) { e.ECX |= 1 << 30 }), nil, nil},
	} {
		warns, err := CheckCPUCompat(saved, 0, tc.host, 0)
		if len(tc.want) == 0 {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
		} else {
			var me *CPUMismatchError
			if !errors.Is(err, ErrCPUMismatch) || !errors.As(err, &me) {
				t.Errorf("%s: error %v, want a CPUMismatchError", tc.name, err)
				continue
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: error %q lacks %q", tc.name, err, w)
				}
			}
			if len(me.Diffs) < len(tc.want) {
				t.Errorf("%s: %d diffs, want %d", tc.name, len(me.Diffs), len(tc.want))
			}
		}
		if !slices.Equal(warns, tc.warns) {
			t.Errorf("%s: warnings %q, want %q", tc.name, warns, tc.warns)
		}
	}
}

func TestCheckCPUCompatXSAVE(t *testing.T) {
	base := intelHost()
	base = append(base,
		kvmstate.CPUIDEntry{Function: 0xD, Index: 0, Flags: sig, EAX: 0x2E7, EBX: 0x340, ECX: 0x2B00},
		kvmstate.CPUIDEntry{Function: 0xD, Index: 2, Flags: sig, EAX: 0x100, EBX: 0x240},
		kvmstate.CPUIDEntry{Function: 0xD, Index: 5, Flags: sig, EAX: 0x40, EBX: 0x440},
		kvmstate.CPUIDEntry{Function: 0xD, Index: 6, Flags: sig, EAX: 0x200, EBX: 0x480},
		kvmstate.CPUIDEntry{Function: 0xD, Index: 7, Flags: sig, EAX: 0x400, EBX: 0x680},
		kvmstate.CPUIDEntry{Function: 0xD, Index: 9, Flags: sig, EAX: 8, EBX: 0x2AF8},
	)
	saved := savedFrom(base, DefaultTopology(2), 1)
	saved = doctor(saved, 0xD, 0, func(e *kvmstate.CPUIDEntry) { e.EBX = 0xA80 }) // the guest's XCR0 in use: ignored
	host := doctor(doctor(base, 0xD, 0, func(e *kvmstate.CPUIDEntry) { e.ECX = 0xA88; e.EAX = 0x7 }),
		0xD, 2, func(e *kvmstate.CPUIDEntry) { e.EBX = 0x280 })
	_, err := CheckCPUCompat(saved, 0, host, 0)
	for _, w := range []string{"leaf 0xd.0 EAX: bits 5, 6, 7, 9 not offered", "leaf 0xd.0 ECX[31:0]: XSAVE area size for all components 11008, more than this host's 2696", "leaf 0xd.2 EBX: saved 0x240, this host 0x280 (must be equal)"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v lacks %q", err, w)
		}
	}
	if err != nil && strings.Contains(err.Error(), "0xd.0 EBX") {
		t.Errorf("dynamic XSAVE size compared: %v", err)
	}
}

func TestCheckCPUCompatTSCAndUnknownLeaves(t *testing.T) {
	host := intelHost()
	saved := append(savedFrom(host, DefaultTopology(1), 0), kvmstate.CPUIDEntry{Function: 0x14, EAX: 1})
	warns, err := CheckCPUCompat(saved, 2_000_000, host, 2_600_000)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"leaf 0x14.0 EAX: saved 0x1, absent on this host",
		"guest TSC runs at 2000000 kHz, this host's at 2600000 kHz: the guest TSC must be scaled (KVM_SET_TSC_KHZ)",
	}
	if !slices.Equal(warns, want) {
		t.Errorf("warnings %q, want %q", warns, want)
	}
}

func TestTSCScaling(t *testing.T) {
	for _, tc := range []struct {
		saved, host uint32
		can         bool
		scale       bool
		warn        string
	}{
		{2_000_000, 2_000_000, false, false, ""},
		{2_000_000, 2_000_400, false, false, ""}, // 200 ppm: jitter
		{0, 2_000_000, true, false, ""},
		{2_000_000, 3_000_000, true, true, ""},
		{2_000_000, 3_000_000, false, false, "guest time will run 1.5000× too fast"},
		{3_000_000, 2_000_000, false, false, "too slow"},
	} {
		scale, warn := TSCScaling(tc.saved, tc.host, tc.can)
		if scale != tc.scale || (tc.warn == "") != (warn == "") || !strings.Contains(warn, tc.warn) {
			t.Errorf("TSCScaling(%d, %d, %v) = %v, %q; want %v, %q", tc.saved, tc.host, tc.can, scale, warn, tc.scale, tc.warn)
		}
	}
}

// TestCheckCPUCompatRealKVM shapes this host's supported CPUID for a few
// topologies, sets it on a real vCPU, reads it back as a snapshot does
// (KVM_GET_CPUID2) and checks CheckCPUCompat finds nothing to refuse or
// warn about against the same host. Needs /dev/kvm.
func TestCheckCPUCompatRealKVM(t *testing.T) {
	sys, err := kvmstate.Open("/dev/kvm")
	if err != nil {
		t.Skipf("SKIPPED: needs KVM, which is unavailable here: %v", err)
	}
	defer sys.Close()
	supported, err := sys.SupportedCPUID()
	if err != nil {
		t.Fatal(err)
	}
	kvm, err := sys.CreateVM()
	if err != nil {
		t.Fatal(err)
	}
	defer kvm.Close()
	for i, topo := range []Topology{DefaultTopology(1), DefaultTopology(8), {2, 2, 1, 2}, {1, 2, 2, 1}} {
		cpu, err := kvm.CreateVCPU(i)
		if err != nil {
			t.Fatal(err)
		}
		set := vcpuCPUID(shapeCPUID(supported, topo, hostCacheLeaves()), topo, topo.CPUs()-1)
		if err := cpu.SetCPUID2(set); err != nil {
			t.Fatalf("%s: KVM_SET_CPUID2: %v", topo, err)
		}
		back, err := cpu.CPUID2()
		if err != nil {
			t.Fatal(err)
		}
		warns, err := CheckCPUCompat(back, 0, supported, 0)
		if err != nil || len(warns) > 0 {
			t.Errorf("%s: read back from KVM: warnings %q, error %v", topo, warns, err)
		}
		m := DescribeCPU(supported, topo)
		t.Logf("%s: %s, caches %v", topo, m.Vendor, m.Caches)
		cpu.Close()
	}
}
