package vm

import (
	"testing"

	"github.com/chsnap/chsnap/kvmstate"
)

func TestVCPUCPUID(t *testing.T) {
	base := []kvmstate.CPUIDEntry{
		{Function: 1, EBX: 0xAABB0800, EDX: cpuid1EDXHTT},
		{Function: 0xB, Index: 0, EDX: 7},
		{Function: 0xB, Index: 1, EDX: 7},
		{Function: 0x8000_001E, EAX: 9},
		{Function: 7, EBX: 0x1234},
	}
	got := vcpuCPUID(base, 5, 6)
	if base[0].EBX != 0xAABB0800 || base[1].EDX != 7 {
		t.Fatal("vcpuCPUID modified the shared base set")
	}
	if e := got[0]; e.EBX>>24 != 5 || (e.EBX>>16)&0xFF != 8 || e.EBX&0xFFFF != 0x0800 {
		t.Errorf("leaf 1 EBX = %#x, want APIC id 5, count 8, low half 0x0800", e.EBX)
	}
	if got[0].ECX&cpuid1ECXHypervisor == 0 || got[0].ECX&cpuid1ECXTSCDeadline == 0 {
		t.Errorf("leaf 1 ECX = %#x, want hypervisor and TSC-deadline bits", got[0].ECX)
	}
	if got[0].EDX&cpuid1EDXHTT == 0 {
		t.Errorf("leaf 1 EDX = %#x, want HTT with 6 vCPUs", got[0].EDX)
	}
	if got[1].EDX != 5 || got[2].EDX != 5 || got[3].EAX != 5 {
		t.Errorf("x2APIC ids = %d, %d, %d; want 5", got[1].EDX, got[2].EDX, got[3].EAX)
	}
	if got[4] != base[4] {
		t.Errorf("unrelated leaf changed: %+v", got[4])
	}
	if one := vcpuCPUID(base, 0, 1); one[0].EDX&cpuid1EDXHTT != 0 || (one[0].EBX>>16)&0xFF != 1 {
		t.Errorf("1 vCPU: leaf 1 EBX %#x EDX %#x, want count 1 and no HTT", one[0].EBX, one[0].EDX)
	}
}

func TestLogicalCount(t *testing.T) {
	for n, want := range map[int]int{1: 1, 2: 2, 3: 4, 8: 8, 9: 16, 200: 255} {
		if got := logicalCount(n); got != want {
			t.Errorf("logicalCount(%d) = %d, want %d", n, got, want)
		}
	}
}
