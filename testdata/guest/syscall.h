/*
 * syscall.h: ring 3 → ring 0 calls.
 *
 * kvm_pvm forbids SYSCALL/SYSENTER and turns INT n from ring 3 into #UD, so
 * a system call is a ud2: the #UD handler (kernel.c) takes the number in
 * RAX and arguments in RDI, RSI, RDX, returns the result in RAX and resumes
 * after the ud2. Every other register is preserved.
 */
#ifndef GUEST_SYSCALL_H
#define GUEST_SYSCALL_H

#include "guest.h"

enum {
	SYS_WAIT,	/* (addr, val): sleep while *(u64 *)addr == val, rechecked after each interrupt on this CPU */
	SYS_IN,		/* (port, width) → value; width 1, 2 or 4 */
	SYS_OUT,	/* (port, value, width) */
	SYS_CPUID,	/* (leaf, subleaf, u32 out[4]): eax, ebx, ecx, edx */
	SYS_UART,	/* (op): UART_* below, see uart.c */
	SYS_MAX
};

enum { UART_ENABLE, UART_START_TX, UART_RESUME_RX };

static inline u64 syscall3(u64 nr, u64 a, u64 b, u64 c)
{
	u64 ret;
	__asm__ __volatile__("ud2"
			     : "=a"(ret)
			     : "a"(nr), "D"(a), "S"(b), "d"(c)
			     : "memory");
	return ret;
}

/*
 * sys_wait sleeps until *addr differs from val. The word is rechecked only
 * when this CPU takes an interrupt, so it must be changed by an interrupt
 * handler on this CPU (or be followed by one, such as an IPI).
 */
static inline void sys_wait(const volatile void *addr, u64 val) { syscall3(SYS_WAIT, (u64)addr, val, 0); }
static inline u8 sys_inb(u16 port) { return (u8)syscall3(SYS_IN, port, 1, 0); }
static inline void sys_outb(u16 port, u8 v) { syscall3(SYS_OUT, port, v, 1); }
static inline u64 sys_in(u16 port, u64 width) { return syscall3(SYS_IN, port, width, 0); }
static inline void sys_out(u16 port, u64 v, u64 width) { syscall3(SYS_OUT, port, v, width); }
/*
 * sys_cpuid runs CPUID in ring 0. On kvm_pvm a ring-3 CPUID may execute
 * natively on the host CPU; in ring 0 it is the VMM's CPUID table.
 */
static inline void sys_cpuid(u32 leaf, u32 sub, u32 out[4]) { syscall3(SYS_CPUID, leaf, sub, (u64)out); }
static inline void sys_uart(u64 op) { syscall3(SYS_UART, op, 0, 0); }

#endif
