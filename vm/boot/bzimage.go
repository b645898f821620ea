package boot

import (
	"encoding/binary"
	"fmt"
)

// Setup header offsets, identical in the bzImage file and in boot_params
// (Documentation/arch/x86/boot.rst, "The Real-Mode Kernel Header").
const (
	hdrStart           = 0x1F1 // setup_sects: first byte of struct setup_header
	offSetupSects      = 0x1F1
	offBootFlag        = 0x1FE
	offJump            = 0x200 // 2-byte jump; its second byte gives the header length
	offHeaderMagic     = 0x202
	offVersion         = 0x206
	offTypeOfLoader    = 0x210
	offLoadFlags       = 0x211
	offCode32Start     = 0x214
	offRamdiskImage    = 0x218
	offRamdiskSize     = 0x21C
	offCmdLinePtr      = 0x228
	offInitrdAddrMax   = 0x22C
	offKernelAlignment = 0x230
	offRelocatable     = 0x234
	offXLoadFlags      = 0x236
	offCmdlineSize     = 0x238
	offPayloadOffset   = 0x248
	offPayloadLength   = 0x24C
	offPrefAddress     = 0x258
	offInitSize        = 0x260
	offHandoverOffset  = 0x264 // end of the fields chsnap reads

	// hdrMaxEnd bounds how much of the header is copied into boot_params:
	// struct setup_header plus its padding ends where edd_mbr_sig_buffer begins.
	hdrMaxEnd = 0x290

	bootFlagMagic   = 0xAA55
	hdrSMagic       = 0x53726448 // "HdrS"
	minVersion64    = 0x020C     // 64-bit entry point exists from 2.12
	loadedHigh      = 1 << 0     // loadflags: protected-mode code at 0x100000
	xlfKernel64     = 1 << 0     // xloadflags: 64-bit entry at +0x200
	entry64Offset   = 0x200      // 64-bit entry point relative to the load address
	typeOfLoaderAny = 0xFF       // "undefined" boot loader ID
)

// SetupHeader holds the bzImage setup-header fields chsnap reads.
type SetupHeader struct {
	SetupSects        uint8  // real-mode sectors (0 in the file means 4; stored here already fixed up)
	Version           uint16 // boot protocol version, e.g. 0x020F
	LoadFlags         uint8
	Code32Start       uint32
	InitrdAddrMax     uint32 // highest address the initrd may occupy
	KernelAlignment   uint32
	RelocatableKernel bool
	XLoadFlags        uint16
	CmdlineSize       uint32 // longest command line the kernel takes, without the NUL
	PayloadOffset     uint32 // of the compressed payload, from the protected-mode code start
	PayloadLength     uint32
	PrefAddress       uint64
	InitSize          uint32 // memory the kernel needs from its start before it reads the e820 map
}

// BzImage is a parsed bzImage.
type BzImage struct {
	Header SetupHeader
	// RawHeader is the setup header as found in the file, from 0x1F1 to its
	// end, ready to be copied into boot_params.
	RawHeader []byte
	// Code is the protected-mode kernel, loaded at KernelAddr.
	Code []byte
}

// ParseBzImage validates the setup header of a bzImage and splits it into
// the header and the protected-mode code. The returned slices alias b.
// Only images that can be entered through the 64-bit boot protocol
// (version ≥ 2.12 with XLF_KERNEL_64) are accepted.
func ParseBzImage(b []byte) (*BzImage, error) {
	if len(b) < offVersion {
		return nil, fmt.Errorf("%w: file is %d bytes, too short for a setup header", ErrNotBzImage, len(b))
	}
	le := binary.LittleEndian
	if f := le.Uint16(b[offBootFlag:]); f != bootFlagMagic {
		return nil, fmt.Errorf("%w: boot flag at 0x1fe is %#04x, want 0xaa55", ErrNotBzImage, f)
	}
	if m := le.Uint32(b[offHeaderMagic:]); m != hdrSMagic {
		return nil, fmt.Errorf("%w: no HdrS magic at 0x202", ErrNotBzImage)
	}
	if len(b) < offVersion+2 {
		return nil, fmt.Errorf("%w: file is %d bytes, truncated in the setup header", ErrBadKernel, len(b))
	}
	var h SetupHeader
	h.Version = le.Uint16(b[offVersion:])
	if h.Version < minVersion64 {
		return nil, fmt.Errorf("%w: boot protocol %d.%02d is older than 2.12, the first with a 64-bit entry point",
			ErrUnsupportedBzImage, h.Version>>8, h.Version&0xFF)
	}
	hdrEnd := offHeaderMagic + int(b[offJump+1])
	if hdrEnd < offHandoverOffset {
		return nil, fmt.Errorf("%w: setup header ends at %#x, before init_size at 0x260 that protocol %d.%02d has",
			ErrBadKernel, hdrEnd, h.Version>>8, h.Version&0xFF)
	}
	if len(b) < hdrEnd {
		return nil, fmt.Errorf("%w: file is %d bytes, truncated in the setup header ending at %#x", ErrBadKernel, len(b), hdrEnd)
	}
	h.SetupSects = b[offSetupSects]
	if h.SetupSects == 0 {
		h.SetupSects = 4
	}
	h.LoadFlags = b[offLoadFlags]
	h.Code32Start = le.Uint32(b[offCode32Start:])
	h.InitrdAddrMax = le.Uint32(b[offInitrdAddrMax:])
	h.KernelAlignment = le.Uint32(b[offKernelAlignment:])
	h.RelocatableKernel = b[offRelocatable] != 0
	h.XLoadFlags = le.Uint16(b[offXLoadFlags:])
	h.CmdlineSize = le.Uint32(b[offCmdlineSize:])
	h.PayloadOffset = le.Uint32(b[offPayloadOffset:])
	h.PayloadLength = le.Uint32(b[offPayloadLength:])
	h.PrefAddress = le.Uint64(b[offPrefAddress:])
	h.InitSize = le.Uint32(b[offInitSize:])

	if h.LoadFlags&loadedHigh == 0 {
		return nil, fmt.Errorf("%w: LOADED_HIGH is clear in loadflags (a zImage), only bzImages are supported", ErrUnsupportedBzImage)
	}
	if h.XLoadFlags&xlfKernel64 == 0 {
		return nil, fmt.Errorf("%w: XLF_KERNEL_64 is clear in xloadflags, the kernel has no 64-bit entry point", ErrUnsupportedBzImage)
	}
	setupSize := (int(h.SetupSects) + 1) * 512
	if setupSize >= len(b) {
		return nil, fmt.Errorf("%w: setup code of %d bytes leaves no protected-mode kernel in a %d-byte file",
			ErrBadKernel, setupSize, len(b))
	}
	code := b[setupSize:]
	if end := uint64(h.PayloadOffset) + uint64(h.PayloadLength); end > uint64(len(code)) {
		return nil, fmt.Errorf("%w: payload [%#x, %#x) runs past the %d-byte protected-mode kernel",
			ErrBadKernel, h.PayloadOffset, end, len(code))
	}
	if h.InitSize == 0 {
		return nil, fmt.Errorf("%w: init_size is 0", ErrBadKernel)
	}
	if h.RelocatableKernel && (h.KernelAlignment == 0 || h.KernelAlignment&(h.KernelAlignment-1) != 0) {
		return nil, fmt.Errorf("%w: kernel_alignment %#x is not a power of two", ErrBadKernel, h.KernelAlignment)
	}
	if h.PrefAddress >= identityMapSize {
		return nil, fmt.Errorf("%w: pref_address %#x is above 4 GiB", ErrBadKernel, h.PrefAddress)
	}
	raw := b[hdrStart:min(hdrEnd, hdrMaxEnd)]
	return &BzImage{Header: h, RawHeader: raw, Code: code}, nil
}

// footprintEnd returns the first address above the memory the kernel may use
// before it reads the e820 map. The 64-bit entry of a relocatable kernel
// moves itself to the load address rounded up to kernel_alignment, but not
// below pref_address (LOAD_PHYSICAL_ADDR), and then needs init_size bytes
// from there (arch/x86/boot/compressed/head_64.S); a non-relocatable one
// decompresses at pref_address. Take the largest candidate.
func (z *BzImage) footprintEnd() uint64 {
	h := z.Header
	load := uint64(KernelAddr)
	end := load + uint64(len(z.Code))
	base := load
	if h.RelocatableKernel {
		a := uint64(h.KernelAlignment)
		base = (load + a - 1) &^ (a - 1)
	}
	base = max(base, h.PrefAddress)
	return max(end, load+uint64(h.InitSize), base+uint64(h.InitSize))
}
