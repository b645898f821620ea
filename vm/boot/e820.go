package boot

import (
	"fmt"
	"slices"
)

// E820 memory types (arch/x86/include/asm/e820/types.h).
const (
	E820RAM      = 1
	E820Reserved = 2
	E820ACPI     = 3
	E820NVS      = 4
	E820Unusable = 5
)

// E820Entry is one range of the BIOS memory map, mirroring struct
// boot_e820_entry (packed: u64 addr, u64 size, u32 type).
type E820Entry struct {
	Addr uint64
	Size uint64
	Type uint32
}

// E820Map returns the memory map for memSize bytes of guest RAM laid out as
// memdump lays it out (RAM at [0, min(memSize, 3 GiB)), the rest from 4 GiB):
//
//	[0, 0x9FC00)            usable
//	[0x9FC00, 0xA0000)      reserved (a PC's EBDA)
//	[0xE0000, 0x100000)     reserved (ACPI tables; a PC's BIOS area)
//	[1 MiB, min(mem, 3 GiB)) usable
//	[4 GiB, 4 GiB + rest)   usable, if memSize > 3 GiB
//
// The entries are sorted, do not overlap, and no two neighbours have the same
// type, so Linux prints them unchanged after its sanitize pass. memSize must
// be above 1 MiB (Setup checks); smaller sizes give only the ranges below it.
func E820Map(memSize uint64) []E820Entry {
	m := []E820Entry{{Addr: 0, Size: min(memSize, EBDAStart), Type: E820RAM}}
	if memSize <= EBDAStart {
		return m
	}
	m = append(m,
		E820Entry{Addr: EBDAStart, Size: EBDAEnd - EBDAStart, Type: E820Reserved},
		E820Entry{Addr: ACPIAddr, Size: ACPIEnd - ACPIAddr, Type: E820Reserved},
	)
	if memSize <= KernelAddr {
		return m
	}
	low := min(memSize, LowRAMLimit)
	m = append(m, E820Entry{Addr: KernelAddr, Size: low - KernelAddr, Type: E820RAM})
	if memSize > LowRAMLimit {
		m = append(m, E820Entry{Addr: HighRAMBase, Size: memSize - LowRAMLimit, Type: E820RAM})
	}
	return m
}

// E820Lines formats a memory map exactly as Linux 6.1 prints it at boot
// (arch/x86/kernel/e820.c, e820__print_table with who = "BIOS-e820"), one
// string per entry, e.g.
//
//	BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable
//
// Each line is what follows the printk prefix ("[    0.000000] ") in dmesg.
func E820Lines(m []E820Entry) []string {
	lines := make([]string, 0, len(m))
	for _, e := range m {
		// The kernel's %#018Lx always prints "0x" then 16 digits, zero included.
		lines = append(lines, fmt.Sprintf("BIOS-e820: [mem 0x%016x-0x%016x] %s", e.Addr, e.Addr+e.Size-1, e820TypeName(e.Type)))
	}
	return lines
}

// e820TypeName mirrors e820_print_type in Linux 6.1.
func e820TypeName(t uint32) string {
	switch t {
	case E820RAM, 128: // E820_TYPE_RESERVED_KERN prints as usable
		return "usable"
	case E820Reserved:
		return "reserved"
	case 0xefffffff: // E820_TYPE_SOFT_RESERVED
		return "soft reserved"
	case E820ACPI:
		return "ACPI data"
	case E820NVS:
		return "ACPI NVS"
	case E820Unusable:
		return "unusable"
	case 7, 12: // E820_TYPE_PMEM, E820_TYPE_PRAM
		return fmt.Sprintf("persistent (type %d)", t)
	}
	return fmt.Sprintf("type %d", t)
}

// isaStart and isaEnd bound the legacy ISA hole that Linux's PVH entry code
// adds to the memory map as reserved (init_pvh_bootparams in
// arch/x86/platform/pvh/enlighten.c).
const (
	isaStart = 0xA0000
	isaEnd   = 0x100000
)

// LinuxE820 returns the memory map as Linux prints it at boot when given m
// through entry kind k: for PVH it first appends the ISA range
// [0xA0000, 1 MiB) as reserved, as the kernel's PVH code does; then, like
// e820__update_table, it resolves overlaps in favour of the highest type
// and merges touching ranges of the same type. So E820Lines(LinuxE820(E820Map(mem), k))
// are exactly the kernel's "BIOS-e820" lines. For the 64-bit bzImage entry
// the map is printed unchanged.
func LinuxE820(m []E820Entry, k Kind) []E820Entry {
	in := slices.Clone(m)
	if k == KindPVH && len(in) < e820MaxZeroPage-1 {
		in = append(in, E820Entry{Addr: isaStart, Size: isaEnd - isaStart, Type: E820Reserved})
	}
	return sanitizeE820(in)
}

// sanitizeE820 splits the map at every range boundary, gives each piece the
// highest type among the ranges covering it, and merges touching pieces of
// the same type; uncovered pieces and empty ranges disappear.
func sanitizeE820(in []E820Entry) []E820Entry {
	var bounds []uint64
	for _, e := range in {
		if e.Size == 0 || e.Addr+e.Size < e.Addr {
			continue
		}
		bounds = append(bounds, e.Addr, e.Addr+e.Size)
	}
	slices.Sort(bounds)
	bounds = slices.Compact(bounds)
	var out []E820Entry
	for i := 0; i+1 < len(bounds); i++ {
		a, b := bounds[i], bounds[i+1]
		var typ uint32
		for _, e := range in {
			if e.Size != 0 && e.Addr <= a && b <= e.Addr+e.Size {
				typ = max(typ, e.Type)
			}
		}
		if typ == 0 {
			continue
		}
		if n := len(out); n > 0 && out[n-1].Type == typ && out[n-1].Addr+out[n-1].Size == a {
			out[n-1].Size += b - a
			continue
		}
		out = append(out, E820Entry{Addr: a, Size: b - a, Type: typ})
	}
	return out
}
