/*
 * trampoline.S: the AP start-up code. The BSP copies tramp_start..tramp_end
 * to TRAMP_BASE (0x8000) and sends SIPI vector TRAMP_SIPI_VEC, so an AP
 * starts here in real mode with CS = 0x0800, IP = 0. It takes the
 * textbook route (SDM 10.8.5): protected mode, then PAE + LME + paging on
 * the kernel's page tables (whose address the BSP stores in tramp_cr3),
 * then a far jump to 64-bit code, which jumps to ap_entry64 in head.S.
 */
#include "layout.h"

#define REL(x) ((x) - tramp_start)
#define ABS(x) (TRAMP_BASE + (x) - tramp_start)

	.text
	.code16
	.globl tramp_start, tramp_end, tramp_cr3
tramp_start:
	cli
	cld
	movw %cs, %ax
	movw %ax, %ds
	lgdtl REL(tramp_gdt_desc)
	movl %cr0, %eax
	orl $1, %eax			/* PE */
	movl %eax, %cr0
	ljmpl $0x18, $ABS(tramp_32)

	.code32
tramp_32:
	movl $0x10, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl %cr4, %eax
	orl $0x20, %eax			/* PAE */
	movl %eax, %cr4
	movl ABS(tramp_cr3), %eax
	movl %eax, %cr3
	movl $0xc0000080, %ecx		/* EFER */
	rdmsr
	orl $0x100, %eax		/* LME */
	wrmsr
	movl %cr0, %eax
	orl $0x80000000, %eax		/* PG */
	movl %eax, %cr0
	ljmp $0x08, $ABS(tramp_long)

	.code64
tramp_long:
	movq ABS(tramp_target), %rax
	jmp *%rax

	.balign 8
tramp_gdt:
	.quad 0
	.quad 0x00af9a000000ffff	/* 0x08: 64-bit code */
	.quad 0x00cf92000000ffff	/* 0x10: data */
	.quad 0x00cf9a000000ffff	/* 0x18: 32-bit code */
tramp_gdt_desc:
	.word tramp_gdt_desc - tramp_gdt - 1
	.long ABS(tramp_gdt)
	.balign 8
tramp_target:
	.quad ap_entry64
tramp_cr3:
	.long 0
tramp_end:
