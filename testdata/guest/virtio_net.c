/*
 * virtio_net.c: the virtio-net driver (see virtio_net.h and README.md).
 *
 * Ring 3 does all the work. Device k's GSI is routed edge-triggered to
 * vector VEC_NET + k, whose ring-0 stub (isr.S, six instructions) only
 * bumps net_irq_count[k] and idle_wake (the word uart_getc sleeps on) and
 * EOIs. net_poll, seeing the count change, reads and acknowledges
 * InterruptStatus from ring 3 until it reads 0: then the line is low, and
 * the device's next event makes a fresh edge whether the VMM holds the
 * line at InterruptStatus != 0 (QEMU) or pulses it.
 *
 * Buffers: every chain is one descriptor, so a chain's head descriptor
 * index names its buffer (rxbufs/txbufs + index * NET_BUF_SIZE) and the
 * queue's free_head is always a free buffer. Rings and buffers live in
 * .netmem, which ring 0 does not clear at boot (virtq_setup zeroes the
 * rings; buffers are written before they are read).
 */
#include "virtio_net.h"
#include "syscall.h"

#define NETMEM __attribute__((section(".netmem"), aligned(64)))

static u8 rxq_mem[NET_MAX_DEVS][VIRTQ_BYTES(NET_RX_QSIZE)] NETMEM;
static u8 txq_mem[NET_MAX_DEVS][VIRTQ_BYTES(NET_TX_QSIZE)] NETMEM;
static u8 ctrlq_mem[NET_MAX_DEVS][VIRTQ_BYTES(NET_CTRL_QSIZE)] NETMEM;
static u8 rx_mem[NET_MAX_DEVS][NET_RX_QSIZE * NET_BUF_SIZE] NETMEM;
static u8 tx_mem[NET_MAX_DEVS][NET_TX_QSIZE * NET_BUF_SIZE] NETMEM;
static u8 ctrl_mem[NET_MAX_DEVS][64] NETMEM;

struct net_dev net_devs[NET_MAX_DEVS];
u32 net_ndevs;
volatile u64 net_irq_count[NET_MAX_DEVS];
int net_tick_poll;

static inline u8 mmio_read8(u64 a) { return *(volatile u8 *)a; }
static inline u16 mmio_read16(u64 a) { return *(volatile u16 *)a; }

/* read_config reads the MAC and status under ConfigGeneration. */
static u16 read_config(struct net_dev *n, int with_mac)
{
	const struct virtio_dev *d = n->vd;
	u16 status;
	for (int tries = 0; tries < 100; tries++) {
		u32 gen = virtio_read(d, VIRTIO_MMIO_CONFIG_GENERATION);
		if (with_mac)
			for (int i = 0; i < 6; i++)
				n->mac[i] = mmio_read8(d->base + VIRTIO_MMIO_CONFIG + VIRTIO_NET_CFG_MAC + i);
		status = (d->features & VIRTIO_NET_F_STATUS)
				 ? mmio_read16(d->base + VIRTIO_MMIO_CONFIG + VIRTIO_NET_CFG_STATUS)
				 : VIRTIO_NET_S_LINK_UP;
		if (virtio_read(d, VIRTIO_MMIO_CONFIG_GENERATION) == gen)
			break;
	}
	return status;
}

static u64 fix_features(u64 accept)
{
	if (!(accept & VIRTIO_NET_F_CTRL_VQ))
		accept &= ~VIRTIO_NET_F_GUEST_ANNOUNCE;
	return accept;
}

/* rx_post hands every free rx descriptor's buffer to the device; returns how many. */
static u32 rx_post(struct net_dev *n)
{
	u32 k = 0;
	while (n->rx.nfree) {
		struct virtq_buf b = { n->rxbufs + (u64)n->rx.free_head * NET_BUF_SIZE, NET_BUF_SIZE, 1 };
		if (virtq_add(&n->rx, &b, 1) < 0)
			break;
		k++;
	}
	return k;
}

/* kick notifies q unless the device asked not to be (VIRTQ_USED_F_NO_NOTIFY). */
static void kick(struct net_dev *n, struct virtq *q)
{
	__asm__ __volatile__("mfence" ::: "memory");
	if (!(READ_ONCE(q->used->flags) & 1))
		virtio_write(n->vd, VIRTIO_MMIO_QUEUE_NOTIFY, q->index);
}

static void init_dev(struct virtio_dev *v)
{
	const u64 wanted = VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS | VIRTIO_NET_F_CTRL_VQ |
			   VIRTIO_NET_F_GUEST_ANNOUNCE;
	u32 k = net_ndevs;
	v->state = VIRTIO_DEV_CLAIMED;
	if (virtio_negotiate_fix(v, wanted, fix_features) < 0)
		return;
	struct net_dev *n = &net_devs[k];
	memset(n, 0, sizeof(*n));
	n->vd = v;
	n->num = k;
	n->rxbufs = rx_mem[k];
	n->txbufs = tx_mem[k];
	n->ctrlbuf = ctrl_mem[k];
	if (virtq_setup(v, &n->rx, 0, rxq_mem[k], NET_RX_QSIZE, 0) < 0) {
		virtio_fail(v, "no-usable-rx-queue");
		return;
	}
	if (virtq_setup(v, &n->tx, 1, txq_mem[k], NET_TX_QSIZE, 1) < 0) {
		virtio_fail(v, "no-usable-tx-queue");
		return;
	}
	if (v->features & VIRTIO_NET_F_CTRL_VQ) {
		if (virtq_setup(v, &n->ctrl, 2, ctrlq_mem[k], NET_CTRL_QSIZE, 1) < 0 || n->ctrl.num < 2) {
			virtio_fail(v, "no-usable-ctrl-queue");
			return;
		}
		n->has_ctrl = 1;
	}
	if (v->features & VIRTIO_NET_F_MAC) {
		read_config(n, 1);
	} else {
		/* A locally administered address of our own. */
		const u8 mac[6] = { 0x52, 0x54, 0x00, 0xff, 0x00, (u8)k };
		memcpy(n->mac, mac, 6);
	}
	n->irq_seen = READ_ONCE(net_irq_count[k]);
	if (ioapic_route(v->irq, (u8)(VEC_NET + k), lapic_id(), 0) < 0) {
		print("chsnap-guest: no IOAPIC serves net%u's GSI %u: polled once per tick\r\n", (u64)k, (u64)v->irq);
		n->polled = 1;
		net_tick_poll = 1;
	}
	virtio_driver_ok(v);
	n->link_up = (read_config(n, 0) & VIRTIO_NET_S_LINK_UP) != 0;
	net_ndevs++;
	rx_post(n);
	kick(n, &n->rx);
	/* Link state and an announce pending from before DRIVER_OK: on the first poll. */
	n->config_pending = 1;
}

void net_init(void)
{
	virtio_scan();
	for (u32 i = 0; i < virtio_ndevs && net_ndevs < NET_MAX_DEVS; i++) {
		struct virtio_dev *v = &virtio_devs[i];
		if (v->state == VIRTIO_DEV_FOUND && v->device_id == VIRTIO_ID_NET)
			init_dev(v);
	}
	net_parse_cmdline();
}

void net_recheck(void)
{
	for (u32 k = 0; k < net_ndevs; k++)
		net_devs[k].recheck = 1;
}

/* tx_reclaim takes back the buffers the device has finished sending. */
static void tx_reclaim(struct net_dev *n)
{
	while (virtq_get_used(&n->tx, NULL) >= 0)
		;
}

u8 *net_tx_buf(struct net_dev *n)
{
	tx_reclaim(n);
	for (u32 i = 0; !n->tx.nfree && i < 100000; i++) {
		cpu_relax();
		tx_reclaim(n);
	}
	if (!n->tx.nfree)
		return NULL;
	u8 *b = n->txbufs + (u64)n->tx.free_head * NET_BUF_SIZE;
	return b + NET_HDR_LEN;
}

void net_tx(struct net_dev *n, u8 *frame, u32 len)
{
	u8 *b = frame - NET_HDR_LEN;
	if (len > NET_FRAME_MAX || b != n->txbufs + (u64)n->tx.free_head * NET_BUF_SIZE || !n->tx.nfree) {
		n->drops++;
		return;
	}
	/* Pad to Ethernet's 60-byte minimum. */
	for (; len < 60; len++)
		frame[len] = 0;
	memset(b, 0, NET_HDR_LEN);	/* no checksum or GSO work for the device */
	struct virtq_buf vb = { b, NET_HDR_LEN + len, 0 };
	if (virtq_add(&n->tx, &vb, 1) < 0) {
		n->drops++;
		return;
	}
	kick(n, &n->tx);
	n->tx_frames++;
}

/* announce_ack sends VIRTIO_NET_CTRL_ANNOUNCE_ACK and waits (bounded) for the answer. */
static void announce_ack(struct net_dev *n)
{
	u8 *hdr = n->ctrlbuf, *ack = n->ctrlbuf + 16;
	while (virtq_get_used(&n->ctrl, NULL) >= 0)	/* a late answer to an earlier timed-out command */
		;
	hdr[0] = VIRTIO_NET_CTRL_ANNOUNCE;
	hdr[1] = VIRTIO_NET_CTRL_ANNOUNCE_ACK;
	*ack = 0xff;
	struct virtq_buf b[2] = { { hdr, 2, 0 }, { ack, 1, 1 } };
	if (virtq_add(&n->ctrl, b, 2) < 0) {
		n->ctrl_errors++;
		return;
	}
	virtq_notify(n->vd, &n->ctrl);
	if (virtq_wait(&n->ctrl, NULL, TIMER_HZ) < 0 || READ_ONCE(*ack) != VIRTIO_NET_OK)
		n->ctrl_errors++;
}

static void config_changed(struct net_dev *n)
{
	u16 status = read_config(n, 0);
	n->link_up = (status & VIRTIO_NET_S_LINK_UP) != 0;
	if ((n->vd->features & VIRTIO_NET_F_GUEST_ANNOUNCE) && (status & VIRTIO_NET_S_ANNOUNCE)) {
		if (n->has_ip)
			net_gratuitous_arp(n);
		announce_ack(n);
		n->announces++;
	}
}

int net_poll(void)
{
	int events = 0;
	for (u32 k = 0; k < net_ndevs; k++) {
		struct net_dev *n = &net_devs[k];
		if (n->vd->state != VIRTIO_DEV_CLAIMED)
			continue;
		u64 count = READ_ONCE(net_irq_count[k]);
		if (count != n->irq_seen || n->polled || n->recheck) {
			n->recheck = 0;
			n->irq_seen = count;
			/* Until it reads 0, so that the line is low (see the top). */
			for (int r = 0; r < 8; r++) {
				u32 s = virtio_irq_ack(n->vd);
				if (!s)
					break;
				if (s & 2)
					n->config_pending = 1;
			}
		}
		if (n->config_pending) {
			n->config_pending = 0;
			config_changed(n);
			events++;
		}
		u32 got = 0, len;
		int head;
		while (got < NET_RX_QSIZE && (head = virtq_get_used(&n->rx, &len)) >= 0) {
			got++;
			if (len < NET_HDR_LEN + 14 || len > NET_BUF_SIZE) {
				n->drops++;
				continue;
			}
			n->rx_frames++;
			const u8 *b = n->rxbufs + (u64)head * NET_BUF_SIZE;
			net_input(n, b + NET_HDR_LEN, len - NET_HDR_LEN);
		}
		if (got) {
			rx_post(n);
			kick(n, &n->rx);
			events += (int)got;
		}
		tx_reclaim(n);
	}
	return events;
}
