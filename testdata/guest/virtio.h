/*
 * virtio.h: the guest's virtio-mmio core (driver side, ring 3): device
 * discovery from the kernel command line, feature negotiation, split
 * virtqueues, notification and interrupt acknowledgement. Device drivers
 * (virtio_blk.c, later virtio-net) build on it. Only virtio-mmio version 2
 * ("virtio 1.x", VIRTIO_F_VERSION_1) is supported; a legacy version-1
 * transport is reported as such and left alone.
 *
 * Everything here runs in ring 3: MMIO registers are written directly
 * (the identity map is user-accessible), the queues live in the image's
 * .bss, and completions are polled (virtq_wait), so no ring-0 code is
 * involved except the timer tick that wakes a slow wait.
 */
#ifndef GUEST_VIRTIO_H
#define GUEST_VIRTIO_H

#include "guest.h"

/* virtio-mmio registers (virtio 1.2, 4.2.2). */
#define VIRTIO_MMIO_MAGIC		0x000	/* "virt" = 0x74726976 */
#define VIRTIO_MMIO_VERSION		0x004
#define VIRTIO_MMIO_DEVICE_ID		0x008
#define VIRTIO_MMIO_VENDOR_ID		0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES	0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL	0x014
#define VIRTIO_MMIO_DRIVER_FEATURES	0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL	0x024
#define VIRTIO_MMIO_QUEUE_SEL		0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX	0x034
#define VIRTIO_MMIO_QUEUE_NUM		0x038
#define VIRTIO_MMIO_QUEUE_READY		0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY	0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS	0x060
#define VIRTIO_MMIO_INTERRUPT_ACK	0x064
#define VIRTIO_MMIO_STATUS		0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW	0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH	0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW	0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH	0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW	0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH	0x0a4
#define VIRTIO_MMIO_CONFIG_GENERATION	0x0fc
#define VIRTIO_MMIO_CONFIG		0x100

#define VIRTIO_MMIO_MAGIC_VALUE		0x74726976u

/* Device status bits. */
#define VIRTIO_STATUS_ACKNOWLEDGE	1
#define VIRTIO_STATUS_DRIVER		2
#define VIRTIO_STATUS_DRIVER_OK		4
#define VIRTIO_STATUS_FEATURES_OK	8
#define VIRTIO_STATUS_NEEDS_RESET	64
#define VIRTIO_STATUS_FAILED		128

#define VIRTIO_F_VERSION_1		(1ul << 32)

/* Device ids. */
#define VIRTIO_ID_NET			1
#define VIRTIO_ID_BLOCK			2

/* Split virtqueue layout (virtio 1.2, 2.7). */
struct virtq_desc {
	u64 addr;
	u32 len;
	u16 flags;
	u16 next;
};
#define VIRTQ_DESC_F_NEXT	1
#define VIRTQ_DESC_F_WRITE	2	/* device writes the buffer */

struct virtq_avail {
	u16 flags;
	u16 idx;
	u16 ring[];
};
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

struct virtq_used_elem {
	u32 id;
	u32 len;
};
struct virtq_used {
	u16 flags;
	u16 idx;
	struct virtq_used_elem ring[];
};

/*
 * VIRTQ_BYTES(n) is the memory a queue of n entries needs: descriptors,
 * then the available ring, then (8-byte aligned) the used ring. The memory
 * handed to virtq_setup must be 16-byte aligned and must not be touched by
 * anything else (not the free RAM that fill uses); VIRTQ_BYTES is a multiple
 * of 16, so an array of queues stays aligned.
 */
#define VIRTQ_USED_OFF(n)	(((16u * (n)) + 6u + 2u * (n) + 7u) & ~7u)
#define VIRTQ_BYTES(n)		((VIRTQ_USED_OFF(n) + 6u + 8u * (n) + 15u) & ~15u)
#define VIRTQ_MAX_SIZE		256

struct virtq {
	u16 num;		/* entries (a power of 2) */
	u16 index;		/* QueueSel value */
	u16 free_head;		/* first free descriptor, chained by next */
	u16 nfree;
	u16 avail_idx;		/* our copy of avail->idx */
	u16 last_used;		/* used->idx consumed so far */
	struct virtq_desc *desc;
	struct virtq_avail *avail;
	struct virtq_used *used;
};

/* One buffer of a request chain. */
struct virtq_buf {
	void *addr;
	u32 len;
	int device_writes;	/* 1: device-writable (VIRTQ_DESC_F_WRITE) */
};

/* State of a transport named on the command line. */
enum {
	VIRTIO_DEV_FOUND,	/* version 2, has a device: a driver may claim it */
	VIRTIO_DEV_CLAIMED,	/* a driver owns it */
	VIRTIO_DEV_BAD,		/* see why */
};

#define VIRTIO_MAX_DEVS 16

struct virtio_dev {
	u64 base, size;		/* MMIO window */
	u32 irq;		/* GSI from the command line */
	u32 state;
	u32 version;		/* Version register */
	u32 device_id;		/* 0: no device behind the transport */
	u32 vendor_id;
	u64 offered;		/* device features */
	u64 features;		/* negotiated features */
	const char *why;	/* VIRTIO_DEV_BAD: a short reason without spaces */
};

extern struct virtio_dev virtio_devs[VIRTIO_MAX_DEVS];
extern u32 virtio_ndevs;

static inline u32 virtio_read(const struct virtio_dev *d, u32 reg) { return mmio_read32(d->base + reg); }
static inline void virtio_write(const struct virtio_dev *d, u32 reg, u32 v) { mmio_write32(d->base + reg, v); }

/*
 * virtio_scan parses every virtio_mmio.device=<size>@<base>:<irq>[:<id>]
 * on the command line (once; later calls return at once) and probes the
 * transports: magic, version and device id. It returns virtio_ndevs.
 */
u32 virtio_scan(void);

/*
 * virtio_negotiate resets d and runs ACKNOWLEDGE, DRIVER, the feature
 * exchange and FEATURES_OK: it accepts (offered & wanted) | VERSION_1,
 * requires VERSION_1 and that FEATURES_OK sticks. On error it sets FAILED,
 * marks d bad and returns -1.
 */
int virtio_negotiate(struct virtio_dev *d, u64 wanted);

/*
 * virtio_negotiate_fix is virtio_negotiate with a hook that may drop bits
 * from the accepted set (offered & wanted) before it is written, for
 * features that depend on others (virtio-net's GUEST_ANNOUNCE needs CTRL_VQ).
 */
int virtio_negotiate_fix(struct virtio_dev *d, u64 wanted, u64 (*fix)(u64 accept));

/*
 * virtq_setup selects queue index, sizes it (at most max entries, a power
 * of 2, no more than QueueNumMax), lays it out in mem (VIRTQ_BYTES(max)
 * bytes, zeroed here) and makes it ready. Device interrupts for the queue
 * are suppressed when no_irq is set (drivers that poll). Returns -1 if the
 * queue does not exist or is already live.
 */
int virtq_setup(struct virtio_dev *d, struct virtq *q, u16 index, void *mem, u16 max, int no_irq);

/* virtio_driver_ok sets DRIVER_OK: queues set up, the device may run. */
void virtio_driver_ok(struct virtio_dev *d);

/* virtio_fail sets FAILED and marks the device bad with reason why. */
void virtio_fail(struct virtio_dev *d, const char *why);

/*
 * virtio_config_read32 reads the 32-bit config field at off, and
 * virtio_config_read64 a 64-bit one as two halves retried until
 * ConfigGeneration is stable.
 */
u32 virtio_config_read32(const struct virtio_dev *d, u32 off);
u64 virtio_config_read64(const struct virtio_dev *d, u32 off);

/*
 * virtq_add chains n buffers (device-readable ones first), publishes the
 * chain in the available ring and returns its head descriptor, or -1 when
 * the queue has too few free descriptors. The device is not told: call
 * virtq_notify after adding one or more chains.
 */
int virtq_add(struct virtq *q, const struct virtq_buf *bufs, u32 n);

/* virtq_notify rings the queue's doorbell (QueueNotify). */
void virtq_notify(struct virtio_dev *d, struct virtq *q);

/*
 * virtq_get_used takes the next used element, frees its chain and returns
 * its head (len: bytes the device wrote), or -1 when there is none.
 */
int virtq_get_used(struct virtq *q, u32 *len);

/*
 * virtq_wait polls for the next used element: a bounded spin, then one
 * check per timer tick (sys_wait on ticks) until timeout_ticks have
 * passed. Returns the head as virtq_get_used does, or -1 on timeout.
 */
int virtq_wait(struct virtq *q, u32 *len, u64 timeout_ticks);

/*
 * virtio_irq_ack reads InterruptStatus and acknowledges every bit set
 * (bit 0: used buffer, bit 1: config change); returns the bits. An
 * interrupt-driven driver calls it from its handler path, a polling one
 * may call it to keep the line low.
 */
u32 virtio_irq_ack(struct virtio_dev *d);

#endif
