/*
 * virtio_blk.h: the virtio-blk driver (virtio_blk.c) for the blk shell
 * commands (blkcmd.c). Ring 3; sectors are 512 bytes whatever the
 * device's logical block size.
 */
#ifndef GUEST_VIRTIO_BLK_H
#define GUEST_VIRTIO_BLK_H

#include "virtio.h"

#define BLK_MAX_DISKS	4
#define BLK_BUF_BYTES	4096	/* data per request: 8 sectors */

/* Errors returned by blk_read, blk_write and blk_flush. */
enum {
	BLK_ERANGE = -1,	/* sector range outside the disk, or count 0 or too big */
	BLK_ERO = -2,		/* write to a read-only disk */
	BLK_EIO = -3,		/* device status VIRTIO_BLK_S_IOERR */
	BLK_EUNSUPP = -4,	/* device status VIRTIO_BLK_S_UNSUPP */
	BLK_ETIMEOUT = -5,	/* no completion in time; the disk is now broken */
	BLK_EBROKEN = -6,	/* an earlier request failed to complete */
	BLK_ENOFLUSH = -7,	/* flush without VIRTIO_BLK_F_FLUSH */
};

struct blk_disk {
	struct virtio_dev *dev;
	struct virtq *q;
	u64 sectors;		/* capacity in 512-byte sectors */
	u32 blk_size;		/* logical block size (VIRTIO_BLK_F_BLK_SIZE, else 512) */
	u32 max_sectors;	/* per request */
	int ro, flush, broken;
};

extern struct blk_disk blk_disks[BLK_MAX_DISKS];
extern u32 blk_ndisks;
extern u8 blk_buf[BLK_BUF_BYTES];	/* a DMA-able buffer for callers */

/*
 * blk_probe scans the virtio-mmio devices (once) and sets up every block
 * device as disk 0, 1, ... in command-line order. Returns blk_ndisks.
 */
u32 blk_probe(void);

/* blk_read reads count sectors (1..max_sectors) at sector into buf; 0 or a BLK_E*. */
int blk_read(struct blk_disk *d, u64 sector, u32 count, void *buf);
/* blk_write writes count sectors (1..max_sectors) from buf at sector; 0 or a BLK_E*. */
int blk_write(struct blk_disk *d, u64 sector, u32 count, const void *buf);
/* blk_flush asks the device to make completed writes durable; 0 or a BLK_E*. */
int blk_flush(struct blk_disk *d);
/* blk_strerror describes a BLK_E* error (no trailing newline). */
const char *blk_strerror(int err);

/* blk_command runs a blk* shell command (blkcmd.c) and prints its reply; 0 if argv[0] is not one. */
int blk_command(int argc, char **argv);
/* blkbench_command runs `blkbench` (blkbench.c) and prints its reply; 0 if argv[0] is not it. */
int blkbench_command(int argc, char **argv);

#endif
