package boot

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestParseELF(t *testing.T) {
	text := patternBytes(5000, 0x11)
	for _, descSize := range []int{4, 8} {
		img := makeELF([]elfSeg{
			{typ: ptLoad, paddr: 0x100_0000, data: text, memsz: 0x2000},
			{typ: ptNote, data: pvhNote(0x100_01C0, descSize)},
			{typ: ptLoad, paddr: 0x120_0000, data: []byte{9, 9}, memsz: 0x10000},
		})
		k, err := ParseKernel(img)
		if err != nil {
			t.Fatalf("desc %d: ParseKernel: %v", descSize, err)
		}
		if k.Kind != KindPVH || k.ELF.PVHEntry != 0x100_01C0 {
			t.Errorf("desc %d: kind %v entry %#x, want PVH 0x10001c0", descSize, k.Kind, k.ELF.PVHEntry)
		}
		if len(k.ELF.Segments) != 2 || !bytes.Equal(k.ELF.Segments[0].Data, text) || k.ELF.Segments[1].MemSize != 0x10000 {
			t.Errorf("desc %d: segments %+v", descSize, k.ELF.Segments)
		}
		if k.End != 0x121_0000 {
			t.Errorf("desc %d: End = %#x, want 0x1210000", descSize, k.End)
		}
	}
}

func TestParseELFErrors(t *testing.T) {
	load := elfSeg{typ: ptLoad, paddr: 0x100_0000, data: []byte{1, 2, 3, 4}, memsz: 0x1000}
	note := elfSeg{typ: ptNote, data: pvhNote(0x100_0000, 8)}
	good := makeELF([]elfSeg{load, note})
	patched := func(off int, v ...byte) []byte {
		b := append([]byte(nil), good...)
		copy(b[off:], v)
		return b
	}
	tests := []struct {
		name    string
		img     []byte
		want    error
		message string
	}{
		{"no note", makeELF([]elfSeg{load}), ErrNoPVHNote, "no PVH entry note"},
		{"other notes only", makeELF([]elfSeg{load, {typ: ptNote, data: pvhNote(0, 0)[:32]}}), ErrNoPVHNote, "XEN_ELFNOTE_PHYS32_ENTRY"},
		{"32-bit class", patched(4, 1), ErrNotELF, "class 1"},
		{"big endian", patched(5, 2), ErrNotELF, "data 2"},
		{"aarch64", patched(18, 183), ErrNotELF, "machine 183"},
		{"truncated header", good[:40], ErrNotELF, "no ELF header"},
		{"phdrs past end", good[:100], ErrBadKernel, "program headers at 0x40"},
		{"segment past end", makeELF([]elfSeg{{typ: ptLoad, paddr: 0x100_0000, data: make([]byte, 16), memsz: 16, useOff: true, offset: 1 << 20}, note}), ErrBadKernel, "runs past the"},
		{"filesz > memsz", makeELF([]elfSeg{{typ: ptLoad, paddr: 0x100_0000, data: make([]byte, 16), memsz: 8}, note}), ErrBadKernel, "filesz 0x10 > memsz 0x8"},
		{"below 1 MiB", makeELF([]elfSeg{{typ: ptLoad, paddr: 0x7000, data: make([]byte, 16), memsz: 16}, note}), ErrBadKernel, "not between 1 MiB and 4 GiB"},
		{"above 4 GiB", makeELF([]elfSeg{{typ: ptLoad, paddr: 0xFFFF_F000, data: make([]byte, 16), memsz: 0x2000}, note}), ErrBadKernel, "not between 1 MiB and 4 GiB"},
		{"overlap", makeELF([]elfSeg{load, {typ: ptLoad, paddr: 0x100_0800, memsz: 0x100}, note}), ErrBadKernel, "overlap"},
		{"no load", makeELF([]elfSeg{note}), ErrBadKernel, "no PT_LOAD"},
		{"note truncated", makeELF([]elfSeg{load, {typ: ptNote, data: pvhNote(1, 8)[:50]}}), ErrBadKernel, "runs past the segment"},
		{"entry above 4G", makeELF([]elfSeg{load, {typ: ptNote, data: pvhNote(1<<32, 8)}}), ErrBadKernel, "above 4 GiB"},
		{"odd desc size", makeELF([]elfSeg{load, {typ: ptNote, data: pvhNote(1, 2)}}), ErrBadKernel, "descriptor is 2 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseELF(tc.img)
			if !errors.Is(err, tc.want) {
				t.Fatalf("error = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q does not mention %q", err, tc.message)
			}
		})
	}
}
