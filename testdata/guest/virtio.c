/*
 * virtio.c: virtio-mmio transport and split virtqueues, driver side
 * (ring 3). See virtio.h for the API and README.md for the command-line
 * form and the choices (version 2 only, polled completions).
 *
 * Ordering: x86 is TSO, so stores reach the device in program order and a
 * compiler barrier is enough between filling descriptors, publishing
 * avail->ring and bumping avail->idx. The doorbell is an MMIO write, which
 * traps to the VMM after all earlier stores are visible.
 */
#include "virtio.h"
#include "syscall.h"

struct virtio_dev virtio_devs[VIRTIO_MAX_DEVS];
u32 virtio_ndevs;
static int scanned;

#define PREFIX "virtio_mmio.device="

/* number parses a C-style unsigned number (0x hex or decimal) at *s and advances *s. */
static int number(const char **s, u64 *out)
{
	const char *p = *s;
	u32 base = 10;
	u64 v = 0;
	int digits = 0;
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	}
	for (;; p++) {
		u32 d;
		if (*p >= '0' && *p <= '9')
			d = (u32)(*p - '0');
		else if (base == 16 && *p >= 'a' && *p <= 'f')
			d = (u32)(*p - 'a' + 10);
		else if (base == 16 && *p >= 'A' && *p <= 'F')
			d = (u32)(*p - 'A' + 10);
		else
			break;
		if (v > (~0ul - d) / base)
			return -1;
		v = v * base + d;
		digits++;
	}
	if (!digits)
		return -1;
	*s = p;
	*out = v;
	return 0;
}

/*
 * parse_device parses "<size>@<base>:<irq>[:<id>]" (Linux's form: size may
 * end in K, M or G) up to the end of the word. Returns -1 if malformed.
 */
static int parse_device(const char *s, u64 *size, u64 *base, u64 *irq)
{
	if (number(&s, size))
		return -1;
	u32 shift = 0;
	switch (*s) {
	case 'k': case 'K': shift = 10; s++; break;
	case 'm': case 'M': shift = 20; s++; break;
	case 'g': case 'G': shift = 30; s++; break;
	}
	if (*size > (~0ul >> shift))
		return -1;
	*size <<= shift;
	if (*s++ != '@' || number(&s, base) || *s++ != ':' || number(&s, irq))
		return -1;
	if (*s == ':') {
		u64 id;
		s++;
		if (number(&s, &id))
			return -1;
	}
	return (*s == 0 || *s == ' ') ? 0 : -1;
}

static void probe(struct virtio_dev *d)
{
	if (virtio_read(d, VIRTIO_MMIO_MAGIC) != VIRTIO_MMIO_MAGIC_VALUE) {
		d->state = VIRTIO_DEV_BAD;
		d->why = "bad-magic";
		return;
	}
	d->version = virtio_read(d, VIRTIO_MMIO_VERSION);
	d->device_id = virtio_read(d, VIRTIO_MMIO_DEVICE_ID);
	d->vendor_id = virtio_read(d, VIRTIO_MMIO_VENDOR_ID);
	if (d->version == 1) {
		d->state = VIRTIO_DEV_BAD;
		d->why = "legacy-virtio-mmio-version-1-unsupported";
	} else if (d->version != 2) {
		d->state = VIRTIO_DEV_BAD;
		d->why = "unknown-virtio-mmio-version";
	} else if (d->device_id == 0) {
		d->state = VIRTIO_DEV_BAD;
		d->why = "no-device";
	} else {
		d->state = VIRTIO_DEV_FOUND;
	}
}

u32 virtio_scan(void)
{
	if (scanned)
		return virtio_ndevs;
	scanned = 1;
	const char *c = bootinfo.cmdline;
	const usize plen = sizeof(PREFIX) - 1;
	while (*c) {
		while (*c == ' ')
			c++;
		if (!*c)
			break;
		if (memcmp(c, PREFIX, plen) == 0 && virtio_ndevs < VIRTIO_MAX_DEVS) {
			struct virtio_dev *d = &virtio_devs[virtio_ndevs];
			u64 size, base, irq;
			memset(d, 0, sizeof(*d));
			if (parse_device(c + plen, &size, &base, &irq) == 0) {
				d->base = base;
				d->size = size;
				d->irq = (u32)irq;
				/* Registers up to Config must exist, and the window must be in the identity map. */
				if (size < VIRTIO_MMIO_CONFIG || (base & 3) || base + size < base || base + size > mapped_top) {
					d->state = VIRTIO_DEV_BAD;
					d->why = "window-outside-the-map";
				} else {
					probe(d);
				}
				virtio_ndevs++;
			}
		}
		while (*c && *c != ' ')
			c++;
	}
	return virtio_ndevs;
}

void virtio_fail(struct virtio_dev *d, const char *why)
{
	virtio_write(d, VIRTIO_MMIO_STATUS, virtio_read(d, VIRTIO_MMIO_STATUS) | VIRTIO_STATUS_FAILED);
	d->state = VIRTIO_DEV_BAD;
	d->why = why;
}

static void set_status(struct virtio_dev *d, u32 bit)
{
	virtio_write(d, VIRTIO_MMIO_STATUS, virtio_read(d, VIRTIO_MMIO_STATUS) | bit);
}

int virtio_negotiate(struct virtio_dev *d, u64 wanted)
{
	return virtio_negotiate_fix(d, wanted, NULL);
}

int virtio_negotiate_fix(struct virtio_dev *d, u64 wanted, u64 (*fix)(u64 accept))
{
	virtio_write(d, VIRTIO_MMIO_STATUS, 0);	/* reset */
	for (int i = 0; virtio_read(d, VIRTIO_MMIO_STATUS) != 0; i++) {
		if (i == 1000000) {
			d->state = VIRTIO_DEV_BAD;
			d->why = "reset-did-not-complete";
			return -1;
		}
		cpu_relax();
	}
	set_status(d, VIRTIO_STATUS_ACKNOWLEDGE);
	set_status(d, VIRTIO_STATUS_DRIVER);
	virtio_write(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	u64 offered = virtio_read(d, VIRTIO_MMIO_DEVICE_FEATURES);
	virtio_write(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	offered |= (u64)virtio_read(d, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
	d->offered = offered;
	if (!(offered & VIRTIO_F_VERSION_1)) {
		virtio_fail(d, "no-VIRTIO_F_VERSION_1");
		return -1;
	}
	u64 accept = (offered & wanted) | VIRTIO_F_VERSION_1;
	if (fix)
		accept = fix(accept) | VIRTIO_F_VERSION_1;
	virtio_write(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	virtio_write(d, VIRTIO_MMIO_DRIVER_FEATURES, (u32)accept);
	virtio_write(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	virtio_write(d, VIRTIO_MMIO_DRIVER_FEATURES, (u32)(accept >> 32));
	set_status(d, VIRTIO_STATUS_FEATURES_OK);
	if (!(virtio_read(d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK)) {
		virtio_fail(d, "FEATURES_OK-refused");
		return -1;
	}
	d->features = accept;
	return 0;
}

int virtq_setup(struct virtio_dev *d, struct virtq *q, u16 index, void *mem, u16 max, int no_irq)
{
	if (((u64)mem & 15) || max == 0 || max > VIRTQ_MAX_SIZE)
		return -1;
	virtio_write(d, VIRTIO_MMIO_QUEUE_SEL, index);
	if (virtio_read(d, VIRTIO_MMIO_QUEUE_READY) != 0)
		return -1;
	u32 devmax = virtio_read(d, VIRTIO_MMIO_QUEUE_NUM_MAX);
	if (devmax == 0)
		return -1;
	u32 num = 1;
	while (num * 2 <= max && num * 2 <= devmax)
		num *= 2;
	memset(mem, 0, VIRTQ_BYTES(max));
	q->num = (u16)num;
	q->index = index;
	q->desc = mem;
	q->avail = (struct virtq_avail *)((u8 *)mem + 16u * num);
	q->used = (struct virtq_used *)((u8 *)mem + VIRTQ_USED_OFF(num));
	for (u32 i = 0; i < num; i++)
		q->desc[i].next = (u16)(i + 1);
	q->free_head = 0;
	q->nfree = (u16)num;
	q->avail_idx = 0;
	q->last_used = 0;
	q->avail->flags = no_irq ? VIRTQ_AVAIL_F_NO_INTERRUPT : 0;
	barrier();
	u64 desc = (u64)q->desc, avail = (u64)q->avail, used = (u64)q->used;
	virtio_write(d, VIRTIO_MMIO_QUEUE_NUM, num);
	virtio_write(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (u32)desc);
	virtio_write(d, VIRTIO_MMIO_QUEUE_DESC_HIGH, (u32)(desc >> 32));
	virtio_write(d, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (u32)avail);
	virtio_write(d, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (u32)(avail >> 32));
	virtio_write(d, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (u32)used);
	virtio_write(d, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (u32)(used >> 32));
	virtio_write(d, VIRTIO_MMIO_QUEUE_READY, 1);
	return 0;
}

void virtio_driver_ok(struct virtio_dev *d)
{
	set_status(d, VIRTIO_STATUS_DRIVER_OK);
}

u32 virtio_config_read32(const struct virtio_dev *d, u32 off)
{
	return virtio_read(d, VIRTIO_MMIO_CONFIG + off);
}

u64 virtio_config_read64(const struct virtio_dev *d, u32 off)
{
	u32 gen, lo, hi;
	do {
		gen = virtio_read(d, VIRTIO_MMIO_CONFIG_GENERATION);
		lo = virtio_read(d, VIRTIO_MMIO_CONFIG + off);
		hi = virtio_read(d, VIRTIO_MMIO_CONFIG + off + 4);
	} while (virtio_read(d, VIRTIO_MMIO_CONFIG_GENERATION) != gen);
	return lo | (u64)hi << 32;
}

int virtq_add(struct virtq *q, const struct virtq_buf *bufs, u32 n)
{
	if (n == 0 || n > q->nfree)
		return -1;
	u16 head = q->free_head, i = head, last = head;
	for (u32 k = 0; k < n; k++) {
		struct virtq_desc *dd = &q->desc[i];
		dd->addr = (u64)bufs[k].addr;
		dd->len = bufs[k].len;
		dd->flags = (u16)((bufs[k].device_writes ? VIRTQ_DESC_F_WRITE : 0) | (k + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
		last = i;
		i = dd->next;
	}
	q->free_head = q->desc[last].next;
	q->nfree = (u16)(q->nfree - n);
	q->avail->ring[q->avail_idx & (q->num - 1)] = head;
	barrier();
	q->avail_idx++;
	WRITE_ONCE(q->avail->idx, q->avail_idx);
	barrier();
	return head;
}

void virtq_notify(struct virtio_dev *d, struct virtq *q)
{
	__asm__ __volatile__("mfence" ::: "memory");
	virtio_write(d, VIRTIO_MMIO_QUEUE_NOTIFY, q->index);
}

int virtq_get_used(struct virtq *q, u32 *len)
{
	if (READ_ONCE(q->used->idx) == q->last_used)
		return -1;
	barrier();
	struct virtq_used_elem e = q->used->ring[q->last_used & (q->num - 1)];
	q->last_used++;
	if (e.id >= q->num)
		return -1;
	/* Walk the chain to its end and put it back on the free list. */
	u16 i = (u16)e.id, n = 1;
	while ((q->desc[i].flags & VIRTQ_DESC_F_NEXT) && n < q->num) {
		i = q->desc[i].next;
		n++;
	}
	q->desc[i].next = q->free_head;
	q->free_head = (u16)e.id;
	q->nfree = (u16)(q->nfree + n);
	if (len)
		*len = e.len;
	return (int)e.id;
}

int virtq_wait(struct virtq *q, u32 *len, u64 timeout_ticks)
{
	/* Spin first: ring-3 reads of guest RAM are free and most requests finish quickly. */
	for (u32 i = 0; i < 200000; i++) {
		if (READ_ONCE(q->used->idx) != q->last_used)
			return virtq_get_used(q, len);
		cpu_relax();
	}
	u64 start = READ_ONCE(ticks);
	for (;;) {
		if (READ_ONCE(q->used->idx) != q->last_used)
			return virtq_get_used(q, len);
		u64 now = READ_ONCE(ticks);
		if (now - start >= timeout_ticks)
			return -1;
		sys_wait(&ticks, now);	/* until the next timer tick */
	}
}

u32 virtio_irq_ack(struct virtio_dev *d)
{
	u32 s = virtio_read(d, VIRTIO_MMIO_INTERRUPT_STATUS);
	if (s)
		virtio_write(d, VIRTIO_MMIO_INTERRUPT_ACK, s);
	return s;
}
