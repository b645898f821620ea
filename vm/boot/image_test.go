package boot

import (
	"encoding/binary"
)

// bzOpts describes a synthetic bzImage.
type bzOpts struct {
	setupSects    uint8
	version       uint16
	loadFlags     uint8
	xloadFlags    uint16
	cmdlineSize   uint32
	initrdAddrMax uint32
	alignment     uint32
	relocatable   uint8
	prefAddress   uint64
	initSize      uint32
	codeLen       int
	payloadOff    uint32
	payloadLen    uint32
}

func defaultBz() bzOpts {
	return bzOpts{
		setupSects:    0, // means 4
		version:       0x020F,
		loadFlags:     1,
		xloadFlags:    3,
		cmdlineSize:   2047,
		initrdAddrMax: 0x7FFF_FFFF,
		alignment:     0x20_0000,
		relocatable:   1,
		prefAddress:   0x100_0000,
		initSize:      0x80_0000,
		codeLen:       8192,
		payloadOff:    0x100,
		payloadLen:    0x1000,
	}
}

// makeBzImage builds a bzImage whose protected-mode code is a byte pattern.
func makeBzImage(o bzOpts) []byte {
	sects := int(o.setupSects)
	if sects == 0 {
		sects = 4
	}
	b := make([]byte, (sects+1)*512+o.codeLen)
	le := binary.LittleEndian
	b[0x1F1] = o.setupSects
	le.PutUint16(b[0x1FE:], 0xAA55)
	b[0x200] = 0xEB
	b[0x201] = 0x6A // header ends at 0x26C
	copy(b[0x202:], "HdrS")
	le.PutUint16(b[0x206:], o.version)
	b[0x211] = o.loadFlags
	le.PutUint32(b[0x214:], 0x100000)
	le.PutUint32(b[0x22C:], o.initrdAddrMax)
	le.PutUint32(b[0x230:], o.alignment)
	b[0x234] = o.relocatable
	le.PutUint16(b[0x236:], o.xloadFlags)
	le.PutUint32(b[0x238:], o.cmdlineSize)
	le.PutUint32(b[0x248:], o.payloadOff)
	le.PutUint32(b[0x24C:], o.payloadLen)
	le.PutUint64(b[0x258:], o.prefAddress)
	le.PutUint32(b[0x260:], o.initSize)
	for i := (sects + 1) * 512; i < len(b); i++ {
		b[i] = byte(i*7 + 3)
	}
	return b
}

// elfSeg is a segment of a synthetic ELF.
type elfSeg struct {
	typ    uint32
	paddr  uint64
	data   []byte
	memsz  uint64
	offset int64 // override p_offset when ≥ 0 and set via useOffset
	useOff bool
}

// pvhNote returns a PT_NOTE payload with XEN_ELFNOTE_PHYS32_ENTRY = entry,
// preceded by an unrelated note, with a descSize-byte descriptor.
func pvhNote(entry uint64, descSize int) []byte {
	var b []byte
	le := binary.LittleEndian
	note := func(name string, typ uint32, desc []byte) {
		h := make([]byte, 12)
		le.PutUint32(h[0:], uint32(len(name)+1))
		le.PutUint32(h[4:], uint32(len(desc)))
		le.PutUint32(h[8:], typ)
		b = append(b, h...)
		n := append([]byte(name), 0)
		for len(n)%4 != 0 {
			n = append(n, 0)
		}
		b = append(b, n...)
		d := append([]byte(nil), desc...)
		for len(d)%4 != 0 {
			d = append(d, 0)
		}
		b = append(b, d...)
	}
	note("GNU", 3, []byte("build-id-bytes!"))
	desc := make([]byte, descSize)
	if descSize == 8 {
		le.PutUint64(desc, entry)
	} else if descSize == 4 {
		le.PutUint32(desc, uint32(entry))
	}
	note("Xen", 18, desc)
	return b
}

// makeELF builds a 64-bit x86-64 ET_EXEC ELF with the given segments.
func makeELF(segs []elfSeg) []byte {
	le := binary.LittleEndian
	phoff := 64
	dataOff := phoff + 56*len(segs)
	b := make([]byte, dataOff)
	copy(b, "\x7fELF")
	b[4], b[5], b[6] = 2, 1, 1
	le.PutUint16(b[16:], 2)
	le.PutUint16(b[18:], 62)
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[24:], 0x1000000)
	le.PutUint64(b[32:], uint64(phoff))
	le.PutUint16(b[52:], 64)
	le.PutUint16(b[54:], 56)
	le.PutUint16(b[56:], uint16(len(segs)))
	for i, s := range segs {
		off := uint64(len(b))
		if s.useOff {
			off = uint64(s.offset)
		}
		ph := b[phoff+i*56:]
		le.PutUint32(ph[0:], s.typ)
		le.PutUint32(ph[4:], 7)
		le.PutUint64(ph[8:], off)
		le.PutUint64(ph[16:], s.paddr+0xffffffff80000000)
		le.PutUint64(ph[24:], s.paddr)
		le.PutUint64(ph[32:], uint64(len(s.data)))
		le.PutUint64(ph[40:], s.memsz)
		le.PutUint64(ph[48:], 0x1000)
		if !s.useOff {
			b = append(b, s.data...)
		}
	}
	return b
}

// patternBytes returns n bytes of a recognisable pattern.
func patternBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i) ^ seed
	}
	return b
}
