/*
 * blkbench.c: the block benchmark's guest side (ring 3), one shell command:
 *
 *   blkbench DEV MODE MIB SEED        blkbench ok MODE MIB requests=N bytes=B
 *
 * MODE is seqread, seqwrite, randread or randwrite. The command moves MIB
 * MiB between the disk and memory, one request in flight, and replies when
 * the last one has completed; the host times it (wall clock from sending the
 * line to the reply), so both VMMs are measured the same way.
 *
 * - seq*: requests of BENCH_SEQ_BYTES (64 KiB, less if the device's
 *   size_max is smaller or free RAM is short) from sector 0 upwards,
 *   wrapping at the end of the disk.
 * - rand*: 4 KiB requests at 4 KiB-aligned offsets drawn from the whole
 *   disk by splitmix64 seeded with SEED, so randread with randwrite's seed
 *   reads exactly the blocks randwrite wrote (allocated clusters on qcow2).
 *
 * Writes send a splitmix64 pattern made once per command (not blkwrite's
 * per-sector pattern: nothing verifies it). Requests are built here, on
 * the driver's queue (virtio_blk.c keeps one request in flight and its own
 * 4 KiB buffer), with one data descriptor. The data buffer is the top
 * BENCH_SEQ_BYTES of the highest free RAM range, which keeps .bss small
 * (a `fill` that reaches that far no longer verifies after a blkbench).
 */
#include "virtio_blk.h"

#define OUT_MAX		160
#define BENCH_SEQ_BYTES	(64u * 1024)
#define BENCH_RAND_BYTES 4096u
#define BENCH_MAX_MIB	(1u << 20)	/* 1 TiB: a bound on the argument, not on the disk */
#define BENCH_TIMEOUT_TICKS (10 * TIMER_HZ)

#define VIRTIO_BLK_F_SIZE_MAX	(1ul << 1)
#define VIRTIO_BLK_T_IN		0
#define VIRTIO_BLK_T_OUT	1

static struct {
	u32 type;
	u32 reserved;
	u64 sector;
} bench_hdr __attribute__((aligned(16)));
static volatile u8 bench_status __attribute__((aligned(16)));

static u64 mix(u64 x)
{
	x += 0x9e3779b97f4a7c15ul;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ul;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebul;
	return x ^ (x >> 31);
}

/* bench_request runs one IN or OUT request of len bytes at sector; 0 or a BLK_E*. */
static int bench_request(struct blk_disk *d, u32 type, u64 sector, u8 *buf, u32 len)
{
	if (d->broken)
		return BLK_EBROKEN;
	bench_hdr.type = type;
	bench_hdr.reserved = 0;
	bench_hdr.sector = sector;
	bench_status = 0xff;
	struct virtq_buf bufs[3] = {
		{ &bench_hdr, sizeof(bench_hdr), 0 },
		{ buf, len, type == VIRTIO_BLK_T_IN },
		{ (void *)&bench_status, 1, 1 },
	};
	int head = virtq_add(d->q, bufs, 3);
	if (head < 0)
		return BLK_EBROKEN;
	virtq_notify(d->dev, d->q);
	u32 used_len;
	int got = virtq_wait(d->q, &used_len, BENCH_TIMEOUT_TICKS);
	virtio_irq_ack(d->dev);
	if (got != head) {
		d->broken = 1;
		return got < 0 ? BLK_ETIMEOUT : BLK_EBROKEN;
	}
	if (bench_status == 0)
		return 0;
	return bench_status == 2 ? BLK_EUNSUPP : BLK_EIO;
}

/* bench_buffer returns the top of the highest free RAM range (size bytes, 4 KiB aligned), or NULL. */
static u8 *bench_buffer(u32 size)
{
	for (u32 i = bootinfo.nfree; i-- > 0;) {
		struct mem_range *r = &bootinfo.free[i];
		u64 end = r->end & ~0xffful;
		if (end > mapped_top)
			end = mapped_top & ~0xffful;
		if (end > r->start && end - r->start >= size)
			return (u8 *)(end - size);
	}
	return NULL;
}

static void reply(const char *s)
{
	print("%s\r\n", s);
}

int blkbench_command(int argc, char **argv)
{
	char out[OUT_MAX];
	if (strcmp(argv[0], "blkbench") != 0)
		return 0;
	u64 dev, mib, seed;
	if (argc != 5 || parse_u64(argv[1], &dev) || parse_u64(argv[3], &mib) || parse_u64(argv[4], &seed)) {
		reply("error blkbench: usage: blkbench DEV seqread|seqwrite|randread|randwrite MIB SEED");
		return 1;
	}
	const char *mode = argv[2];
	int seq = strcmp(mode, "seqread") == 0 || strcmp(mode, "seqwrite") == 0;
	int rnd = strcmp(mode, "randread") == 0 || strcmp(mode, "randwrite") == 0;
	if (!seq && !rnd) {
		fmt(out, OUT_MAX, "error blkbench: unknown mode %s (seqread, seqwrite, randread, randwrite)", mode);
		reply(out);
		return 1;
	}
	int write = strcmp(mode, "seqwrite") == 0 || strcmp(mode, "randwrite") == 0;
	if (mib == 0 || mib > BENCH_MAX_MIB) {
		fmt(out, OUT_MAX, "error blkbench: MIB must be 1..%u", (u64)BENCH_MAX_MIB);
		reply(out);
		return 1;
	}
	blk_probe();
	if (dev >= blk_ndisks) {
		fmt(out, OUT_MAX, "error blkbench: no disk %u (%u found)", dev, (u64)blk_ndisks);
		reply(out);
		return 1;
	}
	struct blk_disk *d = &blk_disks[dev];
	if (write && d->ro) {
		reply("error blkbench: disk is read-only (VIRTIO_BLK_F_RO)");
		return 1;
	}

	/* Request size: 64 KiB for seq*, bounded by size_max; 4 KiB for rand*. */
	u32 req = BENCH_RAND_BYTES;
	if (seq) {
		req = BENCH_SEQ_BYTES;
		if (d->dev->features & VIRTIO_BLK_F_SIZE_MAX) {
			u32 sm = virtio_config_read32(d->dev, 8) & ~511u;
			while (req > sm && req > BENCH_RAND_BYTES)
				req /= 2;
		}
	}
	u8 *buf = bench_buffer(req);
	if (!buf && req > BLK_BUF_BYTES)
		req = BLK_BUF_BYTES;
	if (!buf)
		buf = blk_buf;
	u64 per = req / 512;
	if (d->sectors < per) {
		fmt(out, OUT_MAX, "error blkbench: disk has %u sectors, fewer than one %u-byte request", d->sectors,
		    (u64)req);
		reply(out);
		return 1;
	}
	if (write) {
		u64 *w = (u64 *)buf, k = mix(seed);
		for (u32 i = 0; i < req / 8; i++)
			w[i] = mix(k + i);
	}

	u64 slots = d->sectors / per;	/* request-aligned positions on the disk */
	u64 n = (mib << 20) / req;
	u64 h = mix(seed);
	u32 type = write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
	for (u64 i = 0; i < n; i++) {
		u64 slot = seq ? i % slots : mix(h + i) % slots;
		int err = bench_request(d, type, slot * per, buf, req);
		if (err) {
			fmt(out, OUT_MAX, "error blkbench: %s sector %u: %s", mode, slot * per, blk_strerror(err));
			reply(out);
			return 1;
		}
	}
	fmt(out, OUT_MAX, "blkbench ok %s %u requests=%u bytes=%u", mode, mib, n, (u64)req);
	reply(out);
	return 1;
}
