/*
 * virtio_blk.c: virtio-blk driver (ring 3) on the virtio core (virtio.c).
 *
 * One request queue per disk, one request in flight at a time: a request
 * is three descriptors (16-byte header, data, status byte) and the driver
 * polls the used ring for its completion (virtq_wait), so the device's
 * interrupt is suppressed and never routed. Data moves through one
 * BLK_BUF_BYTES buffer in .bss (kept small because ring 0 zeroes .bss at
 * boot); callers split larger transfers.
 */
#include "virtio_blk.h"

#define VIRTIO_BLK_F_SIZE_MAX	(1ul << 1)
#define VIRTIO_BLK_F_SEG_MAX	(1ul << 2)
#define VIRTIO_BLK_F_RO		(1ul << 5)
#define VIRTIO_BLK_F_BLK_SIZE	(1ul << 6)
#define VIRTIO_BLK_F_FLUSH	(1ul << 9)

#define VIRTIO_BLK_T_IN		0
#define VIRTIO_BLK_T_OUT	1
#define VIRTIO_BLK_T_FLUSH	4

#define VIRTIO_BLK_S_OK		0
#define VIRTIO_BLK_S_IOERR	1
#define VIRTIO_BLK_S_UNSUPP	2

#define BLK_QUEUE_SIZE	8
#define BLK_TIMEOUT_TICKS (10 * TIMER_HZ)

struct blk_req_hdr {
	u32 type;
	u32 reserved;
	u64 sector;
};

struct blk_disk blk_disks[BLK_MAX_DISKS];
u32 blk_ndisks;
static int probed;

static u8 qmem[BLK_MAX_DISKS][VIRTQ_BYTES(BLK_QUEUE_SIZE)] __attribute__((aligned(64)));
static struct virtq queues[BLK_MAX_DISKS];
static struct blk_req_hdr req_hdr __attribute__((aligned(16)));
static volatile u8 req_status __attribute__((aligned(16)));
u8 blk_buf[BLK_BUF_BYTES] __attribute__((aligned(64)));

static void init_disk(struct virtio_dev *v)
{
	const u64 wanted = VIRTIO_BLK_F_SIZE_MAX | VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_RO |
			   VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_FLUSH;
	u32 n = blk_ndisks;
	v->state = VIRTIO_DEV_CLAIMED;
	if (virtio_negotiate(v, wanted) < 0)
		return;
	/* A request takes three descriptors. */
	if (virtq_setup(v, &queues[n], 0, qmem[n], BLK_QUEUE_SIZE, 1) < 0 || queues[n].num < 3) {
		virtio_fail(v, "no-usable-queue-0");
		return;
	}
	struct blk_disk *d = &blk_disks[n];
	memset(d, 0, sizeof(*d));
	d->dev = v;
	d->q = &queues[n];
	d->sectors = virtio_config_read64(v, 0);
	d->ro = (v->features & VIRTIO_BLK_F_RO) != 0;
	d->flush = (v->features & VIRTIO_BLK_F_FLUSH) != 0;
	d->blk_size = (v->features & VIRTIO_BLK_F_BLK_SIZE) ? virtio_config_read32(v, 20) : 512;
	/* One data segment per request, so only SIZE_MAX limits it. */
	d->max_sectors = BLK_BUF_BYTES / 512;
	if (v->features & VIRTIO_BLK_F_SIZE_MAX) {
		u32 sm = virtio_config_read32(v, 8) / 512;
		if (sm == 0) {
			virtio_fail(v, "size_max-below-512");
			return;
		}
		if (sm < d->max_sectors)
			d->max_sectors = sm;
	}
	virtio_driver_ok(v);
	blk_ndisks++;
}

u32 blk_probe(void)
{
	if (probed)
		return blk_ndisks;
	probed = 1;
	virtio_scan();
	for (u32 i = 0; i < virtio_ndevs && blk_ndisks < BLK_MAX_DISKS; i++) {
		struct virtio_dev *v = &virtio_devs[i];
		if (v->state == VIRTIO_DEV_FOUND && v->device_id == VIRTIO_ID_BLOCK)
			init_disk(v);
	}
	return blk_ndisks;
}

/* request runs one request and waits for it; returns 0 or a negative BLK_E*. */
static int request(struct blk_disk *d, u32 type, u64 sector, void *buf, u32 len)
{
	if (d->broken)
		return BLK_EBROKEN;
	req_hdr.type = type;
	req_hdr.reserved = 0;
	req_hdr.sector = sector;
	req_status = 0xff;
	struct virtq_buf bufs[3];
	u32 n = 0;
	bufs[n++] = (struct virtq_buf){ &req_hdr, sizeof(req_hdr), 0 };
	if (len)
		bufs[n++] = (struct virtq_buf){ buf, len, type == VIRTIO_BLK_T_IN };
	bufs[n++] = (struct virtq_buf){ (void *)&req_status, 1, 1 };
	int head = virtq_add(d->q, bufs, n);
	if (head < 0)
		return BLK_EBROKEN;
	virtq_notify(d->dev, d->q);
	u32 used_len;
	int got = virtq_wait(d->q, &used_len, BLK_TIMEOUT_TICKS);
	virtio_irq_ack(d->dev);
	if (got != head) {
		/* Timed out or out of step: the device may still own our buffers. */
		d->broken = 1;
		return got < 0 ? BLK_ETIMEOUT : BLK_EBROKEN;
	}
	switch (req_status) {
	case VIRTIO_BLK_S_OK:
		return 0;
	case VIRTIO_BLK_S_UNSUPP:
		return BLK_EUNSUPP;
	default:
		return BLK_EIO;
	}
}

int blk_read(struct blk_disk *d, u64 sector, u32 count, void *buf)
{
	if (count == 0 || count > d->max_sectors || sector >= d->sectors || count > d->sectors - sector)
		return BLK_ERANGE;
	return request(d, VIRTIO_BLK_T_IN, sector, buf, count * 512);
}

int blk_write(struct blk_disk *d, u64 sector, u32 count, const void *buf)
{
	if (count == 0 || count > d->max_sectors || sector >= d->sectors || count > d->sectors - sector)
		return BLK_ERANGE;
	if (d->ro)
		return BLK_ERO;
	return request(d, VIRTIO_BLK_T_OUT, sector, (void *)buf, count * 512);
}

int blk_flush(struct blk_disk *d)
{
	if (!d->flush)
		return BLK_ENOFLUSH;
	return request(d, VIRTIO_BLK_T_FLUSH, 0, NULL, 0);
}

const char *blk_strerror(int err)
{
	switch (err) {
	case BLK_ERANGE: return "sector range outside the disk";
	case BLK_ERO: return "disk is read-only (VIRTIO_BLK_F_RO)";
	case BLK_EIO: return "device returned VIRTIO_BLK_S_IOERR";
	case BLK_EUNSUPP: return "device returned VIRTIO_BLK_S_UNSUPP";
	case BLK_ETIMEOUT: return "request timed out after 10 s (disk now unusable)";
	case BLK_EBROKEN: return "disk unusable after an earlier failed request";
	case BLK_ENOFLUSH: return "device did not offer VIRTIO_BLK_F_FLUSH";
	}
	return "unknown error";
}
