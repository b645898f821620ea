/*
 * topo.c: the topo and caches commands (ring 3; CPUID runs in ring 0 through
 * sys_cpuid, the kvm_pvm rule). Both decode CPUID the way Linux does, on the
 * CPU running the shell (the BSP), and reply with one line:
 *
 *   topo cpus=N apicids=0,1,... threads=T cores=C dies=D packages=P
 *        apicid=A x2apicid=X leaf=0x1f|0xb|legacy lp=L [nc=NC nodes=K]
 *
 * apicids are the MADT's (BSP first); threads/cores/dies/packages count the
 * distinct values of each field when those ids are split with the shifts of
 * leaf 0x1F (if it has levels), else 0xB, else AMD's 0x8000_0008 ApicIdSize
 * and 0x8000_001E threads per core, else leaf 1's logical count. apicid and
 * lp are leaf 1 EBX[31:24] and [23:16]; nc is AMD 0x8000_0008 ECX[7:0] + 1,
 * nodes 0x8000_001E ECX[10:8] + 1.
 *
 *   caches L1d=32K/8/64 L1i=32K/8/64 L2=512K/8/64 L3=32M/16/64
 *
 * SIZE/WAYS/LINE of every cache, from leaf 4 (Intel), 0x8000_001D (AMD with
 * TopoExt) or 0x8000_0005/0x8000_0006 (other AMD).
 */
#include "guest.h"
#include "syscall.h"

#define TOPO_LINE 512

static void cpuid(u32 leaf, u32 sub, u32 r[4])
{
	r[0] = r[1] = r[2] = r[3] = 0;
	sys_cpuid(leaf, sub, r);
}

static int vendor_amd(void)
{
	u32 r[4];
	cpuid(0, 0, r);
	/* "AuthenticAMD" or "HygonGenuine": EBX is "Auth" or "Hygo". */
	return r[1] == 0x68747541 || r[1] == 0x6f677948;
}

static u32 order(u32 n)	/* bits to index n things */
{
	u32 b = 0;
	while ((1u << b) < n)
		b++;
	return b;
}

struct shifts {
	u32 smt, core, die, pkg;	/* APIC-id shift to the level above */
	const char *leaf;
};

/* ext_levels reads leaf 0xB or 0x1F; 0 if it has no levels. */
static int ext_levels(u32 leaf, struct shifts *s, u32 *x2apic)
{
	u32 r[4];
	cpuid(leaf, 0, r);
	if (r[1] == 0)
		return 0;
	int have_core = 0, have_die = 0;
	for (u32 sub = 0; sub < 8; sub++) {
		cpuid(leaf, sub, r);
		u32 type = (r[2] >> 8) & 0xff, shift = r[0] & 0x1f;
		*x2apic = r[3];
		if (type == 0)
			break;
		if (type == 1)
			s->smt = shift;
		else if (type == 2)
			s->core = shift, have_core = 1;
		else if (type == 5)
			s->die = shift, have_die = 1;
		s->pkg = shift;
	}
	if (!have_core)
		s->core = s->smt;
	if (!have_die)
		s->die = s->core;
	return 1;
}

static u32 field(u32 id, u32 lo, u32 hi)
{
	if (hi <= lo)
		return 0;
	return (id >> lo) & ((1u << (hi - lo)) - 1);
}

static u32 count_distinct(const u32 *v, u32 n)
{
	u64 seen[4] = { 0 };
	u32 c = 0;
	for (u32 i = 0; i < n; i++) {
		u32 x = v[i] & 0xff;
		if (!(seen[x >> 6] & (1ul << (x & 63)))) {
			seen[x >> 6] |= 1ul << (x & 63);
			c++;
		}
	}
	return c;
}

static void topo_report(char *out, usize size)
{
	u32 r[4], x2apic = 0, max_basic, max_ext;
	struct shifts s = { 0, 0, 0, 0, "legacy" };
	int amd = vendor_amd();
	cpuid(0, 0, r);
	max_basic = r[0];
	cpuid(0x80000000, 0, r);
	max_ext = r[0];
	cpuid(1, 0, r);
	u32 apicid = r[1] >> 24, lp = (r[1] >> 16) & 0xff;
	x2apic = apicid;

	if (max_basic >= 0x1f && ext_levels(0x1f, &s, &x2apic))
		s.leaf = "0x1f";
	else if (max_basic >= 0xb && ext_levels(0xb, &s, &x2apic))
		s.leaf = "0xb";
	else if (amd && max_ext >= 0x80000008) {
		cpuid(0x80000008, 0, r);
		s.pkg = (r[2] >> 12) & 0xf;
		if (!s.pkg)
			s.pkg = order((r[2] & 0xff) + 1);
		if (max_ext >= 0x8000001e) {
			cpuid(0x8000001e, 0, r);
			s.smt = order(((r[1] >> 8) & 0xff) + 1);
		}
		s.core = s.die = s.pkg;
		s.leaf = "amd";
	} else {
		s.pkg = s.core = s.die = order(lp ? lp : 1);
	}

	u32 n = acpi.ncpus, t[MAX_CPUS], c[MAX_CPUS], d[MAX_CPUS], p[MAX_CPUS];
	for (u32 i = 0; i < n; i++) {
		u32 id = acpi.apic_ids[i];
		t[i] = field(id, 0, s.smt);
		c[i] = field(id, s.smt, s.core);
		d[i] = field(id, s.core, s.die);
		p[i] = id >> s.pkg;
	}
	usize len = (usize)fmt(out, size, "topo cpus=%u apicids=", (u64)n);
	for (u32 i = 0; i < n && len < size; i++)
		len += (usize)fmt(out + len, size - len, i ? ",%u" : "%u", (u64)acpi.apic_ids[i]);
	if (len < size)
		len += (usize)fmt(out + len, size - len, " threads=%u cores=%u dies=%u packages=%u apicid=%u x2apicid=%u leaf=%s lp=%u",
				  (u64)count_distinct(t, n), (u64)count_distinct(c, n), (u64)count_distinct(d, n),
				  (u64)count_distinct(p, n), (u64)apicid, (u64)x2apic, s.leaf, (u64)lp);
	if (amd && max_ext >= 0x80000008 && len < size) {
		cpuid(0x80000008, 0, r);
		len += (usize)fmt(out + len, size - len, " nc=%u", (u64)((r[2] & 0xff) + 1));
		if (max_ext >= 0x8000001e && len < size) {
			cpuid(0x8000001e, 0, r);
			fmt(out + len, size - len, " nodes=%u", (u64)(((r[2] >> 8) & 7) + 1));
		}
	}
}

static usize put_cache(char *out, usize size, u32 level, u32 type, u64 bytes, u64 ways, u64 line)
{
	const char *suffix = type == 1 ? "d" : type == 2 ? "i" : "";
	if (bytes >= (1u << 20) && bytes % (1u << 20) == 0)
		return (usize)fmt(out, size, " L%u%s=%uM/%u/%u", (u64)level, suffix, bytes >> 20, ways, line);
	return (usize)fmt(out, size, " L%u%s=%uK/%u/%u", (u64)level, suffix, bytes >> 10, ways, line);
}

/* amd_ways decodes the 0x8000_0006 associativity field (0xf: fully). */
static u64 amd_ways(u32 code)
{
	static const u8 w[16] = { 0, 1, 2, 3, 4, 6, 8, 0, 16, 0, 32, 48, 64, 96, 128, 0 };
	return w[code & 0xf];
}

static void caches_report(char *out, usize size)
{
	u32 r[4], leaf = 4;
	usize len = (usize)fmt(out, size, "caches");
	cpuid(0x80000000, 0, r);
	u32 max_ext = r[0];
	if (vendor_amd()) {
		cpuid(0x80000001, 0, r);
		if (!(r[2] & (1u << 22)) || max_ext < 0x8000001d) {
			if (max_ext >= 0x80000005) {
				cpuid(0x80000005, 0, r);
				if (r[2] && len < size)
					len += put_cache(out + len, size - len, 1, 1, (u64)(r[2] >> 24) << 10, (r[2] >> 16) & 0xff, r[2] & 0xff);
				if (r[3] && len < size)
					len += put_cache(out + len, size - len, 1, 2, (u64)(r[3] >> 24) << 10, (r[3] >> 16) & 0xff, r[3] & 0xff);
			}
			if (max_ext >= 0x80000006) {
				cpuid(0x80000006, 0, r);
				if (amd_ways(r[2] >> 12) && len < size)
					len += put_cache(out + len, size - len, 2, 3, (u64)(r[2] >> 16) << 10, amd_ways(r[2] >> 12), r[2] & 0xff);
				if (amd_ways(r[3] >> 12) && len < size)
					len += put_cache(out + len, size - len, 3, 3, (u64)(r[3] >> 18) << 19, amd_ways(r[3] >> 12), r[3] & 0xff);
			}
			if (len == 6)
				fmt(out + len, size - len, " none");
			return;
		}
		leaf = 0x8000001d;
	} else {
		cpuid(0, 0, r);
		if (r[0] < 4) {
			fmt(out + len, size - len, " none");
			return;
		}
	}
	for (u32 sub = 0; sub < 16 && len < size; sub++) {
		cpuid(leaf, sub, r);
		u32 type = r[0] & 0x1f;
		if (type == 0)
			break;
		u64 ways = (r[1] >> 22) + 1, parts = ((r[1] >> 12) & 0x3ff) + 1, line = (r[1] & 0xfff) + 1;
		u64 sets = (u64)r[2] + 1;
		len += put_cache(out + len, size - len, (r[0] >> 5) & 7, type, ways * parts * line * sets, ways, line);
	}
	if (len == 6)
		fmt(out + len, size - len, " none");
}

/*
 * topo_command runs topo or caches and prints the reply; 0 if argv is
 * neither (the shell goes on to its other commands).
 */
int topo_command(int argc, char **argv)
{
	char out[TOPO_LINE];
	if (strcmp(argv[0], "topo") == 0)
		topo_report(out, sizeof(out));
	else if (strcmp(argv[0], "caches") == 0)
		caches_report(out, sizeof(out));
	else
		return 0;
	if (argc != 1)
		fmt(out, sizeof(out), "error %s: takes no arguments", argv[0]);
	print("%s\r\n", out);
	return 1;
}
