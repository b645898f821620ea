/*
 * fillmix.c: fillmix, a fill whose pages look like a real guest's (ring 3).
 *
 * fillmix MIB SEED writes MIB MiB of the free RAM ranges, lowest first, page
 * by page (page i = the i-th 4 KiB page of the ranges taken in order). In
 * every group of four pages two are all zero, one is text-like and one is
 * pseudo-random; which is which rotates with SEED and the group:
 *
 *   s = mix(SEED), r = mix(s ^ (i >> 2)), class = (i + r) & 3
 *   class 0, 1: zero; class 2: text; class 3: random
 *   key = mix(s + i)
 *   random: word j (0..511) = mix(key + j)
 *   text:   words from the list below, x = key | 1 stepped by xorshift64
 *           (13, 7, 17) before each word; word = words[x & 63], then '\n'
 *           when (x >> 8) & 7 == 0, else ' '; the last word is cut at 4096
 *
 * bench/snapbench recomputes the same pages on the host; keep the two in step.
 * verify then checks these pages (memtest.c asks mem_fillmix_verify).
 */
#include "guest.h"

#define PAGE 4096

static u64 mix_filled;	/* bytes covered by the last fillmix */
static u64 mix_seed;	/* s above */
static u8 text_buf[PAGE];

static const char *const words[64] = {
	"the", "of", "and", "to", "in", "is", "that", "for",
	"it", "as", "was", "with", "be", "by", "on", "not",
	"he", "this", "are", "or", "his", "from", "at", "which",
	"but", "have", "an", "had", "they", "you", "were", "their",
	"one", "all", "we", "can", "her", "has", "there", "been",
	"if", "more", "when", "will", "would", "who", "so", "no",
	"kernel", "memory", "page", "snapshot", "restore", "guest", "virtual", "machine",
	"file", "system", "process", "thread", "device", "queue", "buffer", "return",
};

static u64 mix(u64 x)
{
	x += 0x9e3779b97f4a7c15ul;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ul;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebul;
	return x ^ (x >> 31);
}

static u32 page_class(u64 s, u64 i)
{
	return (u32)((i + mix(s ^ (i >> 2))) & 3);
}

static void text_page(u8 *dst, u64 key)
{
	u64 x = key | 1;
	usize o = 0;
	while (o < PAGE) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		const char *w = words[x & 63];
		for (; *w && o < PAGE; w++)
			dst[o++] = (u8)*w;
		if (o < PAGE)
			dst[o++] = ((x >> 8) & 7) == 0 ? '\n' : ' ';
	}
}

/* page_do writes (check == 0) or checks page p, global index i; -1 on a mismatch. */
static int page_do(u64 p, u64 i, u64 s, int check)
{
	volatile u64 *w = (volatile u64 *)p;
	u32 c = page_class(s, i);
	u64 key = mix(s + i);
	if (c == 2) {
		text_page(text_buf, key);
		const u64 *t = (const u64 *)text_buf;
		for (u32 j = 0; j < PAGE / 8; j++) {
			if (!check)
				w[j] = t[j];
			else if (w[j] != t[j])
				return -1;
		}
		return 0;
	}
	for (u32 j = 0; j < PAGE / 8; j++) {
		u64 v = c == 3 ? mix(key + j) : 0;
		if (!check)
			w[j] = v;
		else if (w[j] != v)
			return -1;
	}
	return 0;
}

/* walk runs page_do over the first bytes of the free ranges; the address of
 * the first mismatching page when checking, else 0. */
static u64 walk(u64 bytes, u64 s, int check)
{
	u64 left = bytes, i = 0;
	for (u32 r = 0; r < bootinfo.nfree && left; r++) {
		u64 a = bootinfo.free[r].start, e = bootinfo.free[r].end;
		if (e - a > left)
			e = a + left;
		left -= e - a;
		for (; a < e; a += PAGE, i++)
			if (page_do(a, i, s, check))
				return a;
	}
	return 0;
}

int cmd_fillmix(int argc, char **argv, char *reply, usize n)
{
	u64 mib, seed, free_mib = bootinfo.free_bytes >> 20;
	if (argc != 3 || parse_u64(argv[1], &mib) || parse_u64(argv[2], &seed)) {
		fmt(reply, n, "error fillmix: usage: fillmix MIB SEED");
		return -1;
	}
	if (mib == 0 || mib > free_mib) {
		fmt(reply, n, "error fillmix: MIB must be 1..%u (free RAM)", free_mib);
		return -1;
	}
	mix_seed = mix(seed);
	walk(mib << 20, mix_seed, 0);
	mix_filled = mib << 20;
	fill_kind = FILL_MIX;
	fmt(reply, n, "fillmix ok %u", mib);
	return 0;
}

void mem_fillmix_verify(char *reply, usize n)
{
	u64 bad = walk(mix_filled, mix_seed, 1);
	if (bad)
		fmt(reply, n, "verify bad %x", bad);
	else
		fmt(reply, n, "verify ok");
}
