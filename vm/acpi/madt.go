package acpi

import (
	"encoding/binary"
	"fmt"
)

// MADT ("APIC") layout (ACPI 6.5 §5.2.12).
const (
	madtRevision     = 5
	madtPCATCompat   = 1 << 0
	madtTypeLAPIC    = 0
	madtTypeIOAPIC   = 1
	madtTypeOverride = 2
	lapicEnabled     = 1 << 0
	maxCPUs          = 255
)

// buildMADT returns the MADT: one Processor Local APIC entry per vCPU (UID =
// index, Enabled), the IOAPIC, and one interrupt source override.
//
// PCAT_COMPAT is set unless cfg.NoPIC: KVM_CREATE_IRQCHIP does create a
// pair of 8259s wired to LINT0, and the flag tells the OS to mask them
// before using the IOAPIC. (Linux ignores the PIC on a HW-reduced platform
// either way; the flag keeps the table truthful for other guests.)
//
// Overrides: IRQ 4 → GSI 4 (the serial port, as Cloud Hypervisor lists it;
// flags 0 = ISA default, edge/active-high), which restates identity and
// keeps the COM1 wiring explicit. There is deliberately no IRQ 0 → GSI 2
// override: that one is right for QEMU, which routes GSI 0 to IOAPIC pin 2,
// but KVM's default GSI routing (and the IOAPIC entries chsnap adds with
// KVM_SET_GSI_ROUTING) send GSI n to pin n, so the PIT's IRQ 0 arrives on
// pin 0 and an override would point the OS at the wrong pin.
func buildMADT(cfg Config) ([]byte, error) {
	n := len(cfg.APICIDs)
	if n == 0 || n > maxCPUs {
		return nil, fmt.Errorf("acpi: %d vCPUs, want 1 to %d", n, maxCPUs)
	}
	seen := make(map[uint32]int, n)
	for i, id := range cfg.APICIDs {
		if id >= 0xFF {
			return nil, fmt.Errorf("acpi: vCPU %d has APIC ID %d, xAPIC IDs must be below 255", i, id)
		}
		if j, dup := seen[id]; dup {
			return nil, fmt.Errorf("acpi: vCPUs %d and %d have the same APIC ID %d", j, i, id)
		}
		seen[id] = i
	}
	lapic, ioapic := cfg.LAPICAddr, cfg.IOAPICAddr
	if lapic == 0 {
		lapic = DefaultLAPICAddr
	}
	if ioapic == 0 {
		ioapic = DefaultIOAPICAddr
	}
	le := binary.LittleEndian
	t := make([]byte, 44, 44+8*n+12+10)
	le.PutUint32(t[36:], lapic)
	if !cfg.NoPIC {
		le.PutUint32(t[40:], madtPCATCompat)
	}
	for i, id := range cfg.APICIDs {
		t = append(t, madtTypeLAPIC, 8, byte(i), byte(id))
		t = le.AppendUint32(t, lapicEnabled)
	}
	t = append(t, madtTypeIOAPIC, 12, cfg.IOAPICID, 0)
	t = le.AppendUint32(t, ioapic)
	t = le.AppendUint32(t, cfg.IOAPICGSIBase)
	t = append(t, madtTypeOverride, 10, 0, 4) // bus ISA, source IRQ 4
	t = le.AppendUint32(t, 4)                 // GSI 4
	t = le.AppendUint16(t, 0)                 // flags: conforms to bus
	putHeader(t, "APIC", madtRevision)
	setChecksum(t, 9)
	return t, nil
}
