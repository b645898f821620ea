package boot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
)

func TestParseBzImage(t *testing.T) {
	img := makeBzImage(defaultBz())
	z, err := ParseBzImage(img)
	if err != nil {
		t.Fatalf("ParseBzImage: %v", err)
	}
	h := z.Header
	if h.SetupSects != 4 {
		t.Errorf("SetupSects = %d, want 4 (0 in the file)", h.SetupSects)
	}
	if h.Version != 0x020F || h.CmdlineSize != 2047 || h.InitrdAddrMax != 0x7FFF_FFFF ||
		h.KernelAlignment != 0x20_0000 || !h.RelocatableKernel || h.PrefAddress != 0x100_0000 || h.InitSize != 0x80_0000 {
		t.Errorf("header = %+v", h)
	}
	if !bytes.Equal(z.Code, img[5*512:]) {
		t.Errorf("Code is not the file from offset 0xA00")
	}
	if len(z.RawHeader) != 0x26C-0x1F1 || z.RawHeader[0x202-0x1F1] != 'H' {
		t.Errorf("RawHeader is %d bytes, want %d starting at 0x1F1", len(z.RawHeader), 0x26C-0x1F1)
	}
	// Footprint: relocatable, aligned load address 2 MiB < pref_address, so
	// the kernel decompresses at 16 MiB and needs init_size from there.
	k, err := ParseKernel(img)
	if err != nil || k.Kind != KindBzImage {
		t.Fatalf("ParseKernel = %v, %v", k, err)
	}
	if want := uint64(0x100_0000 + 0x80_0000); k.End != want {
		t.Errorf("End = %#x, want %#x", k.End, want)
	}

	o := defaultBz()
	o.setupSects = 2
	z, err = ParseBzImage(makeBzImage(o))
	if err != nil || z.Header.SetupSects != 2 || len(z.Code) != o.codeLen {
		t.Errorf("setup_sects 2: %+v, %v", z, err)
	}
}

func TestParseBzImageErrors(t *testing.T) {
	mod := func(f func(*bzOpts)) []byte {
		o := defaultBz()
		f(&o)
		return makeBzImage(o)
	}
	patch := func(off int, v ...byte) []byte {
		b := makeBzImage(defaultBz())
		copy(b[off:], v)
		return b
	}
	tests := []struct {
		name    string
		img     []byte
		want    error
		message string
	}{
		{"empty", nil, ErrNotBzImage, "file is 0 bytes"},
		{"garbage", bytes.Repeat([]byte{0x5A}, 4096), ErrNotBzImage, "boot flag at 0x1fe is 0x5a5a"},
		{"no HdrS", patch(0x202, 'X'), ErrNotBzImage, "no HdrS magic at 0x202"},
		{"truncated in header", makeBzImage(defaultBz())[:0x240], ErrBadKernel, "truncated in the setup header"},
		{"old protocol", mod(func(o *bzOpts) { o.version = 0x0206 }), ErrUnsupportedBzImage, "boot protocol 2.06 is older than 2.12"},
		{"zImage", mod(func(o *bzOpts) { o.loadFlags = 0 }), ErrUnsupportedBzImage, "LOADED_HIGH"},
		{"no 64-bit entry", mod(func(o *bzOpts) { o.xloadFlags = 2 }), ErrUnsupportedBzImage, "XLF_KERNEL_64"},
		{"short header", patch(0x201, 0x20), ErrBadKernel, "setup header ends at 0x222"},
		{"setup only", mod(func(o *bzOpts) { o.codeLen = 0 }), ErrBadKernel, "leaves no protected-mode kernel"},
		{"payload past end", mod(func(o *bzOpts) { o.payloadLen = 0x2000 }), ErrBadKernel, "payload [0x100, 0x2100) runs past the 8192-byte"},
		{"init_size 0", mod(func(o *bzOpts) { o.initSize = 0 }), ErrBadKernel, "init_size is 0"},
		{"bad alignment", mod(func(o *bzOpts) { o.alignment = 0x30_0000 }), ErrBadKernel, "kernel_alignment 0x300000 is not a power of two"},
		{"pref above 4G", mod(func(o *bzOpts) { o.prefAddress = 1 << 33 }), ErrBadKernel, "pref_address 0x200000000 is above 4 GiB"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseBzImage(tc.img)
			if !errors.Is(err, tc.want) {
				t.Fatalf("error = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q does not mention %q", err, tc.message)
			}
		})
	}
}

func TestParseKernelUnknown(t *testing.T) {
	for _, img := range [][]byte{nil, []byte("#!/bin/sh\necho hi\n"), bytes.Repeat([]byte{0}, 8192)} {
		_, err := ParseKernel(img)
		if !errors.Is(err, ErrUnknownKernel) {
			t.Errorf("ParseKernel(%d bytes) = %v, want ErrUnknownKernel", len(img), err)
		}
	}
	// A file with HdrS but a bad boot flag reaches the bzImage parser and
	// gets its more precise error.
	b := makeBzImage(defaultBz())
	b[0x1FE] = 0
	if _, err := ParseKernel(b); !errors.Is(err, ErrNotBzImage) || !strings.Contains(err.Error(), "not a bzImage: boot flag") {
		t.Errorf("ParseKernel(bad boot flag) = %v", err)
	}
}

// TestRealGuest parses and sets up the test guest built by the Makefile.
func TestRealGuest(t *testing.T) {
	const path = "../../testdata/guest/build/guest.bzImage"
	img, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("SKIP: %s not built (run make in the repository root)", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	mem := newSparseMem(256 << 20)
	e, err := Setup(mem, Config{Kernel: img, Cmdline: "console=ttyS0", MemSize: 256 << 20, RSDP: ACPIAddr})
	if err != nil {
		t.Fatalf("Setup(%s): %v", path, err)
	}
	if e.Kind != KindBzImage || e.Regs.RIP != 0x100200 {
		t.Errorf("entry = %v at %#x, want bzImage 64-bit at 0x100200", e.Kind, e.Regs.RIP)
	}
	z, err := ParseBzImage(img)
	if err != nil {
		t.Fatal(err)
	}
	if got := mem.read(KernelAddr, 16); !bytes.Equal(got, z.Code[:16]) {
		t.Errorf("kernel code at 1 MiB = % x, want % x", got, z.Code[:16])
	}
	if e.KernelEnd <= KernelAddr {
		t.Errorf("KernelEnd = %#x", e.KernelEnd)
	}
	if got := binary.LittleEndian.Uint32(mem.read(ZeroPageAddr+0x202, 4)); got != hdrSMagic {
		t.Errorf("boot_params HdrS = %#x", got)
	}
}

func FuzzParseKernel(f *testing.F) {
	f.Add(makeBzImage(defaultBz()))
	f.Add(makeELF([]elfSeg{{typ: ptLoad, paddr: 0x100_0000, data: []byte{1, 2, 3}, memsz: 16}, {typ: ptNote, data: pvhNote(0x100_0040, 8)}}))
	f.Add([]byte("\x7fELF"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParseKernel(b)
		if err != nil {
			return
		}
		if k.End <= KernelAddr || k.End > identityMapSize+1<<32 {
			t.Fatalf("End %#x out of range", k.End)
		}
	})
}
