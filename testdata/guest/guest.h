/*
 * guest.h: declarations shared by the guest's C files.
 *
 * Privilege split: kernel.c is ring 0 (entry, traps, system calls, UART
 * interrupt). Everything else runs in ring 3, which kvm_pvm runs at native
 * speed: boot_params and ACPI parsing, LAPIC/IOAPIC programming (MMIO works
 * from ring 3), AP start-up, the shell and the memory test. Ring 3 reaches
 * ring 0 only through sys_*() (a ud2, see syscall.h). All memory is mapped
 * user-accessible, so ring 3 reads the kernel's counters and rings directly.
 */
#ifndef GUEST_H
#define GUEST_H

#include <stdarg.h>
#include "layout.h"

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef long i64;
typedef unsigned long usize;

#define NULL ((void *)0)
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define READ_ONCE(x) (*(volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile __typeof__(x) *)&(x) = (v))
#define barrier() __asm__ __volatile__("" ::: "memory")

static inline void mmio_write32(u64 addr, u32 v) { *(volatile u32 *)addr = v; }
static inline u32 mmio_read32(u64 addr) { return *(volatile u32 *)addr; }
static inline void cpu_relax(void) { __asm__ __volatile__("pause" ::: "memory"); }

/* ---- lib.c: freestanding helpers (both rings) ---- */
void *memset(void *d, int c, usize n);
void *memcpy(void *d, const void *s, usize n);
void *memmove(void *d, const void *s, usize n);
int memcmp(const void *a, const void *b, usize n);
usize strlen(const char *s);
int strcmp(const char *a, const char *b);
int vfmt(char *buf, usize size, const char *f, va_list ap);
int fmt(char *buf, usize size, const char *f, ...);
int parse_u64(const char *s, u64 *out);

/* ---- kernel.c (ring 0) ---- */
struct trap_frame {
	u64 r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
	u64 vector, error;
	u64 rip, cs, rflags, rsp, ss;
};
extern volatile u64 ticks;	/* LAPIC timer ticks on the BSP */
extern u64 lapic_base;		/* xAPIC MMIO base, from the MADT */
extern u32 ap_next_slot;	/* next free CPU slot; APs claim it in head.S */
extern u8 *boot_params;		/* as handed over by the loader */
extern u64 mapped_top;		/* end of the identity map */
extern volatile u64 idle_wake;	/* bumped by serial input and net interrupts */

/* ---- uart.c ---- */
void uart_init(void);			/* ring 3 */
void uart_enable_irq(void);		/* ring 3, after the IOAPIC route */
void uart_isr(void);			/* ring 0 */
u64 uart_ctl(u64 op);			/* ring 0, SYS_UART */
void uart_write(const char *s, usize n);	/* ring 3 */
int uart_getc(void);			/* ring 3, blocks */
void uart_flush(void);			/* ring 3, waits until TX drained */
void printk_polled(const char *s);	/* ring 0, panic path only */
void print(const char *f, ...);		/* ring 3 */

/* ---- boot.c (ring 3) ---- */
struct e820_entry {
	u64 addr;
	u64 size;
	u32 type;
} __attribute__((packed));
struct mem_range {
	u64 start, end;
};
#define MAX_FREE_RANGES 32
struct bootinfo {
	char cmdline[1024];
	u32 ne820;
	struct e820_entry e820[E820_MAX];
	u64 rsdp;
	u64 initrd_start, initrd_end;
	u32 nfree;
	struct mem_range free[MAX_FREE_RANGES];	/* fill/verify RAM */
	u64 ram_bytes;
	u64 free_bytes;
};
extern struct bootinfo bootinfo;
void bootinfo_parse(const u8 *bp);

/* ---- acpi.c (ring 3) ---- */
struct gas {	/* ACPI Generic Address Structure */
	u8 space;	/* 0 = system memory, 1 = system I/O */
	u8 bit_width, bit_offset, access_size;
	u64 addr;
};
#define MAX_IOAPICS 4
struct acpi_info {
	int found;
	char oem_id[7];		/* RSDP OEMID, trailing spaces dropped */
	u32 ncpus;
	u8 apic_ids[MAX_CPUS];
	u32 nioapics;
	struct { u64 addr; u32 gsi_base; } ioapic[MAX_IOAPICS];
	u32 uart_gsi;
	u16 uart_flags;		/* MPS INTI flags of the ISA IRQ 4 override */
	u32 fadt_flags;
	struct gas reset_reg;
	u8 reset_value;
	struct gas sleep_ctl;
};
extern struct acpi_info acpi;
void acpi_parse(u64 rsdp_hint);

/* ---- apic.c (ring 3) ---- */
void lapic_enable(void);
u32 lapic_id(void);
int lapic_ipi(u32 apic_id, u32 icr_low);
int ioapic_route(u32 gsi, u8 vector, u32 dest, u16 mps_flags);

/* ---- timer.c (ring 3) ---- */
#define TIMER_HZ 100
extern u64 timer_bus_hz;
void timer_start(u32 hz);

/* ---- smp.c (ring 3) ---- */
extern volatile u32 cpus_online;
void smp_boot(void);
void ap_user_main(u64 cpu);

/* ---- power.c (ring 3) ---- */
void poweroff(void);
void reboot(void);

/* ---- memtest.c (ring 3) ---- */
enum { FILL_NONE, FILL_WORDS, FILL_MIX };
extern int fill_kind;		/* which fill verify checks: the last one run */
int mem_fill(u64 mib, u64 seed, char *reply, usize n);
void mem_verify(char *reply, usize n);

/* ---- fillmix.c (ring 3) ---- */
int cmd_fillmix(int argc, char **argv, char *reply, usize n);
void mem_fillmix_verify(char *reply, usize n);

/* ---- virtio_net.c, net.c (see virtio_net.h) ---- */
void net_init(void);			/* ring 3, at boot */
int net_poll(void);			/* ring 3: work done, 0 when idle */
void net_recheck(void);			/* ring 3: next net_poll reads InterruptStatus */
extern volatile u64 net_irq_count[NET_MAX_DEVS];	/* bumped by isr.S's net stubs */
extern int net_tick_poll;		/* a device without an IOAPIC route: poll per tick */

/* ---- shell.c (ring 3) ---- */
void shell_run(void);

/* ---- main.c (ring 3) ---- */
void bsp_user_main(u64 unused);

#endif
