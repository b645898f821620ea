/*
 * memtest.c: fill and verify (ring 3, native speed under kvm_pvm).
 *
 * fill writes MIB MiB of the free RAM ranges found in boot.c, lowest first,
 * one 64-bit word at a time: word(addr) = (addr + a) * b, with a and b
 * derived from SEED (b odd, so distinct addresses give distinct words).
 * verify recomputes the words and reports the first mismatch; after a
 * fillmix (fillmix.c) it checks that fill's pages instead.
 */
#include "guest.h"

static u64 filled_bytes;	/* 0: nothing filled yet */
static u64 fill_a, fill_b;
int fill_kind;		/* FILL_NONE, FILL_WORDS or FILL_MIX */

static u64 mix(u64 x)
{
	x += 0x9e3779b97f4a7c15ul;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ul;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebul;
	return x ^ (x >> 31);
}

int mem_fill(u64 mib, u64 seed, char *reply, usize n)
{
	u64 free_mib = bootinfo.free_bytes >> 20;
	if (mib == 0 || mib > free_mib) {
		fmt(reply, n, "error fill: MIB must be 1..%u (free RAM)", free_mib);
		return -1;
	}
	u64 a = mix(seed), b = mix(seed ^ 0x5bd1e995ul) | 1;
	u64 left = mib << 20;
	for (u32 i = 0; i < bootinfo.nfree && left; i++) {
		u64 s = bootinfo.free[i].start, e = bootinfo.free[i].end;
		if (e - s > left)
			e = s + left;
		for (u64 p = s; p < e; p += 8)
			*(volatile u64 *)p = (p + a) * b;
		left -= e - s;
	}
	fill_a = a;
	fill_b = b;
	filled_bytes = mib << 20;
	fill_kind = FILL_WORDS;
	fmt(reply, n, "fill ok %u", mib);
	return 0;
}

void mem_verify(char *reply, usize n)
{
	if (fill_kind == FILL_MIX) {
		mem_fillmix_verify(reply, n);
		return;
	}
	if (!filled_bytes) {
		fmt(reply, n, "verify none");
		return;
	}
	u64 a = fill_a, b = fill_b, left = filled_bytes;
	for (u32 i = 0; i < bootinfo.nfree && left; i++) {
		u64 s = bootinfo.free[i].start, e = bootinfo.free[i].end;
		if (e - s > left)
			e = s + left;
		for (u64 p = s; p < e; p += 8) {
			if (*(volatile u64 *)p != (p + a) * b) {
				fmt(reply, n, "verify bad %x", p);
				return;
			}
		}
		left -= e - s;
	}
	fmt(reply, n, "verify ok");
}
