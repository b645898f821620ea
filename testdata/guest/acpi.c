/*
 * acpi.c: find the RSDP, walk the XSDT (or RSDT) and read the MADT and FADT
 * (ring 3). Tables are only read; a table with a bad checksum or length is
 * skipped.
 */
#include "guest.h"

struct acpi_info acpi;

static u16 rd16(const u8 *p) { u16 v; memcpy(&v, p, 2); return v; }
static u32 rd32(const u8 *p) { u32 v; memcpy(&v, p, 4); return v; }
static u64 rd64(const u8 *p) { u64 v; memcpy(&v, p, 8); return v; }

#define TABLE_MAX (1u << 20)	/* no table we read is anywhere near 1 MiB */

static int sum_ok(const u8 *p, u32 n)
{
	u8 s = 0;
	for (u32 i = 0; i < n; i++)
		s = (u8)(s + p[i]);
	return s == 0;
}

static int rsdp_ok(u64 a)
{
	if (!a || a + 36 > mapped_top)
		return 0;
	const u8 *p = (const u8 *)a;
	return memcmp(p, "RSD PTR ", 8) == 0 && sum_ok(p, 20);
}

static u64 find_rsdp(u64 hint)
{
	if (rsdp_ok(hint))
		return hint;
	for (u64 a = 0xe0000; a < 0x100000; a += 16)
		if (rsdp_ok(a))
			return a;
	return 0;
}

/* table returns a validated table at a, or NULL. */
static const u8 *table(u64 a)
{
	if (!a || a + 36 > mapped_top)
		return NULL;
	const u8 *t = (const u8 *)a;
	u32 len = rd32(t + 4);
	if (len < 36 || len > TABLE_MAX || a + len > mapped_top || !sum_ok(t, len))
		return NULL;
	return t;
}

static void parse_gas(const u8 *p, struct gas *g)
{
	g->space = p[0];
	g->bit_width = p[1];
	g->bit_offset = p[2];
	g->access_size = p[3];
	g->addr = rd64(p + 4);
}

static void parse_madt(const u8 *t)
{
	u32 len = rd32(t + 4);
	lapic_base = rd32(t + 36);
	u32 bsp = lapic_id();
	/* The BSP first, so CPU slot 0 is always the one running this. */
	acpi.apic_ids[0] = (u8)bsp;
	acpi.ncpus = 1;
	for (u32 off = 44; off + 2 <= len;) {
		const u8 *e = t + off;
		u8 type = e[0], elen = e[1];
		if (elen < 2 || off + elen > len)
			break;
		switch (type) {
		case 0:	/* Processor Local APIC */
			if (elen >= 8 && (rd32(e + 4) & 1) && e[3] != bsp && acpi.ncpus < MAX_CPUS)
				acpi.apic_ids[acpi.ncpus++] = e[3];
			break;
		case 1:	/* I/O APIC */
			if (elen >= 12 && acpi.nioapics < MAX_IOAPICS) {
				acpi.ioapic[acpi.nioapics].addr = rd32(e + 4);
				acpi.ioapic[acpi.nioapics].gsi_base = rd32(e + 8);
				acpi.nioapics++;
			}
			break;
		case 2:	/* Interrupt Source Override */
			if (elen >= 10 && e[2] == 0 && e[3] == 4) {
				acpi.uart_gsi = rd32(e + 4);
				acpi.uart_flags = rd16(e + 8);
			}
			break;
		case 5:	/* Local APIC Address Override */
			if (elen >= 12)
				lapic_base = rd64(e + 4);
			break;
		}
		off += elen;
	}
}

static void parse_fadt(const u8 *t)
{
	u32 len = rd32(t + 4);
	if (len >= 116)
		acpi.fadt_flags = rd32(t + 112);
	if (len >= 129) {
		parse_gas(t + 116, &acpi.reset_reg);
		acpi.reset_value = t[128];
	}
	if (len >= 256)
		parse_gas(t + 244, &acpi.sleep_ctl);
}

void acpi_parse(u64 rsdp_hint)
{
	acpi.uart_gsi = 4;
	acpi.ncpus = 1;
	acpi.apic_ids[0] = (u8)lapic_id();
	u64 rsdp = find_rsdp(rsdp_hint);
	if (!rsdp)
		return;
	const u8 *r = (const u8 *)rsdp;
	for (int i = 0; i < 6; i++)
		acpi.oem_id[i] = (r[9 + i] > 0x20 && r[9 + i] < 0x7f) ? (char)r[9 + i] : '_';
	for (int i = 5; i >= 0 && acpi.oem_id[i] == '_' && r[9 + i] == ' '; i--)
		acpi.oem_id[i] = 0;
	const u8 *root = NULL;
	u32 entsz = 4;
	if (r[15] >= 2 && sum_ok(r, 36)) {
		root = table(rd64(r + 24));
		entsz = 8;
	}
	if (!root) {
		root = table(rd32(r + 16));
		entsz = 4;
	}
	if (!root)
		return;
	acpi.found = 1;
	u32 n = (rd32(root + 4) - 36) / entsz;
	for (u32 i = 0; i < n; i++) {
		const u8 *p = root + 36 + i * entsz;
		const u8 *t = table(entsz == 8 ? rd64(p) : rd32(p));
		if (!t)
			continue;
		if (memcmp(t, "APIC", 4) == 0)
			parse_madt(t);
		else if (memcmp(t, "FACP", 4) == 0)
			parse_fadt(t);
	}
}
