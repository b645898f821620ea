// Package boot prepares guest memory and the initial vCPU state for booting a
// Linux kernel (or the chsnap test guest) on x86-64.
//
// It parses a bzImage (Linux x86 boot protocol, Documentation/arch/x86/boot.rst,
// entered through the 64-bit entry point at load address + 0x200) or an
// uncompressed vmlinux ELF (entered through its PVH note, Xen's pvh.pandoc),
// writes the kernel, command line, initrd, boot_params ("zero page",
// Documentation/arch/x86/zero-page.rst) or hvm_start_info, a boot GDT, an
// empty IDT and identity page tables, and returns the registers to load.
// Everything here is a pure function over guest memory: it issues no KVM
// ioctls and knows nothing of devices; the vm package applies the returned
// state. ACPI tables are built by the sibling package vm/acpi and copied in by
// the caller; Setup only records the RSDP address it is given.
//
// Guest-physical memory map written by Setup (all below 1 MiB except the
// kernel and the initrd):
//
//	0x0000_0500  GDTAddr        boot GDT: null, code 0x08, data 0x10, TSS 0x18
//	0x0000_0520  IDTAddr        boot IDT (limit 0: any exception is fatal)
//	0x0000_6000  StartInfoAddr  PVH hvm_start_info (PVH boot only)
//	0x0000_6040  ModlistAddr    PVH module list: the initrd as module 0
//	0x0000_6080  PVHMemmapAddr  PVH memory map (e820 entries, 24 B each)
//	0x0000_7000  ZeroPageAddr   boot_params (bzImage boot only)
//	0x0000_8FF0  StackAddr      initial RSP/RBP (the stack grows down)
//	0x0000_9000  PML4Addr       PML4: entry 0 → PDPT
//	0x0000_A000  PDPTAddr       PDPT: entries 0–3 → the four PDs
//	0x0000_B000  PDAddr         4 PDs (to 0xEFFF): 2048 × 2 MiB pages, identity map of 0–4 GiB
//	0x0002_0000  CmdlineAddr    command line, NUL-terminated (≤ 4 KiB)
//	0x0009_FC00  -              e820 reserved up to 0xA0000 (EBDA in a PC)
//	0x000E_0000  ACPIAddr       ACPI tables, RSDP first (e820 reserved to 1 MiB)
//	0x000F_FFF0  ResetVectorAddr  stub: out ResetValue to ResetPort (0x600), hlt
//	0x0010_0000  KernelAddr     bzImage protected-mode code (vmlinux loads at its p_paddr)
//	top of low RAM              initrd, page aligned, below initrd_addr_max
//	0xC000_0000 – 4 GiB         MMIO hole (no RAM); RAM resumes at 4 GiB
//
// The e820 map handed to the guest is E820Map(memSize).
package boot
