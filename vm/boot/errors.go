package boot

import "errors"

// Sentinel errors. Their text reads as part of a sentence the caller starts
// with the file name, e.g. "kernel vmlinuz: not a bzImage: no HdrS magic at 0x202".
var (
	// ErrNotBzImage means the image has no Linux setup header.
	ErrNotBzImage = errors.New("not a bzImage")
	// ErrUnsupportedBzImage means the image is a bzImage chsnap cannot enter
	// (boot protocol older than 2.12, no 64-bit entry point, not loaded high).
	ErrUnsupportedBzImage = errors.New("unsupported bzImage")
	// ErrNotELF means the image is not a 64-bit little-endian x86-64 ELF executable.
	ErrNotELF = errors.New("not an x86-64 ELF executable")
	// ErrNoPVHNote means an ELF kernel has no XEN_ELFNOTE_PHYS32_ENTRY note,
	// so there is no entry point chsnap can use.
	ErrNoPVHNote = errors.New("ELF kernel has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)")
	// ErrUnknownKernel means the image is neither a bzImage nor an ELF file.
	ErrUnknownKernel = errors.New("not a bzImage or ELF kernel")
	// ErrBadKernel means a header field of the image is inconsistent with the
	// file (truncated file, payload past the end, …).
	ErrBadKernel = errors.New("malformed kernel image")
	// ErrNoRoom means the kernel does not fit in guest RAM.
	ErrNoRoom = errors.New("kernel does not fit in guest memory")
	// ErrCmdlineTooLong means the command line exceeds the kernel's or chsnap's limit.
	ErrCmdlineTooLong = errors.New("command line too long")
	// ErrInitrdTooBig means the initrd does not fit between the kernel and the
	// top of low RAM (or initrd_addr_max).
	ErrInitrdTooBig = errors.New("initrd too big")
	// ErrMemSize means the configured memory size cannot hold a guest.
	ErrMemSize = errors.New("bad memory size")
)
