/*
 * boot.c: what the loader handed over in boot_params (ring 3).
 *
 * Copies the command line, e820 map, RSDP hint and initrd location out of
 * the zero page, then works out which RAM the memory test may use: e820 RAM
 * above the guest image (_end) and below the end of the identity map,
 * minus the initrd.
 */
#include "guest.h"

extern u8 _end[];

struct bootinfo bootinfo;

static u32 rd32(const u8 *p) { u32 v; memcpy(&v, p, 4); return v; }
static u64 rd64(const u8 *p) { u64 v; memcpy(&v, p, 8); return v; }

static void add_free(u64 start, u64 end)
{
	start = (start + 4095) & ~4095ul;
	end &= ~4095ul;
	if (end <= start || bootinfo.nfree >= MAX_FREE_RANGES)
		return;
	bootinfo.free[bootinfo.nfree].start = start;
	bootinfo.free[bootinfo.nfree].end = end;
	bootinfo.nfree++;
	bootinfo.free_bytes += end - start;
}

void bootinfo_parse(const u8 *bp)
{
	struct bootinfo *b = &bootinfo;

	u64 cmd = rd32(bp + BP_CMD_LINE_PTR) | (u64)rd32(bp + BP_EXT_CMD_LINE_PTR) << 32;
	if (cmd && cmd < mapped_top) {
		const char *s = (const char *)cmd;
		usize i = 0;
		for (; i < sizeof(b->cmdline) - 1 && s[i]; i++)
			b->cmdline[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : ' ';
		b->cmdline[i] = 0;
	}

	b->rsdp = rd64(bp + BP_ACPI_RSDP);
	b->initrd_start = rd32(bp + BP_RAMDISK_IMAGE) | (u64)rd32(bp + BP_EXT_RAMDISK_IMAGE) << 32;
	b->initrd_end = b->initrd_start + (rd32(bp + BP_RAMDISK_SIZE) | (u64)rd32(bp + BP_EXT_RAMDISK_SIZE) << 32);

	u32 n = bp[BP_E820_ENTRIES];
	if (n > E820_MAX)
		n = E820_MAX;
	b->ne820 = n;
	memcpy(b->e820, bp + BP_E820_TABLE, n * sizeof(struct e820_entry));

	u64 low = ((u64)_end + 4095) & ~4095ul;
	for (u32 i = 0; i < n; i++) {
		const struct e820_entry *e = &b->e820[i];
		u64 start = e->addr, end = e->addr + e->size;
		if (e->type != 1 || end <= start)
			continue;
		b->ram_bytes += end - start;
		if (start < low)
			start = low;
		if (end > mapped_top)
			end = mapped_top;
		if (end <= start)
			continue;
		if (b->initrd_end > b->initrd_start && b->initrd_start < end && b->initrd_end > start) {
			add_free(start, b->initrd_start);
			add_free(b->initrd_end, end);
		} else {
			add_free(start, end);
		}
	}
}
