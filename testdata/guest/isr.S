/*
 * isr.S: interrupt and exception entry stubs.
 *
 * Exceptions and the UART interrupt go through trap_common, which saves the
 * registers as a struct trap_frame and calls trap() in kernel.c. The timer
 * and spurious vectors, and the virtio-net ones, have tiny stubs of their
 * own because they fire often and ring-0 instructions are expensive under
 * kvm_pvm.
 */
#include "layout.h"

	.text

/* Exceptions without an error code push a zero so the frame is uniform. */
.macro STUB vec, has_error
	.globl isr_\vec
isr_\vec:
	.if \has_error == 0
	pushq $0
	.endif
	pushq $\vec
	jmp trap_common
.endm

STUB 0, 0
STUB 1, 0
STUB 2, 0
STUB 3, 0
STUB 4, 0
STUB 5, 0
STUB 6, 0
STUB 7, 0
STUB 8, 1
STUB 9, 0
STUB 10, 1
STUB 11, 1
STUB 12, 1
STUB 13, 1
STUB 14, 1
STUB 15, 0
STUB 16, 0
STUB 17, 1
STUB 18, 0
STUB 19, 0
STUB 20, 0
STUB 21, 1
STUB 22, 0
STUB 23, 0
STUB 24, 0
STUB 25, 0
STUB 26, 0
STUB 27, 0
STUB 28, 0
STUB 29, 1
STUB 30, 1
STUB 31, 0
STUB 0x41, 0

	.section .rodata
	.balign 8
	.globl isr_exception_table
isr_exception_table:
	.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.quad isr_\n
	.endr

	.text
trap_common:
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, %rdi
	call trap
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rbp
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rbx
	popq %rax
	addq $16, %rsp			/* vector, error code */
	iretq

	/* LAPIC timer: count a tick and EOI. Only the BSP runs the timer. */
	.globl isr_timer
isr_timer:
	incq ticks(%rip)
	pushq %rax
	movq lapic_base(%rip), %rax
	movl $0, 0xb0(%rax)		/* EOI */
	popq %rax
	iretq

	/*
	 * virtio-net device k (vector VEC_NET + k): count the interrupt for
	 * ring 3, which reads and acknowledges InterruptStatus itself (the pin
	 * is edge-triggered), wake the idle wait, EOI. Only the BSP takes them.
	 */
.macro NETSTUB k
	.globl isr_net\k
isr_net\k:
	incq net_irq_count+8*\k(%rip)
	incq idle_wake(%rip)
	pushq %rax
	movq lapic_base(%rip), %rax
	movl $0, 0xb0(%rax)		/* EOI */
	popq %rax
	iretq
.endm
NETSTUB 0
NETSTUB 1
NETSTUB 2
NETSTUB 3
#if NET_MAX_DEVS != 4
#error "one NETSTUB per net device"
#endif

	/* Spurious interrupts take no EOI. */
	.globl isr_spurious
isr_spurious:
	iretq
