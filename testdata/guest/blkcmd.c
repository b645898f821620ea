/*
 * blkcmd.c: the shell's virtio-blk commands (ring 3). Each prints exactly
 * one line, starting with the command's name or "error":
 *
 *   blk                               blk devs=N virtio=M disk0=sectors:S,ro:R,blksize:B,features:0xF ...
 *                                     [skipped=0xBASE:reason ...]
 *   blkwrite DEV SECTOR COUNT SEED    blkwrite ok COUNT
 *   blkverify DEV SECTOR COUNT SEED   blkverify ok COUNT | blkverify bad SECTOR
 *   blkread DEV SECTOR                blkread SECTOR <first 16 bytes, hex> <crc32, 8 hex digits>
 *   blkflush DEV                      blkflush ok
 *
 * The pattern (README.md, and blkPattern in e2e/guest_qemu_blk_test.go):
 * sector s written with seed k holds 64 little-endian 64-bit words,
 * word i = mix(mix(k) + 64*s + i), mix being the splitmix64 finalizer
 * below (the same as memtest.c's).
 */
#include "virtio_blk.h"

#define OUT_MAX 640

static u64 mix(u64 x)
{
	x += 0x9e3779b97f4a7c15ul;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ul;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebul;
	return x ^ (x >> 31);
}

/* pattern fills one 512-byte sector's words for sector s and seed hash h = mix(seed). */
static void pattern(u64 *w, u64 h, u64 s)
{
	u64 base = h + s * 64;
	for (u64 i = 0; i < 64; i++)
		w[i] = mix(base + i);
}

/* crc32 is the IEEE CRC-32 (zlib's, Go's crc32.ChecksumIEEE). */
static u32 crc32(const u8 *p, usize n)
{
	u32 c = 0xffffffffu;
	for (usize i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
	}
	return ~c;
}

static void hex(char *dst, const u8 *p, usize n)
{
	static const char digits[] = "0123456789abcdef";
	for (usize i = 0; i < n; i++) {
		dst[2 * i] = digits[p[i] >> 4];
		dst[2 * i + 1] = digits[p[i] & 15];
	}
	dst[2 * n] = 0;
}

static void reply(const char *s)
{
	print("%s\r\n", s);
}

/* disk_arg parses DEV and returns the disk, or NULL after replying with an error. */
static struct blk_disk *disk_arg(const char *cmd, const char *arg, char *out)
{
	u64 dev;
	if (parse_u64(arg, &dev)) {
		fmt(out, OUT_MAX, "error %s: DEV must be a number", cmd);
		reply(out);
		return NULL;
	}
	if (dev >= blk_ndisks) {
		fmt(out, OUT_MAX, "error %s: no disk %u (%u found)", cmd, dev, (u64)blk_ndisks);
		reply(out);
		return NULL;
	}
	return &blk_disks[dev];
}

/* range_ok checks [sector, sector+count) against the disk, replying with an error if not. */
static int range_ok(const char *cmd, struct blk_disk *d, u64 sector, u64 count, char *out)
{
	if (count == 0) {
		fmt(out, OUT_MAX, "error %s: COUNT must be at least 1", cmd);
		reply(out);
		return 0;
	}
	if (sector >= d->sectors || count > d->sectors - sector) {
		fmt(out, OUT_MAX, "error %s: sectors %u+%u outside the disk (%u sectors)", cmd, sector, count,
		    d->sectors);
		reply(out);
		return 0;
	}
	return 1;
}

static void io_error(const char *cmd, u64 sector, int err, char *out)
{
	fmt(out, OUT_MAX, "error %s: sector %u: %s", cmd, sector, blk_strerror(err));
	reply(out);
}

static void cmd_blk(char *out)
{
	usize n = (usize)fmt(out, OUT_MAX, "blk devs=%u virtio=%u", (u64)blk_ndisks, (u64)virtio_ndevs);
	for (u32 i = 0; i < blk_ndisks && n < OUT_MAX; i++) {
		struct blk_disk *d = &blk_disks[i];
		n += (usize)fmt(out + n, OUT_MAX - n, " disk%u=sectors:%u,ro:%u,blksize:%u,features:%x", (u64)i,
				d->sectors, (u64)d->ro, (u64)d->blk_size, d->dev->features);
	}
	for (u32 i = 0; i < virtio_ndevs && n < OUT_MAX; i++) {
		struct virtio_dev *v = &virtio_devs[i];
		if (v->state == VIRTIO_DEV_BAD)
			n += (usize)fmt(out + n, OUT_MAX - n, " skipped=%x:%s", v->base, v->why);
	}
	reply(out);
}

static void cmd_write_verify(int verify, u64 dev_sector, u64 count, u64 seed, struct blk_disk *d, char *out)
{
	const char *cmd = verify ? "blkverify" : "blkwrite";
	u64 h = mix(seed);
	u64 expect[64];
	for (u64 done = 0; done < count;) {
		u64 s = dev_sector + done;
		u32 n = d->max_sectors;
		if (count - done < n)
			n = (u32)(count - done);
		if (!verify) {
			for (u32 k = 0; k < n; k++)
				pattern((u64 *)(blk_buf + 512 * k), h, s + k);
			int err = blk_write(d, s, n, blk_buf);
			if (err) {
				io_error(cmd, s, err, out);
				return;
			}
		} else {
			int err = blk_read(d, s, n, blk_buf);
			if (err) {
				io_error(cmd, s, err, out);
				return;
			}
			for (u32 k = 0; k < n; k++) {
				pattern(expect, h, s + k);
				if (memcmp(expect, blk_buf + 512 * k, 512) != 0) {
					fmt(out, OUT_MAX, "blkverify bad %u", s + k);
					reply(out);
					return;
				}
			}
		}
		done += n;
	}
	fmt(out, OUT_MAX, "%s ok %u", cmd, count);
	reply(out);
}

int blk_command(int argc, char **argv)
{
	char out[OUT_MAX];
	const char *cmd = argv[0];
	int is_blk = strcmp(cmd, "blk") == 0, is_write = strcmp(cmd, "blkwrite") == 0,
	    is_verify = strcmp(cmd, "blkverify") == 0, is_read = strcmp(cmd, "blkread") == 0,
	    is_flush = strcmp(cmd, "blkflush") == 0;
	if (!(is_blk || is_write || is_verify || is_read || is_flush))
		return 0;
	blk_probe();

	if (is_blk) {
		if (argc != 1) {
			reply("error blk: takes no arguments");
			return 1;
		}
		cmd_blk(out);
		return 1;
	}
	if (is_write || is_verify) {
		u64 sector, count, seed;
		if (argc != 5 || parse_u64(argv[2], &sector) || parse_u64(argv[3], &count) ||
		    parse_u64(argv[4], &seed)) {
			fmt(out, OUT_MAX, "error %s: usage: %s DEV SECTOR COUNT SEED", cmd, cmd);
			reply(out);
			return 1;
		}
		struct blk_disk *d = disk_arg(cmd, argv[1], out);
		if (!d || !range_ok(cmd, d, sector, count, out))
			return 1;
		if (is_write && d->ro) {
			io_error(cmd, sector, BLK_ERO, out);
			return 1;
		}
		cmd_write_verify(is_verify, sector, count, seed, d, out);
		return 1;
	}
	if (is_read) {
		u64 sector;
		if (argc != 3 || parse_u64(argv[2], &sector)) {
			reply("error blkread: usage: blkread DEV SECTOR");
			return 1;
		}
		struct blk_disk *d = disk_arg(cmd, argv[1], out);
		if (!d || !range_ok(cmd, d, sector, 1, out))
			return 1;
		int err = blk_read(d, sector, 1, blk_buf);
		if (err) {
			io_error(cmd, sector, err, out);
			return 1;
		}
		char h[33];
		hex(h, blk_buf, 16);
		u32 c = crc32(blk_buf, 512);
		u8 cb[4] = { (u8)(c >> 24), (u8)(c >> 16), (u8)(c >> 8), (u8)c };
		char ch[9];
		hex(ch, cb, 4);
		fmt(out, OUT_MAX, "blkread %u %s %s", sector, h, ch);
		reply(out);
		return 1;
	}
	/* blkflush */
	if (argc != 2) {
		reply("error blkflush: usage: blkflush DEV");
		return 1;
	}
	struct blk_disk *d = disk_arg(cmd, argv[1], out);
	if (!d)
		return 1;
	int err = blk_flush(d);
	if (err) {
		fmt(out, OUT_MAX, "error blkflush: %s", blk_strerror(err));
		reply(out);
		return 1;
	}
	reply("blkflush ok");
	return 1;
}
