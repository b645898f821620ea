/*
 * apic.c: local APIC and IOAPIC programming (ring 3: both are MMIO, which
 * kvm_pvm lets ring 3 do at full speed). xAPIC mode only.
 */
#include "guest.h"

#define LAPIC_ID	0x020
#define LAPIC_TPR	0x080
#define LAPIC_SVR	0x0f0
#define LAPIC_ICR_LO	0x300
#define LAPIC_ICR_HI	0x310
#define LAPIC_LVT_LINT0	0x350
#define LAPIC_LVT_LINT1	0x360
#define LAPIC_LVT_ERR	0x370

static u32 lapic_read(u32 reg) { return mmio_read32(lapic_base + reg); }
static void lapic_write(u32 reg, u32 v) { mmio_write32(lapic_base + reg, v); }

u32 lapic_id(void)
{
	return lapic_read(LAPIC_ID) >> 24;
}

/* lapic_enable software-enables this CPU's LAPIC with LINT0 (ExtINT from a PIC) masked. */
void lapic_enable(void)
{
	lapic_write(LAPIC_TPR, 0);
	lapic_write(LAPIC_LVT_LINT0, 1u << 16);
	lapic_write(LAPIC_LVT_LINT1, 0x400);	/* NMI */
	lapic_write(LAPIC_LVT_ERR, 1u << 16);
	lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS);
}

/* lapic_ipi sends an IPI and waits (bounded) for delivery; -1 on timeout. */
int lapic_ipi(u32 apic_id, u32 icr_low)
{
	lapic_write(LAPIC_ICR_HI, apic_id << 24);
	lapic_write(LAPIC_ICR_LO, icr_low);
	for (int i = 0; i < 1000000; i++) {
		if (!(lapic_read(LAPIC_ICR_LO) & (1u << 12)))
			return 0;
		cpu_relax();
	}
	return -1;
}

static u32 ioapic_read(u64 base, u32 reg)
{
	mmio_write32(base, reg);
	return mmio_read32(base + 0x10);
}

static void ioapic_write(u64 base, u32 reg, u32 v)
{
	mmio_write32(base, reg);
	mmio_write32(base + 0x10, v);
}

/*
 * ioapic_route sends GSI gsi to vector on the CPU with APIC id dest (fixed,
 * physical). mps_flags are the MADT override flags: polarity in bits 0-1
 * (3 = active low), trigger in bits 2-3 (3 = level); 0 means the ISA
 * default, edge and active high. Returns -1 if no IOAPIC serves gsi.
 */
int ioapic_route(u32 gsi, u8 vector, u32 dest, u16 mps_flags)
{
	for (u32 i = 0; i < acpi.nioapics; i++) {
		u64 base = acpi.ioapic[i].addr;
		u32 first = acpi.ioapic[i].gsi_base;
		u32 count = ((ioapic_read(base, 1) >> 16) & 0xff) + 1;
		if (gsi < first || gsi >= first + count)
			continue;
		u32 pin = gsi - first;
		u32 lo = vector;
		if ((mps_flags & 3) == 3)
			lo |= 1u << 13;
		if (((mps_flags >> 2) & 3) == 3)
			lo |= 1u << 15;
		ioapic_write(base, 0x11 + 2 * pin, dest << 24);
		ioapic_write(base, 0x10 + 2 * pin, lo);
		return 0;
	}
	return -1;
}
