/*
 * net.c: a tiny IPv4 responder on the virtio-net devices (ring 3), and the
 * shell's net commands.
 *
 * On each device with an address it answers ARP requests for the address,
 * ICMP echo requests to it (any size up to the MTU) and UDP datagrams to
 * its port 7 (echo). Replies go to the request's Ethernet source, so no ARP
 * table is kept. Everything else, fragments and malformed frames included,
 * is dropped and counted. Every length and header field from the wire is
 * checked against the frame before use.
 *
 *   ip [DEV] ADDR/PREFIX    ip ok DEV ADDR/PREFIX     (DEV defaults to 0)
 *   net                     net devs=N virtio=M net0=mac:..,ip:..,link:up,features:0xF,rx:N,tx:N,drop:N,announce:N ...
 *                           [skipped=0xBASE:reason ...]
 *
 * The kernel command line word chsnap.ip=ADDR/PREFIX[,ADDR/PREFIX...]
 * gives net device i the i-th address (an empty entry leaves it unset).
 */
#include "virtio_net.h"

#define ETH_ARP		0x0806
#define ETH_IPV4	0x0800
#define IP_ICMP		1
#define IP_UDP		17
#define UDP_ECHO_PORT	7
#define OUT_MAX		768

static u16 get16(const u8 *p) { return (u16)(p[0] << 8 | p[1]); }
static u32 get32(const u8 *p) { return (u32)p[0] << 24 | (u32)p[1] << 16 | (u32)p[2] << 8 | p[3]; }
static void put16(u8 *p, u16 v) { p[0] = (u8)(v >> 8); p[1] = (u8)v; }
static void put32(u8 *p, u32 v) { p[0] = (u8)(v >> 24); p[1] = (u8)(v >> 16); p[2] = (u8)(v >> 8); p[3] = (u8)v; }

/* sum adds n bytes as big-endian 16-bit words (ones' complement, unfolded). */
static u64 sum(u64 acc, const u8 *p, u32 n)
{
	u32 i = 0;
	for (; i + 1 < n; i += 2)
		acc += (u32)(p[i] << 8 | p[i + 1]);
	if (i < n)
		acc += (u32)p[i] << 8;
	return acc;
}

static u16 fold(u64 acc)
{
	while (acc >> 16)
		acc = (acc & 0xffff) + (acc >> 16);
	return (u16)~acc;
}

static const u8 bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

/* eth_header writes dst, the device's MAC and type; returns the payload. */
static u8 *eth_header(struct net_dev *n, u8 *f, const u8 *dst, u16 type)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, n->mac, 6);
	put16(f + 12, type);
	return f + 14;
}

static void arp_send(struct net_dev *n, const u8 *eth_dst, u16 op, const u8 *tha, u32 tpa)
{
	u8 *f = net_tx_buf(n);
	if (!f) {
		n->drops++;
		return;
	}
	u8 *a = eth_header(n, f, eth_dst, ETH_ARP);
	put16(a, 1);		/* Ethernet */
	put16(a + 2, ETH_IPV4);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, op);
	memcpy(a + 8, n->mac, 6);
	put32(a + 14, n->ip);
	memcpy(a + 18, tha, 6);
	put32(a + 24, tpa);
	net_tx(n, f, 14 + 28);
}

void net_gratuitous_arp(struct net_dev *n)
{
	static const u8 zero[6];
	arp_send(n, bcast, 1, zero, n->ip);
}

static void arp_input(struct net_dev *n, const u8 *src, const u8 *a, u32 len)
{
	if (len < 28 || get16(a) != 1 || get16(a + 2) != ETH_IPV4 || a[4] != 6 || a[5] != 4 ||
	    get16(a + 6) != 1 || get32(a + 24) != n->ip) {
		n->drops++;
		return;
	}
	u8 sha[6];
	memcpy(sha, a + 8, 6);
	arp_send(n, src, 2, sha, get32(a + 14));
}

/*
 * ip_send fills in an IPv4 header (no options) at ip for a payload of
 * plen bytes already in place after it, to dst, and sends the frame.
 */
static void ip_send(struct net_dev *n, u8 *f, u8 *ip, u8 proto, u32 dst, u32 plen)
{
	static u16 ident;
	u32 total = 20 + plen;
	ip[0] = 0x45;
	ip[1] = 0;
	put16(ip + 2, (u16)total);
	put16(ip + 4, ident++);
	put16(ip + 6, 0x4000);	/* DF */
	ip[8] = 64;
	ip[9] = proto;
	put16(ip + 10, 0);
	put32(ip + 12, n->ip);
	put32(ip + 16, dst);
	put16(ip + 10, fold(sum(0, ip, 20)));
	net_tx(n, f, 14 + total);
}

static void icmp_input(struct net_dev *n, const u8 *src, u32 from, const u8 *p, u32 len)
{
	if (len < 8 || p[0] != 8 || p[1] != 0 || fold(sum(0, p, len)) != 0) {
		n->drops++;
		return;
	}
	u8 *f = net_tx_buf(n);
	if (!f) {
		n->drops++;
		return;
	}
	u8 *ip = eth_header(n, f, src, ETH_IPV4);
	u8 *r = ip + 20;
	memcpy(r, p, len);
	r[0] = 0;	/* echo reply */
	put16(r + 2, 0);
	put16(r + 2, fold(sum(0, r, len)));
	ip_send(n, f, ip, IP_ICMP, from, len);
}

static u64 pseudo(u32 s, u32 d, u8 proto, u32 len)
{
	return (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff) + proto + len;
}

static void udp_input(struct net_dev *n, const u8 *src, u32 from, const u8 *p, u32 len, int csum_partial)
{
	if (len < 8) {
		n->drops++;
		return;
	}
	u32 ulen = get16(p + 4);
	if (ulen < 8 || ulen > len || get16(p + 2) != UDP_ECHO_PORT) {
		n->drops++;
		return;
	}
	if (get16(p + 6) != 0 && !csum_partial && fold(sum(pseudo(from, n->ip, IP_UDP, ulen), p, ulen)) != 0) {
		n->drops++;
		return;
	}
	u8 *f = net_tx_buf(n);
	if (!f) {
		n->drops++;
		return;
	}
	u8 *ip = eth_header(n, f, src, ETH_IPV4);
	u8 *u = ip + 20;
	memcpy(u + 8, p + 8, ulen - 8);
	put16(u, UDP_ECHO_PORT);
	put16(u + 2, get16(p));
	put16(u + 4, (u16)ulen);
	put16(u + 6, 0);
	u16 c = fold(sum(pseudo(n->ip, from, IP_UDP, ulen), u, ulen));
	put16(u + 6, c ? c : 0xffff);
	ip_send(n, f, ip, IP_UDP, from, ulen);
}

static void ipv4_input(struct net_dev *n, const u8 *src, const u8 *ip, u32 len, int csum_partial)
{
	if (len < 20 || (ip[0] >> 4) != 4) {
		n->drops++;
		return;
	}
	u32 hl = (ip[0] & 15) * 4u, total = get16(ip + 2);
	if (hl < 20 || total < hl || total > len || fold(sum(0, ip, hl)) != 0) {
		n->drops++;
		return;
	}
	/* Fragments (MF set or a non-zero offset) are dropped, as is anything not for us. */
	if ((get16(ip + 6) & 0x3fff) != 0 || get32(ip + 16) != n->ip) {
		n->drops++;
		return;
	}
	u32 from = get32(ip + 12);
	if (from == 0 || from == 0xffffffffu || (from >> 28) == 0xe) {	/* never answer these */
		n->drops++;
		return;
	}
	const u8 *p = ip + hl;
	u32 plen = total - hl;
	if (plen > NET_MTU - 20) {	/* the reply (no options) must fit the MTU */
		n->drops++;
		return;
	}
	switch (ip[9]) {
	case IP_ICMP:
		icmp_input(n, src, from, p, plen);
		break;
	case IP_UDP:
		udp_input(n, src, from, p, plen, csum_partial);
		break;
	default:
		n->drops++;
	}
}

void net_input(struct net_dev *n, const u8 *frame, u32 len)
{
	/* frame - NET_HDR_LEN is the virtio-net header: flags bit 0 is NEEDS_CSUM. */
	int csum_partial = (frame[-NET_HDR_LEN] & 1) != 0;
	if (len < 14 || len > NET_FRAME_MAX || !n->has_ip ||
	    (memcmp(frame, n->mac, 6) != 0 && memcmp(frame, bcast, 6) != 0)) {
		n->drops++;
		return;
	}
	u8 src[6];
	memcpy(src, frame + 6, 6);
	if (src[0] & 1) {	/* a multicast source is bogus: never reply to it */
		n->drops++;
		return;
	}
	switch (get16(frame + 12)) {
	case ETH_ARP:
		arp_input(n, src, frame + 14, len - 14);
		break;
	case ETH_IPV4:
		if (memcmp(frame, n->mac, 6) != 0) {
			n->drops++;
			break;
		}
		ipv4_input(n, src, frame + 14, len - 14, csum_partial);
		break;
	default:
		n->drops++;
	}
}

/* parse_cidr parses "A.B.C.D/P" (whole string up to end or stop). Returns the end, or NULL. */
static const char *parse_cidr(const char *s, char stop, u32 *ip, u32 *prefix)
{
	u32 a = 0;
	for (int i = 0; i < 4; i++) {
		u32 v = 0, digits = 0;
		while (*s >= '0' && *s <= '9' && digits < 4) {
			v = v * 10 + (u32)(*s++ - '0');
			digits++;
		}
		if (!digits || v > 255)
			return NULL;
		a = a << 8 | v;
		if (i < 3 && *s++ != '.')
			return NULL;
	}
	if (*s++ != '/')
		return NULL;
	u32 p = 0, digits = 0;
	while (*s >= '0' && *s <= '9' && digits < 3) {
		p = p * 10 + (u32)(*s++ - '0');
		digits++;
	}
	if (!digits || p > 32)
		return NULL;
	if (!(*s == 0 || *s == ' ' || *s == stop))
		return NULL;
	*ip = a;
	*prefix = p;
	return s;
}

static void set_ip(struct net_dev *n, u32 ip, u32 prefix)
{
	n->ip = ip;
	n->prefix = prefix;
	n->has_ip = 1;
}

#define IP_PREFIX "chsnap.ip="

void net_parse_cmdline(void)
{
	const char *c = bootinfo.cmdline;
	const usize plen = sizeof(IP_PREFIX) - 1;
	while (*c) {
		while (*c == ' ')
			c++;
		if (memcmp(c, IP_PREFIX, plen) == 0) {
			const char *s = c + plen;
			for (u32 i = 0; *s && *s != ' '; i++) {
				u32 ip, prefix;
				const char *e = NULL;
				if (*s != ',')
					e = parse_cidr(s, ',', &ip, &prefix);
				if (e && i < net_ndevs)
					set_ip(&net_devs[i], ip, prefix);
				if (!e)	/* empty or malformed: skip to the next entry */
					for (e = s; *e && *e != ' ' && *e != ','; e++)
						;
				s = e;
				if (*s == ',')
					s++;
			}
		}
		while (*c && *c != ' ')
			c++;
	}
}

static void reply(const char *s)
{
	print("%s\r\n", s);
}

static int put_ip(char *o, usize n, u32 ip, u32 prefix)
{
	return fmt(o, n, "%u.%u.%u.%u/%u", (u64)(ip >> 24), (u64)((ip >> 16) & 255), (u64)((ip >> 8) & 255),
		   (u64)(ip & 255), (u64)prefix);
}

static void cmd_net(char *out)
{
	usize o = (usize)fmt(out, OUT_MAX, "net devs=%u virtio=%u", (u64)net_ndevs, (u64)virtio_ndevs);
	for (u32 k = 0; k < net_ndevs && o < OUT_MAX; k++) {
		struct net_dev *n = &net_devs[k];
		char ip[24] = "none";
		if (n->has_ip)
			put_ip(ip, sizeof(ip), n->ip, n->prefix);
		const u8 *m = n->mac;
		static const char hx[] = "0123456789abcdef";
		char mac[18];
		for (int i = 0; i < 6; i++) {
			mac[3 * i] = hx[m[i] >> 4];
			mac[3 * i + 1] = hx[m[i] & 15];
			mac[3 * i + 2] = i < 5 ? ':' : 0;
		}
		o += (usize)fmt(out + o, OUT_MAX - o,
				" net%u=mac:%s,ip:%s,link:%s,features:%x,rx:%u,tx:%u,drop:%u,announce:%u", (u64)k, mac,
				ip, n->link_up ? "up" : "down", n->vd->features, n->rx_frames, n->tx_frames, n->drops,
				n->announces);
	}
	for (u32 i = 0; i < virtio_ndevs && o < OUT_MAX; i++) {
		const struct virtio_dev *v = &virtio_devs[i];
		if (v->state == VIRTIO_DEV_BAD && v->device_id == VIRTIO_ID_NET)
			o += (usize)fmt(out + o, OUT_MAX - o, " skipped=%x:%s", v->base, v->why);
	}
	reply(out);
}

static void cmd_ip(int argc, char **argv, char *out)
{
	u64 dev = 0;
	const char *addr = argv[argc - 1];
	if (argc != 2 && argc != 3) {
		reply("error ip: usage: ip [DEV] ADDR/PREFIX");
		return;
	}
	if (argc == 3 && parse_u64(argv[1], &dev)) {
		reply("error ip: DEV must be a number");
		return;
	}
	if (dev >= net_ndevs) {
		fmt(out, OUT_MAX, "error ip: no net device %u (%u found)", dev, (u64)net_ndevs);
		reply(out);
		return;
	}
	u32 ip, prefix;
	if (!parse_cidr(addr, 0, &ip, &prefix)) {
		reply("error ip: ADDR/PREFIX must look like 10.0.0.2/24 (prefix 0..32)");
		return;
	}
	set_ip(&net_devs[dev], ip, prefix);
	usize o = (usize)fmt(out, OUT_MAX, "ip ok %u ", dev);
	put_ip(out + o, OUT_MAX - o, ip, prefix);
	reply(out);
}

int net_command(int argc, char **argv)
{
	char out[OUT_MAX];
	if (strcmp(argv[0], "net") == 0) {
		if (argc != 1)
			reply("error net: takes no arguments");
		else
			cmd_net(out);
		return 1;
	}
	if (strcmp(argv[0], "ip") == 0) {
		cmd_ip(argc, argv, out);
		return 1;
	}
	return 0;
}
