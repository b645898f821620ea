/*
 * layout.h: constants shared by the assembly and C parts of the guest.
 * Safe to include from .S files.
 */
#ifndef GUEST_LAYOUT_H
#define GUEST_LAYOUT_H

#define MAX_CPUS	64
#define KSTACK_SIZE	8192	/* per-CPU ring-0 stack */
#define USTACK_SIZE	16384	/* per-CPU ring-3 stack */
#define BOOT_STACK_SIZE	4096	/* 32-bit entry path only */

/* Page tables: the low 4 GiB always, more if e820 shows RAM above it. */
#define MAX_PD_PAGES	16	/* one PD page maps 1 GiB */

/* GDT selectors. */
#define SEL_KCODE	0x08
#define SEL_KDATA	0x10
#define SEL_UCODE32	0x18
#define SEL_UDATA	0x20
#define SEL_UCODE	0x28
#define SEL_TSS0	0x30	/* CPU i's TSS at SEL_TSS0 + 16*i */
#define GDT_FIXED	6	/* descriptors before the TSS slots */

/* Interrupt vectors. */
#define VEC_UD		6	/* ud2 from ring 3 = system call */
#define VEC_TIMER	0x40
#define VEC_UART	0x41
#define VEC_NET		0x42	/* virtio-net device k's GSI: VEC_NET + k */
#define NET_MAX_DEVS	4
#define VEC_SPURIOUS	0xff

/* Real-mode AP trampoline: SIPI vector 0x08 starts APs at 0x8000. */
#define TRAMP_BASE	0x8000
#define TRAMP_SIPI_VEC	(TRAMP_BASE >> 12)

/* Linux boot_params (zero page) offsets, Documentation/arch/x86/zero-page.rst. */
#define BP_ACPI_RSDP	0x070
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES	0x1e8
#define BP_HDR		0x1f1
#define BP_CODE32_START	0x214
#define BP_RAMDISK_IMAGE 0x218
#define BP_RAMDISK_SIZE	0x21c
#define BP_CMD_LINE_PTR	0x228
#define BP_E820_TABLE	0x2d0
#define E820_MAX	128
#define E820_ENTRY_SIZE	20

#endif
