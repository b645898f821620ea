/*
 * kernel.c: everything that runs in ring 0.
 *
 * kvm_pvm emulates guest ring-0 code at ~1M instructions/s, so ring 0 only
 * does what ring 3 cannot: page tables, descriptor tables, entering ring 3,
 * trap and interrupt handling, port I/O and sleeping (sti; hlt). The BSP's
 * kmain and each AP's ap_main hand over to ring 3 as soon as they can.
 */
#include "guest.h"
#include "syscall.h"

struct tss {
	u32 reserved0;
	u64 rsp0, rsp1, rsp2;
	u64 reserved1;
	u64 ist[7];
	u64 reserved2;
	u16 reserved3;
	u16 iomap_base;
} __attribute__((packed));

struct idt_entry {
	u16 off_lo;
	u16 sel;
	u8 ist;
	u8 type;
	u16 off_mid;
	u32 off_hi;
	u32 zero;
} __attribute__((packed));

extern u64 gdt[];
extern u64 pml4[], pdpt[], pd[];
extern u8 kstacks[], ustacks[];
extern u64 isr_exception_table[];
extern void isr_timer(void), isr_spurious(void), isr_0x41(void);
extern void isr_net0(void), isr_net1(void), isr_net2(void), isr_net3(void);
extern void enter_user(void (*fn)(u64), u64 stack_top, u64 arg) __attribute__((noreturn));

volatile u64 ticks;
volatile u64 idle_wake;
u64 lapic_base = 0xfee00000;
u32 ap_next_slot = 1;
u8 *boot_params;
u64 mapped_top;

static struct tss tss[MAX_CPUS];
static struct idt_entry idt[256] __attribute__((aligned(16)));
static struct {
	u16 pad[3];
	u16 limit;
	u64 base;
} __attribute__((packed, aligned(8))) idt_desc;

static inline void outb(u16 port, u8 v) { __asm__ __volatile__("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ __volatile__("outw %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ __volatile__("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ __volatile__("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u16 inw(u16 port) { u16 v; __asm__ __volatile__("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 inl(u16 port) { u32 v; __asm__ __volatile__("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

/* Ring-0 port accessors for uart.c's interrupt handler. */
u8 kinb(u16 port) { return inb(port); }
void koutb(u16 port, u8 v) { outb(port, v); }

static void halt_forever(void)
{
	for (;;)
		__asm__ __volatile__("cli; hlt");
}

/*
 * paging_init maps [0, 4 GiB) and any RAM above it (up to MAX_PD_PAGES GiB)
 * with 2 MiB pages, all user-accessible and writable, identity. The top
 * 32 MiB below 4 GiB (LAPIC, IOAPIC, other MMIO) is uncached.
 */
static void paging_init(const u8 *bp)
{
	u64 top = 4ul << 30;
	u32 n = bp[BP_E820_ENTRIES];
	if (n > E820_MAX)
		n = E820_MAX;
	const struct e820_entry *e = (const void *)(bp + BP_E820_TABLE);
	for (u32 i = 0; i < n; i++) {
		u64 end = e[i].addr + e[i].size;
		if (e[i].type == 1 && end > top && end > e[i].addr)
			top = end;
	}
	u64 npd = (top + (1ul << 30) - 1) >> 30;
	if (npd > MAX_PD_PAGES)
		npd = MAX_PD_PAGES;
	/*
	 * Every ring-0 instruction costs ~1 us under kvm_pvm and this is the
	 * biggest loop in ring 0: keep it tight (string stores, an unrolled
	 * fill, the uncached entries patched afterwards).
	 */
	/*
	 * After the 32-bit entry these tables are live, mapping the first GiB
	 * through pml4[0], pdpt[0] and pd[0..511]: rewrite those with the
	 * same values, never clear them.
	 */
	pml4[0] = (u64)pdpt | 7;
	for (u32 i = 0; i < npd; i++)
		pdpt[i] = ((u64)pd + i * 4096) | 7;
	/* pml4[1..511] and pdpt[npd..511], adjacent pages: clear. */
	u64 *dst = pml4 + 1, cnt = 511;
	__asm__ __volatile__("rep stosq" : "+D"(dst), "+c"(cnt) : "a"(0ul) : "memory");
	dst = pdpt + npd;
	cnt = 512 - npd;
	__asm__ __volatile__("rep stosq" : "+D"(dst), "+c"(cnt) : "a"(0ul) : "memory");
	u64 nent = npd * 512, v = 0x87;	/* P | RW | US | PS */
#pragma GCC unroll 8
	for (u64 j = 0; j < nent; j++, v += 1ul << 21)
		pd[j] = v;
	for (u64 j = 0xfe000000ul >> 21; j < (4ul << 30) >> 21; j++)
		pd[j] |= 0x18;	/* PWT | PCD: LAPIC, IOAPIC and other MMIO */
	mapped_top = npd << 30;
	__asm__ __volatile__("mov %0, %%cr3" ::"r"((u64)pml4) : "memory");
}

static void set_gate(u32 vec, u64 handler)
{
	struct idt_entry *g = &idt[vec];
	g->off_lo = (u16)handler;
	g->sel = SEL_KCODE;
	g->ist = 0;
	g->type = 0x8e;	/* present, DPL 0, 64-bit interrupt gate (IF cleared) */
	g->off_mid = (u16)(handler >> 16);
	g->off_hi = (u32)(handler >> 32);
	g->zero = 0;
}

static void idt_init(void)
{
	for (u32 v = 0; v < 32; v++)
		set_gate(v, isr_exception_table[v]);
	set_gate(VEC_TIMER, (u64)isr_timer);
	set_gate(VEC_UART, (u64)isr_0x41);
	set_gate(VEC_NET + 0, (u64)isr_net0);
	set_gate(VEC_NET + 1, (u64)isr_net1);
	set_gate(VEC_NET + 2, (u64)isr_net2);
	set_gate(VEC_NET + 3, (u64)isr_net3);
	set_gate(VEC_SPURIOUS, (u64)isr_spurious);
	idt_desc.limit = sizeof(idt) - 1;
	idt_desc.base = (u64)idt;
}

/* cpu_init loads the IDT and this CPU's TSS (for its ring-0 stack). */
static void cpu_init(u32 cpu)
{
	struct tss *t = &tss[cpu];
	u64 base = (u64)t;
	t->rsp0 = (u64)kstacks + (cpu + 1) * (u64)KSTACK_SIZE;
	t->iomap_base = sizeof(*t);	/* no I/O bitmap: ring 3 has no ports */
	u32 slot = GDT_FIXED + 2 * cpu;
	gdt[slot] = (sizeof(*t) - 1) | ((base & 0xffffff) << 16) | (0x89ul << 40) |
		    (((base >> 24) & 0xff) << 56);
	gdt[slot + 1] = base >> 32;
	__asm__ __volatile__("lidt %0" ::"m"(idt_desc.limit) : "memory");
	__asm__ __volatile__("ltr %w0" ::"r"((u16)(SEL_TSS0 + 16 * cpu)));
}

/* user_stack_top is where ring 3 starts: as if just called (RSP = 8 mod 16). */
static u64 user_stack_top(u32 cpu)
{
	return (u64)ustacks + (cpu + 1) * (u64)USTACK_SIZE - 8;
}

static u64 rdmsr(u32 msr)
{
	u32 lo, hi;
	__asm__ __volatile__("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return lo | (u64)hi << 32;
}

static void wrmsr(u32 msr, u64 v)
{
	__asm__ __volatile__("wrmsr" ::"c"(msr), "a"((u32)v), "d"((u32)(v >> 32)));
}

/*
 * xapic_mode makes sure the LAPIC is enabled in xAPIC (MMIO) mode, whatever
 * state the loader left in IA32_APIC_BASE: leaving x2APIC mode requires
 * disabling the APIC first (SDM 11.12.5).
 */
static void xapic_mode(void)
{
	const u64 en = 1ul << 11, extd = 1ul << 10;
	u64 v = rdmsr(0x1b);
	if ((v & (en | extd)) == en)
		return;
	if (v & extd)
		wrmsr(0x1b, v & ~(en | extd));
	wrmsr(0x1b, (v & ~extd) | en);
}

void kmain(u8 *bp)
{
	boot_params = bp;
	xapic_mode();
	paging_init(bp);
	idt_init();
	cpu_init(0);
	enter_user(bsp_user_main, user_stack_top(0), 0);
}

void ap_main(u32 cpu)
{
	cpu_init(cpu);
	enter_user(ap_user_main, user_stack_top(cpu), cpu);
}

static u64 sys_dispatch(struct trap_frame *f)
{
	switch (f->rax) {
	case SYS_WAIT: {
		u64 addr = f->rdi;
		if ((addr & 7) || addr + 8 > mapped_top)
			return (u64)-1;
		/*
		 * IF is clear here (interrupt gate), so each check and the sleep
		 * after it are atomic (sti takes effect after hlt). Looping here
		 * rather than in ring 3 keeps a timer tick that changes nothing
		 * down to a dozen ring-0 instructions.
		 */
		while (*(volatile u64 *)addr == f->rsi)
			__asm__ __volatile__("sti; hlt; cli" ::: "memory");
		return 0;
	}
	case SYS_IN:
		switch (f->rsi) {
		case 1: return inb((u16)f->rdi);
		case 2: return inw((u16)f->rdi);
		case 4: return inl((u16)f->rdi);
		}
		return (u64)-1;
	case SYS_OUT:
		switch (f->rdx) {
		case 1: outb((u16)f->rdi, (u8)f->rsi); return 0;
		case 2: outw((u16)f->rdi, (u16)f->rsi); return 0;
		case 4: outl((u16)f->rdi, (u32)f->rsi); return 0;
		}
		return (u64)-1;
	case SYS_UART:
		return uart_ctl(f->rdi);
	case SYS_CPUID: {
		u64 out = f->rdx;
		u32 a, b, c, d;
		if ((out & 3) || out + 16 > mapped_top)
			return (u64)-1;
		__asm__ __volatile__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"((u32)f->rdi), "c"((u32)f->rsi));
		u32 *o = (u32 *)out;
		o[0] = a;
		o[1] = b;
		o[2] = c;
		o[3] = d;
		return 0;
	}
	}
	return (u64)-1;
}

static void panic_frame(struct trap_frame *f)
{
	char buf[160];
	u64 cr2;
	__asm__ __volatile__("mov %%cr2, %0" : "=r"(cr2));
	fmt(buf, sizeof(buf), "\r\nchsnap-guest panic: vector %u error %x rip %x cs %x rsp %x cr2 %x\r\n",
	    f->vector, f->error, f->rip, f->cs, f->rsp, cr2);
	printk_polled(buf);
	halt_forever();
}

void trap(struct trap_frame *f)
{
	if (f->vector == VEC_UART) {
		uart_isr();
		mmio_write32(lapic_base + 0xb0, 0);	/* EOI */
		return;
	}
	if (f->vector == VEC_UD && (f->cs & 3) == 3) {
		f->rax = sys_dispatch(f);
		f->rip += 2;	/* skip the ud2 */
		return;
	}
	panic_frame(f);
}
