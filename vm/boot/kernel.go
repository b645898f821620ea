package boot

import (
	"bytes"
	"fmt"
	"io"
)

// Kind says how a kernel is entered.
type Kind int

const (
	// KindBzImage is a bzImage entered through the 64-bit boot protocol.
	KindBzImage Kind = iota + 1
	// KindPVH is an ELF vmlinux entered in 32-bit protected mode at its PVH note.
	KindPVH
)

// String names the boot kind for logs.
func (k Kind) String() string {
	switch k {
	case KindBzImage:
		return "bzImage 64-bit"
	case KindPVH:
		return "ELF PVH"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Kernel is a parsed kernel image of either kind. Exactly one of BzImage and
// ELF is set, matching Kind.
type Kernel struct {
	Kind    Kind
	BzImage *BzImage
	ELF     *ELFKernel
	// End is the first guest-physical address above all memory the kernel
	// uses before it reads the memory map; the initrd is kept above it.
	End uint64
}

// ParseKernel detects the image format by its magic (ELF header or the
// bzImage "HdrS" signature) and parses it. The result aliases image.
func ParseKernel(image []byte) (*Kernel, error) {
	switch {
	case len(image) >= 4 && bytes.Equal(image[:4], []byte("\x7fELF")):
		e, err := ParseELF(image)
		if err != nil {
			return nil, err
		}
		return &Kernel{Kind: KindPVH, ELF: e, End: e.footprintEnd()}, nil
	case len(image) >= offHeaderMagic+4 && bytes.Equal(image[offHeaderMagic:offHeaderMagic+4], []byte("HdrS")):
		z, err := ParseBzImage(image)
		if err != nil {
			return nil, err
		}
		return &Kernel{Kind: KindBzImage, BzImage: z, End: z.footprintEnd()}, nil
	}
	return nil, fmt.Errorf("%w: no ELF magic at 0 and no HdrS magic at 0x202 in %d bytes", ErrUnknownKernel, len(image))
}

// LoadKernel parses image (see ParseKernel) and writes it into guest memory.
func LoadKernel(mem io.WriterAt, image []byte) (*Kernel, error) {
	k, err := ParseKernel(image)
	if err != nil {
		return nil, err
	}
	if err := k.Load(mem); err != nil {
		return nil, err
	}
	return k, nil
}

// Load writes the kernel into guest memory: a bzImage's protected-mode code
// at KernelAddr, or each ELF load segment at its physical address with the
// bytes past its file size zeroed.
func (k *Kernel) Load(mem io.WriterAt) error {
	switch k.Kind {
	case KindBzImage:
		if err := writeAt(mem, k.BzImage.Code, KernelAddr); err != nil {
			return fmt.Errorf("load kernel: %w", err)
		}
	case KindPVH:
		for _, s := range k.ELF.Segments {
			if err := writeAt(mem, s.Data, s.PAddr); err != nil {
				return fmt.Errorf("load kernel segment at %#x: %w", s.PAddr, err)
			}
			if err := zeroAt(mem, s.PAddr+uint64(len(s.Data)), s.MemSize-uint64(len(s.Data))); err != nil {
				return fmt.Errorf("zero kernel segment bss at %#x: %w", s.PAddr, err)
			}
		}
	default:
		return fmt.Errorf("load kernel: unknown kind %d", int(k.Kind))
	}
	return nil
}

// writeAt writes all of p at gpa.
func writeAt(mem io.WriterAt, p []byte, gpa uint64) error {
	if gpa > 1<<62 {
		return fmt.Errorf("address %#x out of range", gpa)
	}
	n, err := mem.WriteAt(p, int64(gpa))
	if err != nil {
		return fmt.Errorf("write %d bytes at %#x: %w", len(p), gpa, err)
	}
	if n != len(p) {
		return fmt.Errorf("write %d bytes at %#x: short write of %d", len(p), gpa, n)
	}
	return nil
}

// zeroAt writes n zero bytes at gpa, a chunk at a time.
func zeroAt(mem io.WriterAt, gpa, n uint64) error {
	var zero [64 << 10]byte
	for n > 0 {
		c := min(n, uint64(len(zero)))
		if err := writeAt(mem, zero[:c], gpa); err != nil {
			return err
		}
		gpa += c
		n -= c
	}
	return nil
}
