/*
 * qemu_fw.S: a minimal "BIOS" for checking vm/boot under QEMU TCG, where no
 * /dev/kvm exists. It puts the CPU into the state boot.Entry describes and
 * jumps to the kernel, as KVM_SET_SREGS/KVM_SET_REGS would:
 *   mode 0 (PVH):   32-bit protected mode, paging off, boot GDT at 0x500
 *                   loaded, CS 0x08, data 0x10, EBX = 0x6000, jump to entry.
 *   mode 1 (64-bit): long mode on the page tables at 0x9000, boot GDT at
 *                   0x500, CS 0x08, data 0x10, RSI = 0x7000, RSP = RBP =
 *                   0x8FF0, jump to entry.
 * Linked at 0xF0000 (the test puts it at offset 0x10000 of a 128 KiB BIOS
 * image, which QEMU maps at 0xE0000-0xFFFFF; the reset vector at 0xFFFF0
 * jumps here). The test patches mode and entry at fixed offsets 0x10, 0x14.
 * On a second entry (a guest jump to the reset vector, flagged in RAM at
 * 0x4F0) it runs the 16 bytes vm/boot wrote at 0xFFFF0, which the test
 * copies to 0xFFFE0, instead of booting again.
 */
	.code16
	.text
	.globl	start16
start16:
	jmp	real_start

	.org	0x10
mode:	.long	0
entry:	.long	0

	.org	0x20
fw_gdt:
	.quad	0
	.quad	0x00CF9B000000FFFF	/* 0x08: 32-bit flat code */
	.quad	0x00CF93000000FFFF	/* 0x10: flat data */
fw_gdt_end:

	.org	0x40
fw_gdtr:
	.word	fw_gdt_end - fw_gdt - 1
	.long	fw_gdt
	.org	0x48
boot_gdtr:
	.word	31
	.long	0x500

real_start:
	cli
	cld
	xorw	%ax, %ax
	movw	%ax, %ds
	cmpb	$0, 0x4F0
	jne	warm
	movb	$1, 0x4F0
	lgdtl	%cs:(fw_gdtr - start16)
	movl	%cr0, %eax
	orl	$1, %eax
	movl	%eax, %cr0
	ljmpl	$0x08, $start32

warm:
	ljmp	$0xF000, $0xFFE0

	.code32
start32:
	movw	$0x10, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	%ax, %fs
	movw	%ax, %gs
	cmpl	$0, mode
	jne	to64

	lgdt	boot_gdtr
	ljmp	$0x08, $pvh
pvh:
	movw	$0x10, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	%ax, %fs
	movw	%ax, %gs
	movl	$0x6000, %ebx
	movl	entry, %eax
	jmp	*%eax

to64:
	movl	%cr4, %eax
	orl	$0x20, %eax		/* PAE */
	movl	%eax, %cr4
	movl	$0x9000, %eax
	movl	%eax, %cr3
	movl	$0xC0000080, %ecx	/* EFER.LME */
	rdmsr
	orl	$0x100, %eax
	wrmsr
	movl	%cr0, %eax
	orl	$0x80000000, %eax	/* PG: long mode active */
	movl	%eax, %cr0
	lgdt	boot_gdtr
	ljmp	$0x08, $start64

	.code64
start64:
	movw	$0x10, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	%ax, %fs
	movw	%ax, %gs
	movl	$0x7000, %esi
	movl	$0x8FF0, %esp
	movl	%esp, %ebp
	movl	entry, %eax
	jmp	*%rax
