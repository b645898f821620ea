package boot

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/chsnap/chsnap/kvmstate"
)

// boot_params ("zero page") offsets (Documentation/arch/x86/zero-page.rst).
const (
	zeroPageSize      = 4096
	bpACPIRSDPAddr    = 0x070
	bpE820Entries     = 0x1E8
	bpE820Table       = 0x2D0
	e820MaxZeroPage   = 128
	e820ZeroPageEntry = 20
)

// hvm_start_info (xen/include/public/arch-x86/hvm/start_info.h).
const (
	startInfoMagic   = 0x336ec578
	startInfoVersion = 1 // version 1 adds memmap_paddr/memmap_entries
	startInfoSize    = 56
	modlistEntrySize = 32
	pvhMemmapEntry   = 24
)

// Config is what Setup needs to prepare a guest.
type Config struct {
	// Kernel is the kernel image: a bzImage or an ELF vmlinux with a PVH note.
	Kernel []byte
	// Initrd is the initial ramdisk; empty for none.
	Initrd []byte
	// Cmdline is the kernel command line, without the NUL.
	Cmdline string
	// MemSize is the guest RAM size in bytes, laid out as memdump lays it out.
	MemSize uint64
	// RSDP is the guest-physical address of the ACPI RSDP, written to
	// boot_params.acpi_rsdp_addr or hvm_start_info.rsdp_paddr; 0 leaves the
	// kernel to scan 0xE0000–0xFFFFF for it.
	RSDP uint64
}

// Entry is the result of Setup: where things went and the vCPU state that
// starts the kernel. The boot vCPU gets Regs and ApplySregs; the other vCPUs
// wait for INIT/SIPI and need nothing from here.
type Entry struct {
	Kind Kind
	// KernelEnd is the first address above the kernel's memory (Kernel.End).
	// Entry keeps no reference to the kernel image.
	KernelEnd uint64
	// Regs are the general registers for the boot vCPU (KVM_SET_REGS).
	Regs kvmstate.Regs
	// GDT is the boot GDT written at GDTAddr; ApplySregs derives the segment
	// registers from it.
	GDT [4]uint64
	// InitrdAddr and InitrdSize locate the initrd (both 0 when there is none).
	InitrdAddr, InitrdSize uint64
	// E820 is the memory map given to the kernel.
	E820 []E820Entry
}

// Setup loads the kernel, command line and initrd into guest memory, writes
// boot_params (bzImage) or hvm_start_info (PVH), the boot GDT and IDT and the
// identity page tables, and returns the boot vCPU's initial state.
//
// mem must accept guest-physical addresses as *memdump.Memory does. The ACPI
// tables are not written here: the caller copies them to cfg.RSDP's area.
func Setup(mem io.WriterAt, cfg Config) (*Entry, error) {
	if cfg.MemSize <= KernelAddr {
		return nil, fmt.Errorf("%w: %d bytes of RAM, need more than 1 MiB", ErrMemSize, cfg.MemSize)
	}
	k, err := ParseKernel(cfg.Kernel)
	if err != nil {
		return nil, err
	}
	lowEnd := min(cfg.MemSize, LowRAMLimit)
	if k.End > lowEnd {
		return nil, fmt.Errorf("%w: it needs RAM up to %#x, the guest's low RAM ends at %#x", ErrNoRoom, k.End, lowEnd)
	}
	limit := uint64(MaxCmdlineLen)
	if k.Kind == KindBzImage {
		limit = min(limit, uint64(k.BzImage.Header.CmdlineSize))
	}
	if uint64(len(cfg.Cmdline)) > limit {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrCmdlineTooLong, len(cfg.Cmdline), limit)
	}
	for i := 0; i < len(cfg.Cmdline); i++ {
		if cfg.Cmdline[i] == 0 {
			return nil, fmt.Errorf("command line has a NUL byte at %d", i)
		}
	}
	e := &Entry{Kind: k.Kind, KernelEnd: k.End, E820: E820Map(cfg.MemSize)}
	if len(cfg.Initrd) > 0 {
		top := lowEnd
		if k.Kind == KindBzImage {
			top = min(top, uint64(k.BzImage.Header.InitrdAddrMax)+1)
		}
		size := uint64(len(cfg.Initrd))
		if size > top || (top-size)&^(PageSize-1) < k.End {
			return nil, fmt.Errorf("%w: %d bytes do not fit between the kernel's end %#x and %#x", ErrInitrdTooBig, size, k.End, top)
		}
		e.InitrdAddr = (top - size) &^ (PageSize - 1)
		e.InitrdSize = size
	}

	if err := k.Load(mem); err != nil {
		return nil, err
	}
	if err := writeAt(mem, append([]byte(cfg.Cmdline), 0), CmdlineAddr); err != nil {
		return nil, fmt.Errorf("write command line: %w", err)
	}
	if e.InitrdSize > 0 {
		if err := writeAt(mem, cfg.Initrd, e.InitrdAddr); err != nil {
			return nil, fmt.Errorf("write initrd: %w", err)
		}
	}
	e.GDT = gdtFor(k.Kind)
	if err := writeDescriptorTables(mem, e.GDT); err != nil {
		return nil, err
	}
	if err := writePageTables(mem); err != nil {
		return nil, err
	}
	if err := writeAt(mem, resetStub, ResetVectorAddr); err != nil {
		return nil, fmt.Errorf("write reset vector stub: %w", err)
	}
	switch k.Kind {
	case KindBzImage:
		if err := writeZeroPage(mem, k.BzImage, e, cfg); err != nil {
			return nil, err
		}
		e.Regs = kvmstate.Regs{
			RIP:    KernelAddr + entry64Offset,
			RSI:    ZeroPageAddr,
			RSP:    StackAddr,
			RBP:    StackAddr,
			RFLAGS: rflagsReserved,
		}
	case KindPVH:
		if err := writeStartInfo(mem, e, cfg); err != nil {
			return nil, err
		}
		e.Regs = kvmstate.Regs{
			RIP:    uint64(k.ELF.PVHEntry),
			RBX:    StartInfoAddr,
			RFLAGS: rflagsReserved,
		}
	}
	return e, nil
}

// resetStub is the 16-bit code Setup puts at the reset vector (F000:FFF0):
//
//	mov al, ResetValue ; mov dx, ResetPort ; out dx, al ; 1: hlt ; jmp 1b
//
// Linux on a HW-reduced ACPI machine without EFI restarts by default through
// BOOT_EFI (which returns at once: efi_reboot_required() is true whenever
// the FADT says HW_REDUCED_ACPI) and then BOOT_BIOS: it clears CMOS
// register 0x0F and jumps to F000:FFF0 in real mode (machine_real_restart
// in arch/x86/kernel/reboot.c), seen with Linux 6.12 under the QEMU oracle.
// With RAM there, the vCPU would run zeros forever; the stub turns that
// jump into the same ACPI reset a "reboot=a" restart performs.
var resetStub = []byte{0xB0, ResetValue, 0xBA, ResetPort & 0xFF, ResetPort >> 8, 0xEE, 0xF4, 0xEB, 0xFD}

// writeZeroPage builds boot_params: zeroed, the image's setup header copied
// to 0x1F1, then the loader-owned fields patched (boot.rst "Details of Header
// Fields": type_of_loader and cmd_line_ptr are obligatory).
func writeZeroPage(mem io.WriterAt, z *BzImage, e *Entry, cfg Config) error {
	if len(e.E820) > e820MaxZeroPage {
		return fmt.Errorf("e820 map has %d entries, boot_params holds %d", len(e.E820), e820MaxZeroPage)
	}
	bp := make([]byte, zeroPageSize)
	copy(bp[hdrStart:], z.RawHeader)
	le := binary.LittleEndian
	bp[offTypeOfLoader] = typeOfLoaderAny
	le.PutUint32(bp[offCode32Start:], KernelAddr)
	le.PutUint32(bp[offRamdiskImage:], uint32(e.InitrdAddr))
	le.PutUint32(bp[offRamdiskSize:], uint32(e.InitrdSize))
	le.PutUint32(bp[offCmdLinePtr:], CmdlineAddr)
	le.PutUint64(bp[bpACPIRSDPAddr:], cfg.RSDP)
	bp[bpE820Entries] = uint8(len(e.E820))
	for i, r := range e.E820 {
		p := bp[bpE820Table+i*e820ZeroPageEntry:]
		le.PutUint64(p[0:], r.Addr)
		le.PutUint64(p[8:], r.Size)
		le.PutUint32(p[16:], r.Type)
	}
	if err := writeAt(mem, bp, ZeroPageAddr); err != nil {
		return fmt.Errorf("write boot_params: %w", err)
	}
	return nil
}

// writeStartInfo builds the PVH hvm_start_info, its module list (the initrd
// as module 0) and its memory map, in the page at StartInfoAddr.
func writeStartInfo(mem io.WriterAt, e *Entry, cfg Config) error {
	if len(e.E820) > pvhMemmapMax {
		return fmt.Errorf("e820 map has %d entries, the PVH memmap area holds %d", len(e.E820), pvhMemmapMax)
	}
	page := make([]byte, ZeroPageAddr-StartInfoAddr)
	le := binary.LittleEndian
	si := page[:startInfoSize]
	le.PutUint32(si[0:], startInfoMagic)
	le.PutUint32(si[4:], startInfoVersion)
	if e.InitrdSize > 0 {
		le.PutUint32(si[12:], 1) // nr_modules
		le.PutUint64(si[16:], ModlistAddr)
		m := page[ModlistAddr-StartInfoAddr:][:modlistEntrySize]
		le.PutUint64(m[0:], e.InitrdAddr)
		le.PutUint64(m[8:], e.InitrdSize)
	}
	le.PutUint64(si[24:], CmdlineAddr)
	le.PutUint64(si[32:], cfg.RSDP)
	le.PutUint64(si[40:], PVHMemmapAddr)
	le.PutUint32(si[48:], uint32(len(e.E820)))
	for i, r := range e.E820 {
		p := page[PVHMemmapAddr-StartInfoAddr+i*pvhMemmapEntry:]
		le.PutUint64(p[0:], r.Addr)
		le.PutUint64(p[8:], r.Size)
		le.PutUint32(p[16:], r.Type)
	}
	if err := writeAt(mem, page, StartInfoAddr); err != nil {
		return fmt.Errorf("write PVH start info: %w", err)
	}
	return nil
}
