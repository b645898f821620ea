package boot

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/chsnap/chsnap/kvmstate"
)

// Boot GDT selectors. Linux's boot.rst names __BOOT_CS 0x10 and __BOOT_DS
// 0x18, but the decompressor loads its own GDT before using a selector, and
// Firecracker boots Linux with this layout; the test guest does the same.
const (
	SelectorCode = 0x08
	SelectorData = 0x10
	SelectorTSS  = 0x18
)

// Boot GDT descriptors (the values Firecracker and Cloud Hypervisor use).
const (
	// GDTCode64 is a flat 64-bit code segment: P, DPL 0, S, type 0xB
	// (execute/read, accessed), L, G, limit 0xFFFFF.
	GDTCode64 = 0x00AF_9B00_0000_FFFF
	// GDTCode32 is a flat 32-bit code segment (D/B instead of L), for PVH.
	GDTCode32 = 0x00CF_9B00_0000_FFFF
	// GDTData is a flat data segment: type 0x3 (read/write, accessed), D/B, G.
	GDTData = 0x00CF_9300_0000_FFFF
	// GDTTSS64 is a busy 64-bit TSS (type 0xB) at base 0 with G set.
	GDTTSS64 = 0x008F_8B00_0000_FFFF
	// GDTTSS32 is a busy 32-bit TSS at base 0, limit 0x67: what pvh.pandoc
	// requires of TR at the PVH entry.
	GDTTSS32 = 0x0000_8B00_0000_0067
)

// Control-register and flag bits set at entry.
const (
	CR0PE          = 1 << 0
	CR0ET          = 1 << 4
	CR0PG          = 1 << 31
	CR4PAE         = 1 << 5
	EFERLME        = 1 << 8
	EFERLMA        = 1 << 10
	rflagsReserved = 1 << 1 // bit 1 of RFLAGS always reads 1
)

// FPU state at boot (KVM_SET_FPU), as after FNINIT with SSE exceptions masked.
const (
	FPUControlWord = 0x37F
	MXCSR          = 0x1F80
)

// MSR is one model-specific register value for KVM_SET_MSRS.
type MSR struct {
	Index uint32
	Value uint64
}

// BootMSRs returns the MSR values every vCPU starts with: the syscall and
// sysenter MSRs cleared, the TSC at 0, fast strings enabled in
// IA32_MISC_ENABLE and MTRRs enabled with write-back as the default type
// (the set Firecracker and Cloud Hypervisor write). The vm package must
// write them after KVM_SET_CPUID2.
func BootMSRs() []MSR {
	return []MSR{
		{Index: 0x174, Value: 0},         // IA32_SYSENTER_CS
		{Index: 0x175, Value: 0},         // IA32_SYSENTER_ESP
		{Index: 0x176, Value: 0},         // IA32_SYSENTER_EIP
		{Index: 0xC000_0081, Value: 0},   // STAR
		{Index: 0xC000_0082, Value: 0},   // LSTAR
		{Index: 0xC000_0083, Value: 0},   // CSTAR
		{Index: 0xC000_0084, Value: 0},   // SYSCALL_MASK (FMASK)
		{Index: 0xC000_0102, Value: 0},   // KERNEL_GS_BASE
		{Index: 0x10, Value: 0},          // IA32_TSC
		{Index: 0x1A0, Value: 1},         // IA32_MISC_ENABLE: FAST_STRING
		{Index: 0x2FF, Value: 1<<11 | 6}, // IA32_MTRR_DEF_TYPE: E, default WB
	}
}

// gdtFor returns the boot GDT for a kind of entry.
func gdtFor(k Kind) [4]uint64 {
	if k == KindPVH {
		return [4]uint64{0, GDTCode32, GDTData, GDTTSS32}
	}
	return [4]uint64{0, GDTCode64, GDTData, GDTTSS64}
}

// writeDescriptorTables writes the GDT at GDTAddr and a zero IDT entry at IDTAddr.
func writeDescriptorTables(mem io.WriterAt, gdt [4]uint64) error {
	b := make([]byte, IDTAddr-GDTAddr+8)
	for i, d := range gdt {
		binary.LittleEndian.PutUint64(b[i*8:], d)
	}
	if err := writeAt(mem, b, GDTAddr); err != nil {
		return fmt.Errorf("write boot GDT and IDT: %w", err)
	}
	return nil
}

// writePageTables identity-maps the first 4 GiB with 2 MiB pages: one PML4
// entry, four PDPT entries and four page directories of 512 entries each.
// This covers the kernel's init_size range, boot_params and the command line
// as the 64-bit boot protocol requires, wherever the kernel relocates itself
// below 4 GiB.
func writePageTables(mem io.WriterAt) error {
	const present, writable, huge = 1 << 0, 1 << 1, 1 << 7
	le := binary.LittleEndian
	b := make([]byte, PDAddr+4*4096-PML4Addr)
	le.PutUint64(b[0:], PDPTAddr|present|writable)
	for i := uint64(0); i < 4; i++ {
		le.PutUint64(b[PDPTAddr-PML4Addr+i*8:], (PDAddr+i*4096)|present|writable)
	}
	for i := uint64(0); i < identityMapSize>>21; i++ {
		le.PutUint64(b[PDAddr-PML4Addr+i*8:], i<<21|present|writable|huge)
	}
	if err := writeAt(mem, b, PML4Addr); err != nil {
		return fmt.Errorf("write boot page tables: %w", err)
	}
	return nil
}

// SegmentFromDescriptor expands a GDT descriptor into the kvm_segment KVM
// expects for selector sel: base, type, S, DPL, P, AVL, L, D/B and G as
// stored, the limit scaled to bytes ((limit << 12) | 0xFFF) when G is set,
// and Unusable set for a not-present descriptor.
func SegmentFromDescriptor(sel uint16, d uint64) kvmstate.Segment {
	limit := uint32(d&0xFFFF | (d>>48&0xF)<<16)
	g := uint8(d >> 55 & 1)
	if g == 1 {
		limit = limit<<12 | 0xFFF
	}
	p := uint8(d >> 47 & 1)
	return kvmstate.Segment{
		Base:     d>>16&0xFF_FFFF | (d>>56&0xFF)<<24,
		Limit:    limit,
		Selector: sel,
		Type:     uint8(d >> 40 & 0xF),
		S:        uint8(d >> 44 & 1),
		DPL:      uint8(d >> 45 & 3),
		Present:  p,
		AVL:      uint8(d >> 52 & 1),
		L:        uint8(d >> 53 & 1),
		DB:       uint8(d >> 54 & 1),
		G:        g,
		Unusable: 1 - p,
	}
}

// ApplySregs sets the segment, descriptor-table and control registers of
// the boot vCPU for this entry, keeping the fields Setup has no say in
// (APIC base, CR2, CR8, LDT, pending interrupts) as read from KVM_GET_SREGS.
//
// 64-bit entry: CS 0x08 (64-bit code), DS/ES/FS/GS/SS 0x10, TR 0x18,
// CR0 = PE|ET|PG, CR3 = PML4Addr, CR4 = PAE, EFER = LME|LMA.
// PVH entry: CS 0x08 (32-bit code), data 0x10, TR 0x18 (32-bit TSS),
// CR0 = PE|ET, CR3 = CR4 = EFER = 0 (paging off, pvh.pandoc).
// ET is hard-wired to 1 on every x86-64 CPU, and KVM forces it on anyway.
func (e *Entry) ApplySregs(s *kvmstate.Sregs) {
	code := SegmentFromDescriptor(SelectorCode, e.GDT[SelectorCode/8])
	data := SegmentFromDescriptor(SelectorData, e.GDT[SelectorData/8])
	s.CS = code
	s.DS, s.ES, s.FS, s.GS, s.SS = data, data, data, data, data
	s.TR = SegmentFromDescriptor(SelectorTSS, e.GDT[SelectorTSS/8])
	s.GDT = kvmstate.DTable{Base: GDTAddr, Limit: uint16(len(e.GDT)*8 - 1)}
	s.IDT = kvmstate.DTable{Base: IDTAddr, Limit: 0}
	if e.Kind == KindPVH {
		s.CR0 = CR0PE | CR0ET
		s.CR3, s.CR4, s.EFER = 0, 0, 0
		return
	}
	s.CR0 = CR0PE | CR0ET | CR0PG
	s.CR3 = PML4Addr
	s.CR4 = CR4PAE
	s.EFER = EFERLME | EFERLMA
}
