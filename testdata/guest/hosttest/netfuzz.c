/*
 * netfuzz.c: a host-side check of the guest's IPv4 responder (net.c),
 * built with the host's libc and AddressSanitizer/UBSan by
 * `make -C testdata/guest check-net`.
 *
 * It feeds net_input millions of random and mutated frames (each in a heap
 * block of exactly its length, so any read past the frame traps) and checks
 * every frame the responder sends: at most NET_FRAME_MAX bytes, ARP or
 * IPv4, and for IPv4 a 20-byte header, a total length matching the frame
 * and valid IPv4, ICMP and UDP checksums. Half of the mutated frames get
 * their checksums and lengths repaired so that the reply paths run too.
 * It also checks the chsnap.ip= command-line parser.
 */
#include "virtio_net.h"
#include <stdio.h>
#include <stdlib.h>

struct bootinfo bootinfo;
struct virtio_dev virtio_devs[VIRTIO_MAX_DEVS];
u32 virtio_ndevs;
struct net_dev net_devs[NET_MAX_DEVS];
u32 net_ndevs;
volatile u64 ticks;

static u8 txb[NET_BUF_SIZE];
static long replies;

static void fail(const char *what)
{
	fprintf(stderr, "netfuzz: %s\n", what);
	abort();
}

static u16 cks(const u8 *p, u32 n, unsigned long s)
{
	for (u32 i = 0; i + 1 < n; i += 2)
		s += (u32)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		s += (u32)p[n - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (u16)~s;
}

u8 *net_tx_buf(struct net_dev *n)
{
	(void)n;
	memset(txb, 0xcc, sizeof(txb));
	return txb + NET_HDR_LEN;
}

void net_tx(struct net_dev *n, u8 *f, u32 len)
{
	(void)n;
	if (f != txb + NET_HDR_LEN || len > NET_FRAME_MAX || len < 14)
		fail("reply outside the transmit buffer");
	replies++;
	u16 type = (u16)(f[12] << 8 | f[13]);
	if (type == 0x0806) {
		if (len < 42)
			fail("short arp reply");
		return;
	}
	if (type != 0x0800)
		fail("reply neither arp nor ipv4");
	const u8 *p = f + 14;
	u32 tot = (u32)(p[2] << 8 | p[3]);
	if (p[0] != 0x45 || tot + 14 != len || cks(p, 20, 0) != 0)
		fail("bad ipv4 reply header");
	if (p[9] == 1 && cks(p + 20, tot - 20, 0) != 0)
		fail("bad icmp reply checksum");
	if (p[9] == 17) {
		const u8 *u = p + 20;
		u32 ul = (u32)(u[4] << 8 | u[5]);
		unsigned long s = 17 + ul;
		for (int i = 12; i < 20; i += 2)
			s += (u32)(p[i] << 8 | p[i + 1]);
		if (ul != tot - 20 || cks(u, ul, s) != 0)
			fail("bad udp reply");
	}
}

int vfmt(char *buf, usize size, const char *f, va_list ap) { return vsnprintf(buf, size, f, ap); }

int fmt(char *buf, usize size, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	int r = vsnprintf(buf, size, f, ap);
	va_end(ap);
	return r;
}

void print(const char *f, ...) { (void)f; }

int parse_u64(const char *s, u64 *out)
{
	char *e;
	*out = strtoull(s, &e, 0);
	return *s && !*e ? 0 : -1;
}

/* repair fixes the IPv4 header checksum and, sometimes, lengths and the ICMP checksum. */
static void repair(u8 *f, u32 len)
{
	u8 *p = f + 14;
	u32 hl = (p[0] & 15) * 4u, tot = (u32)(p[2] << 8 | p[3]);
	if (rand() % 2) {
		tot = len - 14 - (u32)(rand() % 3);
		p[2] = (u8)(tot >> 8);
		p[3] = (u8)tot;
	}
	if (hl < 20 || hl > len - 14)
		return;
	if (tot >= hl + 8 && tot <= len - 14) {
		u8 *q = p + hl;
		u32 ql = tot - hl;
		if (p[9] == 1) {
			q[2] = q[3] = 0;
			u16 c = cks(q, ql, 0);
			q[2] = (u8)(c >> 8);
			q[3] = (u8)c;
		} else if (p[9] == 17) {
			q[6] = q[7] = 0;	/* no checksum */
			if (rand() % 2) {
				q[4] = (u8)(ql >> 8);
				q[5] = (u8)ql;
			}
			if (rand() % 2) {
				q[2] = 0;
				q[3] = 7;
			}
		}
	}
	p[10] = p[11] = 0;
	u16 c = cks(p, hl, 0);
	p[10] = (u8)(c >> 8);
	p[11] = (u8)c;
}

int main(int argc, char **argv)
{
	long rounds = argc > 1 ? atol(argv[1]) : 2000000;
	srand(argc > 2 ? (unsigned)atoi(argv[2]) : 1);
	static const u8 mac[6] = { 0x52, 0x54, 0, 0x12, 0x34, 0x56 };
	static const u8 bcast[6] = { 255, 255, 255, 255, 255, 255 };
	struct net_dev *n = &net_devs[0];
	net_ndevs = 2;
	memcpy(n->mac, mac, 6);

	static const char cmdline[] = "x chsnap.ip=,10.0.1.2/24 chsnap.ip=10.0.0.2/24,bad y";
	memcpy(bootinfo.cmdline, cmdline, sizeof(cmdline));
	net_parse_cmdline();
	if (!n->has_ip || n->ip != 0x0a000002 || n->prefix != 24 || !net_devs[1].has_ip || net_devs[1].ip != 0x0a000102)
		fail("chsnap.ip= parsed wrongly");

	/* A valid echo request from 10.0.0.1, the base of the mutations. */
	u8 seed[98] = { 0 };
	memcpy(seed, mac, 6);
	seed[6] = 2;
	seed[12] = 8;
	u8 *ip = seed + 14;
	ip[0] = 0x45;
	ip[3] = 84;
	ip[8] = 64;
	ip[9] = 1;
	ip[12] = 10;
	ip[15] = 1;
	ip[16] = 10;
	ip[19] = 2;
	ip[20] = 8;

	static u8 buf[NET_HDR_LEN + NET_FRAME_MAX];
	u8 *f = buf + NET_HDR_LEN;
	for (long it = 0; it < rounds; it++) {
		u32 len = (u32)rand() % (NET_FRAME_MAX + 1);
		if (rand() % 2) {
			if (len < 14)
				len = 14;
			memcpy(f, seed, len < sizeof(seed) ? len : sizeof(seed));
			for (u32 i = sizeof(seed); i < len; i++)
				f[i] = (u8)rand();
			for (int k = rand() % 4; k > 0; k--)
				f[rand() % len] = (u8)rand();
			if (rand() % 2 && len >= 34)
				repair(f, len);
		} else {
			for (u32 i = 0; i < len; i++)
				f[i] = (u8)rand();
			if (len >= 6)
				memcpy(f, rand() % 2 ? mac : bcast, 6);
			if (len >= 14 && rand() % 2) {
				f[12] = 8;
				f[13] = rand() % 2 ? 0 : 6;
			}
		}
		buf[0] = (u8)(rand() % 2);	/* NEEDS_CSUM, sometimes */
		u8 *h = malloc(NET_HDR_LEN + len);
		memcpy(h, buf, NET_HDR_LEN + len);
		net_input(n, h + NET_HDR_LEN, len);
		free(h);
	}
	if (replies < rounds / 20)
		fail("too few replies: the reply paths were hardly exercised");
	printf("netfuzz ok: %ld frames, %ld replies, %lu dropped\n", rounds, replies, (unsigned long)n->drops);
	return 0;
}
