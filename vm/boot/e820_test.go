package boot

import (
	"slices"
	"testing"
)

func TestE820(t *testing.T) {
	head := []string{
		"BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
		"BIOS-e820: [mem 0x000000000009fc00-0x000000000009ffff] reserved",
		"BIOS-e820: [mem 0x00000000000e0000-0x00000000000fffff] reserved",
	}
	tests := []struct {
		name string
		mem  uint64
		want []string
	}{
		{"256MiB", 256 << 20, append(slices.Clone(head),
			"BIOS-e820: [mem 0x0000000000100000-0x000000000fffffff] usable")},
		{"3GiB", 3 << 30, append(slices.Clone(head),
			"BIOS-e820: [mem 0x0000000000100000-0x00000000bfffffff] usable")},
		{"5GiB", 5 << 30, append(slices.Clone(head),
			"BIOS-e820: [mem 0x0000000000100000-0x00000000bfffffff] usable",
			"BIOS-e820: [mem 0x0000000100000000-0x000000017fffffff] usable")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := E820Map(tc.mem)
			got := E820Lines(m)
			if !slices.Equal(got, tc.want) {
				t.Errorf("E820Lines =\n%q\nwant\n%q", got, tc.want)
			}
			var ram uint64
			for i, e := range m {
				if e.Type == E820RAM {
					ram += e.Size
				}
				if i > 0 && e.Addr < m[i-1].Addr+m[i-1].Size {
					t.Errorf("entry %d overlaps or is out of order", i)
				}
			}
			// Usable RAM is all RAM minus the reserved EBDA and the hole
			// 0x9FC00–1 MiB, none of which is lost: the hole is not RAM in a PC.
			if want := tc.mem - (KernelAddr - EBDAStart); ram != want {
				t.Errorf("usable bytes = %#x, want %#x", ram, want)
			}
		})
	}
}

func TestE820LinesTypes(t *testing.T) {
	got := E820Lines([]E820Entry{{0x1000, 0x1000, E820ACPI}, {0x2000, 0x1000, E820NVS}, {0x3000, 0x1000, E820Unusable}, {0x4000, 0x1000, 7}, {0x5000, 0x1000, 99}})
	want := []string{
		"BIOS-e820: [mem 0x0000000000001000-0x0000000000001fff] ACPI data",
		"BIOS-e820: [mem 0x0000000000002000-0x0000000000002fff] ACPI NVS",
		"BIOS-e820: [mem 0x0000000000003000-0x0000000000003fff] unusable",
		"BIOS-e820: [mem 0x0000000000004000-0x0000000000004fff] persistent (type 7)",
		"BIOS-e820: [mem 0x0000000000005000-0x0000000000005fff] type 99",
	}
	if !slices.Equal(got, want) {
		t.Errorf("E820Lines =\n%q\nwant\n%q", got, want)
	}
}

func TestLinuxE820(t *testing.T) {
	m := E820Map(512 << 20)
	if got := LinuxE820(m, KindBzImage); !slices.Equal(got, m) {
		t.Errorf("bzImage: LinuxE820 changed the map: %v", got)
	}
	// The PVH entry adds the ISA hole as reserved, which swallows both
	// reserved ranges below 1 MiB (seen with Linux 6.12 under QEMU).
	want := []string{
		"BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
		"BIOS-e820: [mem 0x000000000009fc00-0x00000000000fffff] reserved",
		"BIOS-e820: [mem 0x0000000000100000-0x000000001fffffff] usable",
	}
	if got := E820Lines(LinuxE820(m, KindPVH)); !slices.Equal(got, want) {
		t.Errorf("PVH: E820Lines(LinuxE820) =\n%q\nwant\n%q", got, want)
	}
	// Overlaps resolve to the highest type; touching equal types merge.
	got := sanitizeE820([]E820Entry{{0, 0x3000, E820RAM}, {0x1000, 0x1000, E820ACPI}, {0x3000, 0x1000, E820RAM}, {0x8000, 0, E820Reserved}})
	wantM := []E820Entry{{0, 0x1000, E820RAM}, {0x1000, 0x1000, E820ACPI}, {0x2000, 0x2000, E820RAM}}
	if !slices.Equal(got, wantM) {
		t.Errorf("sanitizeE820 = %v, want %v", got, wantM)
	}
}
