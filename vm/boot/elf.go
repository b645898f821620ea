package boot

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// ELF constants (System V gABI, x86-64 psABI) and the Xen PVH note.
const (
	elfHeaderSize    = 64
	elfPhdrSize      = 56
	elfClass64       = 2
	elfData2LSB      = 1
	elfTypeExec      = 2
	elfMachineX86_64 = 62
	ptLoad           = 1
	ptNote           = 4
	maxPhdrs         = 256 // far more than any kernel has; bounds the header walk

	// xenElfnotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY (xen/include/public/elfnote.h).
	xenElfnotePhys32Entry = 18
)

// Segment is one PT_LOAD segment of an ELF kernel, placed at its physical address.
type Segment struct {
	PAddr   uint64 // guest-physical load address (p_paddr)
	Data    []byte // file contents (p_filesz bytes), aliasing the image
	MemSize uint64 // p_memsz ≥ len(Data); the rest is zero-filled
}

// ELFKernel is a parsed vmlinux with a PVH entry point.
type ELFKernel struct {
	Segments []Segment
	// PVHEntry is the 32-bit protected-mode entry point from the
	// XEN_ELFNOTE_PHYS32_ENTRY note.
	PVHEntry uint32
}

// ParseELF parses a 64-bit x86-64 ELF executable (an uncompressed vmlinux):
// its PT_LOAD segments, which must lie between 1 MiB and 4 GiB, and the PVH
// entry note. The returned segments alias b. An ELF without the note fails
// with ErrNoPVHNote.
func ParseELF(b []byte) (*ELFKernel, error) {
	if len(b) < elfHeaderSize || !bytes.Equal(b[:4], []byte("\x7fELF")) {
		return nil, fmt.Errorf("%w: no ELF header", ErrNotELF)
	}
	le := binary.LittleEndian
	if b[4] != elfClass64 || b[5] != elfData2LSB {
		return nil, fmt.Errorf("%w: class %d data %d, want 64-bit little-endian", ErrNotELF, b[4], b[5])
	}
	if t, m := le.Uint16(b[16:]), le.Uint16(b[18:]); t != elfTypeExec || m != elfMachineX86_64 {
		return nil, fmt.Errorf("%w: type %d machine %d, want an executable (2) for x86-64 (62)", ErrNotELF, t, m)
	}
	phoff := le.Uint64(b[32:])
	phentsize := uint64(le.Uint16(b[54:]))
	phnum := uint64(le.Uint16(b[56:]))
	if phentsize != elfPhdrSize {
		return nil, fmt.Errorf("%w: program header size %d, want %d", ErrBadKernel, phentsize, elfPhdrSize)
	}
	if phnum == 0 || phnum > maxPhdrs {
		return nil, fmt.Errorf("%w: %d program headers, want 1 to %d", ErrBadKernel, phnum, maxPhdrs)
	}
	if phoff > uint64(len(b)) || phnum*phentsize > uint64(len(b))-phoff {
		return nil, fmt.Errorf("%w: program headers at %#x (%d × %d bytes) run past the %d-byte file",
			ErrBadKernel, phoff, phnum, phentsize, len(b))
	}
	k := &ELFKernel{}
	found := false
	for i := uint64(0); i < phnum; i++ {
		ph := b[phoff+i*phentsize:][:elfPhdrSize]
		typ := le.Uint32(ph[0:])
		off := le.Uint64(ph[8:])
		paddr := le.Uint64(ph[24:])
		filesz := le.Uint64(ph[32:])
		memsz := le.Uint64(ph[40:])
		if typ != ptLoad && typ != ptNote {
			continue
		}
		if off > uint64(len(b)) || filesz > uint64(len(b))-off {
			return nil, fmt.Errorf("%w: segment %d [%#x, +%#x) runs past the %d-byte file", ErrBadKernel, i, off, filesz, len(b))
		}
		data := b[off : off+filesz]
		if typ == ptNote {
			entry, ok, err := findPVHNote(data)
			if err != nil {
				return nil, fmt.Errorf("%w: note segment %d: %w", ErrBadKernel, i, err)
			}
			if ok && !found {
				k.PVHEntry, found = entry, true
			}
			continue
		}
		if filesz > memsz {
			return nil, fmt.Errorf("%w: segment %d has filesz %#x > memsz %#x", ErrBadKernel, i, filesz, memsz)
		}
		if memsz == 0 {
			continue
		}
		if paddr < KernelAddr || paddr > identityMapSize || memsz > identityMapSize-paddr {
			return nil, fmt.Errorf("%w: segment %d at [%#x, +%#x) is not between 1 MiB and 4 GiB", ErrBadKernel, i, paddr, memsz)
		}
		k.Segments = append(k.Segments, Segment{PAddr: paddr, Data: data, MemSize: memsz})
	}
	if len(k.Segments) == 0 {
		return nil, fmt.Errorf("%w: no PT_LOAD segment", ErrBadKernel)
	}
	for i, s := range k.Segments {
		for _, t := range k.Segments[:i] {
			if s.PAddr < t.PAddr+t.MemSize && t.PAddr < s.PAddr+s.MemSize {
				return nil, fmt.Errorf("%w: load segments at %#x and %#x overlap", ErrBadKernel, t.PAddr, s.PAddr)
			}
		}
	}
	if !found {
		return nil, ErrNoPVHNote
	}
	return k, nil
}

// findPVHNote walks the notes in one PT_NOTE segment looking for
// XEN_ELFNOTE_PHYS32_ENTRY with owner "Xen". Linux emits its descriptor as
// an _ASM_PTR (8 bytes on x86-64); the Xen ABI says 4. Both are accepted and
// the value must fit in 32 bits.
func findPVHNote(d []byte) (uint32, bool, error) {
	le := binary.LittleEndian
	for len(d) > 0 {
		if len(d) < 12 {
			return 0, false, fmt.Errorf("note header truncated (%d bytes left)", len(d))
		}
		namesz, descsz, typ := uint64(le.Uint32(d[0:])), uint64(le.Uint32(d[4:])), le.Uint32(d[8:])
		d = d[12:]
		nameLen, descLen := align4(namesz), align4(descsz)
		if nameLen > uint64(len(d)) || descLen > uint64(len(d))-nameLen {
			return 0, false, fmt.Errorf("note of type %d (name %d, desc %d bytes) runs past the segment", typ, namesz, descsz)
		}
		name, desc := d[:namesz], d[nameLen:nameLen+descsz]
		d = d[nameLen+descLen:]
		if typ != xenElfnotePhys32Entry || !bytes.Equal(bytes.TrimRight(name, "\x00"), []byte("Xen")) {
			continue
		}
		switch len(desc) {
		case 4:
			return le.Uint32(desc), true, nil
		case 8:
			v := le.Uint64(desc)
			if v > 0xFFFF_FFFF {
				return 0, false, fmt.Errorf("PVH entry %#x is above 4 GiB", v)
			}
			return uint32(v), true, nil
		default:
			return 0, false, fmt.Errorf("PVH entry note descriptor is %d bytes, want 4 or 8", len(desc))
		}
	}
	return 0, false, nil
}

func align4(n uint64) uint64 { return (n + 3) &^ 3 }

// footprintEnd returns the first address above every load segment.
func (k *ELFKernel) footprintEnd() uint64 {
	var end uint64
	for _, s := range k.Segments {
		end = max(end, s.PAddr+s.MemSize)
	}
	return end
}
