package boot

// Guest-physical addresses of the structures Setup writes (see the package doc).
const (
	GDTAddr       = 0x500
	IDTAddr       = 0x520
	StartInfoAddr = 0x6000
	ModlistAddr   = 0x6040
	PVHMemmapAddr = 0x6080
	ZeroPageAddr  = 0x7000
	StackAddr     = 0x8FF0
	PML4Addr      = 0x9000
	PDPTAddr      = 0xA000
	PDAddr        = 0xB000
	CmdlineAddr   = 0x20000
	ACPIAddr      = 0xE0000
	ACPIEnd       = 0x100000
	KernelAddr    = 0x100000
	// ResetVectorAddr is where a CPU enters at F000:FFF0 in real mode; Setup
	// puts a stub there that resets the guest through ResetPort.
	ResetVectorAddr = 0xFFFF0
)

// ResetPort and ResetValue are the ACPI reset register (FADT RESET_REG and
// RESET_VALUE, see vm/acpi): writing ResetValue to I/O port ResetPort asks
// chsnap to reset the guest.
const (
	ResetPort  = 0x600
	ResetValue = 1
)

// Sizes and limits of the guest memory layout.
const (
	// EBDAStart is where the low RAM region ends in the e820 map; the last
	// KiB below 640 KiB is reserved as a PC's extended BIOS data area is.
	EBDAStart = 0x9FC00
	// EBDAEnd is the end of the reserved EBDA range (the legacy VGA hole follows).
	EBDAEnd = 0xA0000
	// LowRAMLimit is where RAM below 4 GiB ends: the MMIO hole starts here.
	LowRAMLimit = 0xC000_0000
	// HighRAMBase is where RAM resumes above the MMIO hole.
	HighRAMBase = 1 << 32
	// MaxCmdlineLen is the longest command line Setup accepts, without the NUL.
	MaxCmdlineLen = 4095
	// PageSize is the alignment of the initrd.
	PageSize = 4096
	// identityMapSize is how much the boot page tables identity-map.
	identityMapSize = 4 << 30
	// pvhMemmapMax is how many memmap entries fit between PVHMemmapAddr and the zero page.
	pvhMemmapMax = (ZeroPageAddr - PVHMemmapAddr) / 24
)
