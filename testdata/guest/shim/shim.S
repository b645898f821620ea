/*
 * shim.S: a test-only loader that enters the guest exactly the way chsnap
 * does, so the 64-bit entry (0x100200) can be tested under QEMU without KVM.
 *
 * QEMU boots this ELF through its PVH note (32-bit protected mode, paging
 * off, EBX = struct hvm_start_info). The shim then recreates chsnap's entry
 * state (vm/boot/doc.go): boot_params at 0x7000 with the setup header and
 * the e820 map (from the PVH memory map), the command line at 0x20000, the
 * RSDP address, a GDT at 0x500 (0x08 64-bit code, 0x10 data), an identity
 * map of 0-4 GiB with 2 MiB pages at 0x9000-0xEFFF, the protected-mode part
 * copied to 0x100000, and jumps to 0x100200 in long mode with RSI = 0x7000,
 * RSP = 0x8FF0 and interrupts off.
 */
#define BP		0x7000
#define CMDLINE		0x20000
#define GDT		0x500
#define PML4		0x9000
#define PDPT		0xa000
#define PD		0xb000

	.section .note.Xen, "a", @note
	.balign 4
	.long 4				/* namesz */
	.long 4				/* descsz */
	.long 18			/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.long shim_entry
	.balign 4

	.text
	.code32
	.globl shim_entry
shim_entry:
	cli
	cld
	movl $stack_top, %esp
	movl %ebx, %ebp			/* hvm_start_info */

	/* boot_params: zeroed, then the setup header from the image. */
	movl $BP, %edi
	xorl %eax, %eax
	movl $1024, %ecx
	rep stosl
	movzbl image + 0x201, %ecx
	addl $(0x202 - 0x1f1), %ecx	/* header: 0x1f1 .. 0x202 + jump byte */
	movl $(image + 0x1f1), %esi
	movl $(BP + 0x1f1), %edi
	rep movsb

	/* Command line. */
	movl 24(%ebp), %esi		/* cmdline_paddr (low half) */
	movl $CMDLINE, %edi
	movl $4095, %ecx
	testl %esi, %esi
	jz 2f
1:	lodsb
	testb %al, %al
	jz 2f
	stosb
	loop 1b
2:	movb $0, (%edi)
	movl $CMDLINE, BP + 0x228	/* cmd_line_ptr */

	/* RSDP (PVH version >= 1 has rsdp_paddr; 0 makes the guest scan). */
	movl 32(%ebp), %eax
	movl %eax, BP + 0x70
	movl 36(%ebp), %eax
	movl %eax, BP + 0x74

	/* e820: 24-byte PVH entries to 20-byte boot_params ones, at most 128. */
	movl 40(%ebp), %esi		/* memmap_paddr */
	movl 48(%ebp), %ecx		/* memmap_entries */
	cmpl $128, %ecx
	jbe 3f
	movl $128, %ecx
3:	movb %cl, BP + 0x1e8
	movl $(BP + 0x2d0), %edi
	testl %ecx, %ecx
	jz 5f
4:	movl 0(%esi), %eax
	movl %eax, 0(%edi)
	movl 4(%esi), %eax
	movl %eax, 4(%edi)
	movl 8(%esi), %eax
	movl %eax, 8(%edi)
	movl 12(%esi), %eax
	movl %eax, 12(%edi)
	movl 16(%esi), %eax
	movl %eax, 16(%edi)
	addl $24, %esi
	addl $20, %edi
	loop 4b
5:
	/* The protected-mode part to 0x100000. */
	movzbl image + 0x1f1, %eax
	testl %eax, %eax
	jnz 6f
	movl $4, %eax
6:	incl %eax
	shll $9, %eax			/* (setup_sects + 1) * 512 */
	leal image(%eax), %esi
	movl $image_end, %ecx
	subl %esi, %ecx
	movl $0x100000, %edi
	rep movsb

	/* GDT at 0x500. */
	movl $0, GDT
	movl $0, GDT + 4
	movl $0x0000ffff, GDT + 8
	movl $0x00af9b00, GDT + 12
	movl $0x0000ffff, GDT + 16
	movl $0x00cf9300, GDT + 20
	movw $23, gdt_desc
	movl $GDT, gdt_desc + 2

	/* Identity map of 0-4 GiB, chsnap's layout. */
	movl $PML4, %edi
	xorl %eax, %eax
	movl $2048, %ecx
	rep stosl
	movl $(PDPT + 3), PML4
	movl $(PD + 0x0003), PDPT
	movl $(PD + 0x1003), PDPT + 8
	movl $(PD + 0x2003), PDPT + 16
	movl $(PD + 0x3003), PDPT + 24
	movl $PD, %edi
	movl $0x83, %eax		/* P | RW | PS */
	movl $2048, %ecx
7:	movl %eax, (%edi)
	movl $0, 4(%edi)
	addl $0x200000, %eax
	addl $8, %edi
	loop 7b

	movl %cr4, %eax
	orl $0x20, %eax
	movl %eax, %cr4
	movl $PML4, %eax
	movl %eax, %cr3
	movl $0xc0000080, %ecx
	rdmsr
	orl $0x100, %eax
	wrmsr
	movl %cr0, %eax
	orl $0x80000001, %eax
	movl %eax, %cr0
	lgdt gdt_desc
	ljmp $0x08, $long64

	.code64
long64:
	movl $0x10, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl %eax, %fs
	movl %eax, %gs
	movq $0x8ff0, %rsp
	movq %rsp, %rbp
	movq $BP, %rsi
	xorl %eax, %eax
	xorl %ebx, %ebx
	xorl %ecx, %ecx
	xorl %edx, %edx
	xorl %edi, %edi
	movq $0x100200, %rax
	jmp *%rax

	.data
	.balign 8
gdt_desc:
	.word 0
	.long 0
	.balign 16
image:
	.incbin GUEST_IMAGE
image_end:

	.bss
	.balign 16
	.skip 4096
stack_top:
