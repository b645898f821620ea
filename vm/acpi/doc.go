// Package acpi builds the ACPI tables chsnap gives a guest: RSDP, XSDT, a
// hardware-reduced FADT, a DSDT and a MADT, as one blob to copy into guest
// RAM at 0xE0000 (inside the area ACPICA scans for the RSDP, and e820
// reserved by vm/boot), plus a small AML encoder for the DSDT.
//
// Why ACPI: the Debian kernel chsnap boots has no MP-table support
// (CONFIG_X86_MPPARSE unset), so CPUs and the IOAPIC come only from the
// MADT, and virtio-mmio devices are found only through the DSDT (_HID
// "LNRO0005"). The FADT sets HW_REDUCED_ACPI, so Linux neither programs the
// 8259s nor the PIT and uses the LAPIC timer and kvm-clock; reset and S5
// power-off go through I/O port 0x600 (RESET_REG, value 1; SLEEP_CONTROL_REG,
// value SLP_TYP 5 << 2 | SLP_EN = 0x34), the scheme Cloud Hypervisor uses.
//
// Formats follow the ACPI 6.5 specification (§5.2 tables, §19–20 AML); the
// layout choices follow Firecracker and Cloud Hypervisor as summarised in
// kvm-x86-brief.md §2. The package issues no ioctls and knows nothing of
// guest memory: Build returns bytes, the caller writes them.
//
// Blob layout from Base (each table 16-byte aligned, order fixed):
//
//	RSDP (36 B) · XSDT (→ FACP, APIC) · FACP (276 B, X_DSDT → DSDT) · APIC (MADT) · DSDT
//
// The blob must end by TablesEnd (0xFFFF0): the reset vector above it holds
// vm/boot's reset stub.
package acpi
