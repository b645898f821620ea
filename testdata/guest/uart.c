/*
 * uart.c: the 16550 console at 0x3f8, interrupt-driven in both directions.
 *
 * Ring 3 owns the producer side of the TX ring and the consumer side of the
 * RX ring; the ring-0 interrupt handler owns the other sides. Only the BSP
 * runs the shell and takes the UART interrupt (the IOAPIC routes it there),
 * so each index has one writer and the handler cannot race ring 3 on
 * another CPU.
 *
 * TX: ring 3 appends to tx_buf and, if the transmitter is idle (tx_on == 0),
 * asks ring 0 to start it (uart_ctl sets tx_on and enables the THRE
 * interrupt). The THRE handler refills the FIFO (16 bytes at a time when
 * the UART has working FIFOs) and, finding the ring empty, clears tx_on and
 * disables the THRE interrupt. A THRE interrupt only happens while tx_on is
 * set, so ring 3 seeing tx_on == 0 means nobody will drain the ring but it.
 *
 * RX: the handler moves bytes from the UART into rx_buf. When rx_buf is
 * full it pauses (disables the receive interrupt and leaves the bytes in
 * the UART, which pushes back on the host) until ring 3 has emptied half
 * the ring and resumes it, so pipelined input is never dropped.
 *
 * IER is written only in ring 0, from tx_on and rx_paused, so the handler
 * and the ring-3 requests cannot undo each other.
 */
#include "guest.h"
#include "syscall.h"

#define COM1 0x3f8
#define RBR 0
#define THR 0
#define IER 1
#define IIR 2
#define FCR 2
#define LCR 3
#define MCR 4
#define LSR 5
#define MSR 6
#define DLL 0
#define DLM 1

#define IER_RX 0x01
#define IER_THRE 0x02
#define LSR_DR 0x01
#define LSR_THRE 0x20

#define TX_SIZE 4096
#define RX_SIZE 1024

u8 kinb(u16 port);
void koutb(u16 port, u8 v);

static char tx_buf[TX_SIZE];
static volatile u64 tx_head, tx_tail;	/* head: ring 3; tail: ISR */
static volatile u64 tx_on;		/* THRE interrupt enabled */
static char rx_buf[RX_SIZE];
static volatile u64 rx_head, rx_tail;	/* head: ISR; tail: ring 3 */
static volatile u64 rx_paused;		/* receive interrupt off: rx_buf was full */
static u32 tx_burst = 1;		/* bytes per THRE interrupt */

void uart_init(void)
{
	sys_outb(COM1 + IER, 0);
	sys_outb(COM1 + LCR, 0x80);	/* DLAB */
	sys_outb(COM1 + DLL, 1);	/* 115200 baud */
	sys_outb(COM1 + DLM, 0);
	sys_outb(COM1 + LCR, 0x03);	/* 8N1 */
	/*
	 * FIFOs on, RX trigger at 1 byte. A 16550 resets its FIFOs when FIFO
	 * mode changes, so input sent before the ready line may be lost.
	 */
	sys_outb(COM1 + FCR, 0x05);
	if ((sys_inb(COM1 + IIR) & 0xc0) == 0xc0)
		tx_burst = 16;
	sys_outb(COM1 + MCR, 0x0b);	/* DTR | RTS | OUT2 (IRQ gate on PCs) */
}

/* write_ier runs in ring 0 with interrupts off. */
static void write_ier(void)
{
	koutb(COM1 + IER, (rx_paused ? 0 : IER_RX) | (tx_on ? IER_THRE : 0));
}

/* uart_ctl handles SYS_UART in ring 0. */
u64 uart_ctl(u64 op)
{
	switch (op) {
	case UART_START_TX:
		if (!tx_on) {
			tx_on = 1;
			write_ier();
		}
		return 0;
	case UART_RESUME_RX:
		if (rx_paused) {
			rx_paused = 0;
			write_ier();
		}
		return 0;
	case UART_ENABLE:
		write_ier();
		return 0;
	}
	return (u64)-1;
}

/*
 * uart_enable_irq turns on the receive interrupt. Call it after the IOAPIC
 * pin is routed and unmasked: the pin is edge-triggered, and a rising edge
 * while it was masked would be lost with the line left high.
 */
void uart_enable_irq(void)
{
	sys_uart(UART_ENABLE);
}

/* uart_isr runs in ring 0 on the BSP with interrupts off. */
void uart_isr(void)
{
	/*
	 * The IOAPIC pin is edge-triggered: return only once IIR shows nothing
	 * pending, or the line stays high and no further interrupt arrives.
	 * The bound covers a full TX ring at one byte per round.
	 */
	for (int round = 0; round < 2 * TX_SIZE; round++) {
		u8 iir = kinb(COM1 + IIR);
		if (iir & 1)
			return;	/* nothing pending */
		switch (iir & 0x0e) {
		case 0x04:	/* received data */
		case 0x0c:	/* character timeout */
			for (int i = 0; i < 64 && (kinb(COM1 + LSR) & LSR_DR); i++) {
				if (rx_head - rx_tail >= RX_SIZE) {
					rx_paused = 1;
					write_ier();
					break;
				}
				rx_buf[rx_head % RX_SIZE] = (char)kinb(COM1 + RBR);
				rx_head = rx_head + 1;
				idle_wake = idle_wake + 1;
			}
			break;
		case 0x02: {	/* THR empty */
			u32 n = 0;
			while (n < tx_burst && tx_tail != tx_head) {
				koutb(COM1 + THR, (u8)tx_buf[tx_tail % TX_SIZE]);
				tx_tail = tx_tail + 1;
				n++;
			}
			if (n == 0) {
				tx_on = 0;
				write_ier();
			}
			break;
		}
		case 0x06:
			(void)kinb(COM1 + LSR);
			break;
		default:
			(void)kinb(COM1 + MSR);
			break;
		}
	}
}

static void tx_kick(void)
{
	barrier();
	if (!tx_on)
		sys_uart(UART_START_TX);
}

void uart_write(const char *s, usize n)
{
	for (usize i = 0; i < n; i++) {
		u64 tail;
		while (tx_head - (tail = tx_tail) >= TX_SIZE) {
			tx_kick();
			sys_wait(&tx_tail, tail);
		}
		tx_buf[tx_head % TX_SIZE] = s[i];
		tx_head = tx_head + 1;
	}
	tx_kick();
}

void uart_flush(void)
{
	u64 tail;
	while ((tail = tx_tail) != tx_head)
		sys_wait(&tx_tail, tail);
	/* Let the last FIFO load go out (tx_on drops on the next THRE). */
	while (tx_on)
		sys_wait(&tx_on, 1);
}

/*
 * uart_getc waits for a byte and meanwhile serves the net devices: it
 * sleeps on idle_wake, which serial input and net interrupts bump, and
 * runs net_poll on every wake. idle_wake is read before the checks, so an
 * interrupt after them makes sys_wait return at once. After net activity
 * it polls for a bounded while before sleeping (a ping often follows a
 * ping). With a net device the IOAPIC cannot route, it wakes on every
 * timer tick instead (serial input then waits for the next tick too).
 */
int uart_getc(void)
{
	u32 spin = 0;
	while (rx_head == rx_tail) {
		const volatile u64 *word = net_tick_poll ? &ticks : &idle_wake;
		u64 w = *word;
		if (net_poll()) {
			spin = 20000;
			continue;
		}
		if (rx_head != rx_tail)
			break;
		if (spin) {
			spin--;
			cpu_relax();
			continue;
		}
		sys_wait(word, w);
	}
	char c = rx_buf[rx_tail % RX_SIZE];
	rx_tail = rx_tail + 1;
	if (rx_paused && rx_head - rx_tail <= RX_SIZE / 2)
		sys_uart(UART_RESUME_RX);
	return (u8)c;
}

void print(const char *f, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, f);
	int n = vfmt(buf, sizeof(buf), f, ap);
	va_end(ap);
	uart_write(buf, (usize)n);
}

/* printk_polled writes with interrupts off, polling LSR: panics only. */
void printk_polled(const char *s)
{
	for (; *s; s++) {
		for (int i = 0; i < 100000 && !(kinb(COM1 + LSR) & LSR_THRE); i++)
			;
		koutb(COM1 + THR, (u8)*s);
	}
}
