/*
 * header.S: the bzImage boot sector, Linux setup header and real-mode stub.
 *
 * Loaders use one of three entries (Documentation/arch/x86/boot.rst):
 *  - 64-bit: chsnap (and any loader honouring XLF_KERNEL_64) jumps to
 *    0x100200 in long mode with RSI = boot_params (head.S: startup_64).
 *  - 32-bit: a loader may jump to code32_start (0x100000) in flat protected
 *    mode with ESI = boot_params (head.S: startup_32).
 *  - 16-bit: QEMU's microvm firmware (qboot) copies the setup to 0x10000,
 *    the rest to 0x100000, the command line to 0x20000, and far-jumps to
 *    setup+0x200 in real mode (CS = seg+0x20, DS=ES=SS = seg). That lands
 *    on the jump below, which runs realmode_start: it builds a fresh
 *    boot_params at seg:0x1000 (the setup code itself overlaps the e820
 *    table area of the zero page), asks the BIOS for the e820 map
 *    (int 0x15, eax=0xe820; qboot implements it), switches to flat 32-bit
 *    protected mode and enters code32_start like a 32-bit loader would.
 */
#include "layout.h"

#define BP_NEW 0x1000		/* new boot_params, relative to the setup segment */

	.section .setup, "ax"
	.code16
	.globl _setup_start
_setup_start:
	/* Not a boot sector: booting from a disk just stops here. */
	cli
1:	hlt
	jmp 1b

	.org 0x1f1
hdr:
setup_sects:	.byte setup_sects_val
root_flags:	.word 0
syssize:	.long syssize_val
ram_size:	.word 0
vid_mode:	.word 0xffff		/* normal */
root_dev:	.word 0
boot_flag:	.word 0xaa55
	/* 0x200: real-mode entry */
	.byte 0xeb, realmode_start - 1f	/* short jmp over the header */
1:
	.ascii "HdrS"
version:	.word 0x020c
realmode_swtch:	.long 0
start_sys_seg:	.word 0x1000
kernel_version:	.word version_str - 0x200
type_of_loader:	.byte 0
loadflags:	.byte 0x01		/* LOADED_HIGH */
setup_move_size: .word 0
code32_start:	.long 0x100000
ramdisk_image:	.long 0
ramdisk_size:	.long 0
bootsect_kludge: .long 0
heap_end_ptr:	.word 0
ext_loader_ver:	.byte 0
ext_loader_type: .byte 0
cmd_line_ptr:	.long 0
initrd_addr_max: .long 0x7fffffff
kernel_alignment: .long 0x200000
relocatable_kernel: .byte 0
min_alignment:	.byte 21
xloadflags:	.word 0x0001		/* XLF_KERNEL_64: entry at 0x100200 */
cmdline_size:	.long 1023
hardware_subarch: .long 0
hardware_subarch_data: .quad 0
payload_offset:	.long 0
payload_length:	.long 0
setup_data:	.quad 0
pref_address:	.quad 0x100000
init_size:	.long init_size_val
handover_offset: .long 0
hdr_end:
	/*
	 * The jump at 0x200 must land right here: loaders take 0x202 plus its
	 * displacement byte as the end of the setup header.
	 */
realmode_start:
	cli
	cld
	/* Run with CS = DS so that label offsets are segment offsets. */
	pushw %ds
	pushw $1f
	lretw
1:	movw %ds, %ax
	movw %ax, %es
	/* Keep the loader's SS:SP (boot protocol: top of the setup heap). */

	/* boot_params at seg:BP_NEW: zero it and copy the setup header. */
	movw $BP_NEW, %di
	xorw %ax, %ax
	movw $2048, %cx
	rep stosw
	movw $hdr, %si
	movw $(BP_NEW + BP_HDR), %di
	movw $(hdr_end - hdr), %cx
	rep movsb

	/* e820 from the BIOS, at most E820_MAX entries. */
	xorl %ebx, %ebx
	movw $(BP_NEW + BP_E820_TABLE), %di
2:	movl $0xe820, %eax
	movl $0x534d4150, %edx		/* "SMAP" */
	movl $E820_ENTRY_SIZE, %ecx
	int $0x15
	jc 3f
	cmpl $0x534d4150, %eax
	jne 3f
	addw $E820_ENTRY_SIZE, %di
	incb (BP_NEW + BP_E820_ENTRIES)
	cmpb $E820_MAX, (BP_NEW + BP_E820_ENTRIES)
	jae 3f
	testl %ebx, %ebx
	jnz 2b
3:
	cli
	/* ebx = linear address of the setup segment. */
	xorl %ebx, %ebx
	movw %ds, %bx
	shll $4, %ebx
	/* Patch the GDT base and the far-jump target with linear addresses. */
	leal gdt(%ebx), %eax
	movl %eax, gdt_desc + 2
	leal pm32(%ebx), %eax
	movl %eax, pm_jump
	lgdtl gdt_desc
	movl %cr0, %eax
	orl $1, %eax
	movl %eax, %cr0
	ljmpl *pm_jump

	.code32
pm32:
	movl $0x18, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl %eax, %fs
	movl %eax, %gs
	leal BP_NEW(%ebx), %esi		/* boot_params */
	movl BP_CODE32_START(%esi), %eax
	xorl %ebx, %ebx
	xorl %ebp, %ebp
	xorl %edi, %edi
	jmp *%eax

	.balign 8
gdt:	/* boot protocol selectors: __BOOT_CS = 0x10, __BOOT_DS = 0x18 */
	.quad 0
	.quad 0
	.quad 0x00cf9a000000ffff	/* 0x10: code, flat 4 GiB */
	.quad 0x00cf92000000ffff	/* 0x18: data, flat 4 GiB */
gdt_desc:
	.word gdt_desc - gdt - 1
	.long 0				/* patched */
pm_jump:
	.long 0				/* patched */
	.word 0x10

version_str:
	.asciz "chsnap-guest"
