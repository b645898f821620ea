/*
 * head.S: the protected-mode entries at 0x100000 (32-bit) and 0x100200
 * (64-bit), the AP long-mode entry, the GDT, and the ring-3 entry.
 *
 * Everything here runs in ring 0, which kvm_pvm emulates at ~1M
 * instructions/s: keep it short.
 */
#include "layout.h"

	.section .head32, "ax"
	.code32
	.globl startup_32
startup_32:
	/*
	 * 32-bit boot protocol: flat CS/DS, paging off, ESI = boot_params.
	 * Map the first 1 GiB (enough for the image, boot_params and the
	 * command line) with 2 MiB pages, enable long mode and join the
	 * 64-bit entry, which builds the real page tables in C.
	 */
	cli
	cld
	movl $pml4, %edi
	xorl %eax, %eax
	movl $2048, %ecx		/* pml4 and pdpt: 2 pages of dwords */
	rep stosl
	movl $(pdpt + 7), pml4
	movl $(pd + 7), pdpt
	movl $pd, %edi
	movl $0x87, %eax		/* P | RW | US | PS */
	movl $512, %ecx
1:	movl %eax, (%edi)
	movl $0, 4(%edi)
	addl $0x200000, %eax
	addl $8, %edi
	loop 1b
	movl %cr4, %eax
	orl $0x20, %eax			/* PAE */
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $0xc0000080, %ecx		/* EFER */
	rdmsr
	orl $0x100, %eax		/* LME */
	wrmsr
	movl %cr0, %eax
	orl $0x80000001, %eax		/* PG | PE */
	movl %eax, %cr0
	lgdt gdt_desc
	ljmp $SEL_KCODE, $from32

	.code64
from32:
	movl %esi, %esi			/* upper halves are undefined after the switch */
	jmp startup_64

	.section .head64, "ax"
	.code64
	.globl startup_64
startup_64:
	/*
	 * 64-bit boot protocol: long mode, an identity map of low memory,
	 * RSI = boot_params. Load our GDT and stack, zero .bss, call kmain.
	 */
	cli
	cld
	movq %rsi, %r12
	/* All pages are user pages, so ring 0 must not run with SMEP or SMAP. */
	movq %cr4, %rax
	andq $~(3 << 20), %rax
	movq %rax, %cr4
	lgdt gdt_desc(%rip)
	movl $SEL_KDATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	xorl %eax, %eax
	movl %eax, %fs
	movl %eax, %gs
	leaq kstacks + KSTACK_SIZE(%rip), %rsp
	pushq $SEL_KCODE
	leaq 1f(%rip), %rax
	pushq %rax
	lretq
1:	leaq _bss_start(%rip), %rdi
	leaq _bss_end(%rip), %rcx
	subq %rdi, %rcx
	shrq $3, %rcx
	xorl %eax, %eax
	rep stosq
	movq %r12, %rdi
	call kmain
2:	cli
	hlt
	jmp 2b

	.text
	.globl ap_entry64
ap_entry64:
	/*
	 * APs arrive here from the trampoline in long mode on our page
	 * tables. Each claims the next CPU slot (its stacks and TSS), so even
	 * an AP that starts late, after the BSP gave up on it, gets its own.
	 */
	lgdt gdt_desc(%rip)
	movl $SEL_KDATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	xorl %eax, %eax
	movl %eax, %fs
	movl %eax, %gs
	movl $1, %edi
	lock xaddl %edi, ap_next_slot(%rip)
	cmpl $MAX_CPUS, %edi
	jae 2f
	movl %edi, %eax
	incl %eax
	imull $KSTACK_SIZE, %eax
	leaq kstacks(%rip), %rsp
	addq %rax, %rsp
	pushq $SEL_KCODE
	leaq 1f(%rip), %rax
	pushq %rax
	lretq
1:	call ap_main
2:	cli
	hlt
	jmp 2b

	/* enter_user(rdi = entry, rsi = stack top, rdx = argument): iretq to ring 3 with IF=1. */
	.globl enter_user
enter_user:
	pushq $(SEL_UDATA | 3)
	pushq %rsi
	pushq $0x202
	pushq $(SEL_UCODE | 3)
	pushq %rdi
	movq %rdx, %rdi
	xorl %eax, %eax
	xorl %esi, %esi
	xorl %edx, %edx
	iretq

	.data
	.balign 16
	.globl gdt
gdt:
	.quad 0
	.quad 0x00af9a000000ffff	/* 0x08 kernel code, 64-bit */
	.quad 0x00cf92000000ffff	/* 0x10 kernel data */
	.quad 0x00cffa000000ffff	/* 0x18 user code, 32-bit (unused) */
	.quad 0x00cff2000000ffff	/* 0x20 user data */
	.quad 0x00affa000000ffff	/* 0x28 user code, 64-bit */
	.fill 2 * MAX_CPUS, 8, 0	/* 0x30: one 16-byte TSS descriptor per CPU */
gdt_end:
	.balign 8
	.globl gdt_desc
	.word 0, 0, 0
gdt_desc:
	.word gdt_end - gdt - 1
	.quad gdt

	.section .pgtables, "aw", @nobits
	.balign 4096
	.globl pml4, pdpt, pd
pml4:	.skip 4096
pdpt:	.skip 4096
pd:	.skip 4096 * MAX_PD_PAGES

	.section .stacks, "aw", @nobits
	.balign 4096
	.globl kstacks, ustacks
kstacks: .skip KSTACK_SIZE * MAX_CPUS
ustacks: .skip USTACK_SIZE * MAX_CPUS
