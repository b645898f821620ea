/*
 * virtio_net.h: the guest's virtio-net driver (virtio_net.c, ring 3 plus a
 * tiny ring-0 interrupt handler) and its IPv4 responder (net.c, ring 3).
 *
 * Every virtio-mmio transport with device id 1 is claimed at boot
 * (net_init), numbered 0, 1, ... in command-line order among the net
 * devices that initialise. Features taken: VERSION_1, MAC, STATUS, CTRL_VQ,
 * GUEST_ANNOUNCE (only with CTRL_VQ); no offloads, so frames arrive and
 * leave fully checksummed, and the header is always 12 bytes. Queues: rx
 * (0), tx (1), ctrl (2, with CTRL_VQ). Device k's GSI is routed (edge,
 * active high) to VEC_NET + k; the ring-0 stub counts the interrupt in
 * net_irq_count[k] and bumps idle_wake, and ring 3 (net_poll, called from
 * uart_getc's idle wait) does the rest.
 */
#ifndef GUEST_VIRTIO_NET_H
#define GUEST_VIRTIO_NET_H

#include "virtio.h"

/* Feature bits (virtio 1.2, 5.1.3). */
#define VIRTIO_NET_F_MAC		(1ul << 5)
#define VIRTIO_NET_F_MRG_RXBUF		(1ul << 15)
#define VIRTIO_NET_F_STATUS		(1ul << 16)
#define VIRTIO_NET_F_CTRL_VQ		(1ul << 17)
#define VIRTIO_NET_F_GUEST_ANNOUNCE	(1ul << 21)

/* Config space: mac[6] at 0, status (le16) at 6. */
#define VIRTIO_NET_CFG_MAC	0
#define VIRTIO_NET_CFG_STATUS	6
#define VIRTIO_NET_S_LINK_UP	1
#define VIRTIO_NET_S_ANNOUNCE	2

/* Control queue: class ANNOUNCE, command ACK; the device answers OK = 0. */
#define VIRTIO_NET_CTRL_ANNOUNCE	3
#define VIRTIO_NET_CTRL_ANNOUNCE_ACK	0
#define VIRTIO_NET_OK			0

#define NET_RX_QSIZE	32	/* rx buffers posted per device */
#define NET_TX_QSIZE	16
#define NET_CTRL_QSIZE	4
#define NET_HDR_LEN	12	/* struct virtio_net_hdr with num_buffers (virtio 1.x) */
#define NET_BUF_SIZE	1536	/* header + a 1514-byte frame, rounded up */
#define NET_MTU		1500
#define NET_FRAME_MAX	(14 + NET_MTU)

struct net_dev {
	struct virtio_dev *vd;
	u32 num;			/* net device number */
	u8 mac[6];
	u32 ip;				/* host order; valid when has_ip */
	u32 prefix;
	int has_ip;
	int link_up;
	struct virtq rx, tx, ctrl;
	int has_ctrl;
	u8 *rxbufs, *txbufs;		/* NET_*_QSIZE buffers of NET_BUF_SIZE, indexed by descriptor */
	u8 *ctrlbuf;
	u64 rx_frames, tx_frames, drops, announces;
	u64 ctrl_errors;
	u64 irq_seen;			/* net_irq_count[num] last handled */
	int polled;			/* no IOAPIC route: check InterruptStatus on every poll */
	int config_pending;		/* reread the status (link, announce) */
	int recheck;			/* read InterruptStatus on the next poll */
};

extern struct net_dev net_devs[NET_MAX_DEVS];
extern u32 net_ndevs;


/* net_init claims and starts every virtio-net transport (ring 3, at boot). */
void net_init(void);

/*
 * net_poll handles what the devices have done: config changes (link,
 * announce), received frames (answered through net_input) and finished
 * transmissions. Returns the number of events handled, 0 when idle.
 */
int net_poll(void);

/*
 * net_tx_buf returns a free transmit buffer's frame area (after the
 * header; NET_FRAME_MAX bytes), or NULL when the queue is full; net_tx
 * sends len bytes of it. Between them nothing else may transmit.
 */
u8 *net_tx_buf(struct net_dev *n);
void net_tx(struct net_dev *n, u8 *frame, u32 len);

/* net.c: the IPv4 responder and the shell commands. */
void net_input(struct net_dev *n, const u8 *frame, u32 len);
void net_gratuitous_arp(struct net_dev *n);
void net_parse_cmdline(void);
int net_command(int argc, char **argv);	/* ip, net; 1 if it replied */

#endif
