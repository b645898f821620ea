package boot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/chsnap/chsnap/kvmstate"
)

var le = binary.LittleEndian

func TestSetupBzImage(t *testing.T) {
	const memSize = 256 << 20
	img := makeBzImage(defaultBz())
	initrd := patternBytes(10000, 0x5A)
	mem := newSparseMem(memSize)
	cmdline := "console=ttyS0 earlyprintk=serial reboot=k"
	e, err := Setup(mem, Config{Kernel: img, Initrd: initrd, Cmdline: cmdline, MemSize: memSize, RSDP: ACPIAddr})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	if got := mem.read(KernelAddr, 8192); !bytes.Equal(got, img[5*512:]) {
		t.Errorf("kernel code not at 1 MiB")
	}
	if got := mem.read(CmdlineAddr, len(cmdline)+1); string(got) != cmdline+"\x00" {
		t.Errorf("cmdline = %q", got)
	}
	// Initrd: top of low RAM, page aligned.
	if want := uint64(memSize-10000) &^ 0xFFF; e.InitrdAddr != want || e.InitrdSize != 10000 {
		t.Errorf("initrd at %#x size %d, want %#x size 10000", e.InitrdAddr, e.InitrdSize, want)
	}
	if got := mem.read(e.InitrdAddr, len(initrd)); !bytes.Equal(got, initrd) {
		t.Errorf("initrd contents differ")
	}

	bp := mem.read(ZeroPageAddr, 4096)
	// The header is the image's, then patched.
	if !bytes.Equal(bp[0x1F1:0x210], img[0x1F1:0x210]) || !bytes.Equal(bp[0x22C:0x26C], img[0x22C:0x26C]) {
		t.Errorf("setup header not copied from the image")
	}
	checks := []struct {
		name      string
		off, size int
		want      uint64
	}{
		{"acpi_rsdp_addr", 0x070, 8, ACPIAddr},
		{"e820_entries", 0x1E8, 1, 4},
		{"type_of_loader", 0x210, 1, 0xFF},
		{"loadflags", 0x211, 1, 1},
		{"code32_start", 0x214, 4, 0x100000},
		{"ramdisk_image", 0x218, 4, e.InitrdAddr},
		{"ramdisk_size", 0x21C, 4, 10000},
		{"cmd_line_ptr", 0x228, 4, CmdlineAddr},
		{"cmdline_size", 0x238, 4, 2047},
		{"e820[3].addr", 0x2D0 + 3*20, 8, 0x100000},
		{"e820[3].size", 0x2D0 + 3*20 + 8, 8, memSize - 0x100000},
		{"e820[3].type", 0x2D0 + 3*20 + 16, 4, 1},
		{"e820[1].type", 0x2D0 + 1*20 + 16, 4, 2},
		{"e820[4]", 0x2D0 + 4*20, 8, 0},
	}
	for _, c := range checks {
		var got uint64
		switch c.size {
		case 1:
			got = uint64(bp[c.off])
		case 4:
			got = uint64(le.Uint32(bp[c.off:]))
		case 8:
			got = le.Uint64(bp[c.off:])
		}
		if got != c.want {
			t.Errorf("boot_params %s = %#x, want %#x", c.name, got, c.want)
		}
	}

	// GDT, IDT, page tables.
	gdt := mem.read(GDTAddr, 40)
	for i, want := range []uint64{0, 0x00AF9B000000FFFF, 0x00CF93000000FFFF, 0x008F8B000000FFFF, 0} {
		if got := le.Uint64(gdt[i*8:]); got != want {
			t.Errorf("GDT[%d] = %#x, want %#x", i, got, want)
		}
	}
	pt := []struct {
		addr, want uint64
	}{
		{PML4Addr, 0xA003}, {PML4Addr + 8, 0},
		{PDPTAddr, 0xB003}, {PDPTAddr + 24, 0xE003}, {PDPTAddr + 32, 0},
		{PDAddr, 0x83}, {PDAddr + 8, 0x200083}, {PDAddr + 2047*8, 0xFFE00083},
	}
	for _, p := range pt {
		if got := le.Uint64(mem.read(p.addr, 8)); got != p.want {
			t.Errorf("page table entry at %#x = %#x, want %#x", p.addr, got, p.want)
		}
	}

	// Reset vector: mov al,1; mov dx,0x600; out dx,al; hlt; jmp $-3.
	if got := mem.read(0xFFFF0, 16); !bytes.Equal(got, []byte{0xB0, 1, 0xBA, 0x00, 0x06, 0xEE, 0xF4, 0xEB, 0xFD, 0, 0, 0, 0, 0, 0, 0}) {
		t.Errorf("reset vector = % x", got)
	}

	want := kvmstate.Regs{RIP: 0x100200, RSI: 0x7000, RSP: 0x8FF0, RBP: 0x8FF0, RFLAGS: 2}
	if e.Regs != want {
		t.Errorf("Regs = %+v, want %+v", e.Regs, want)
	}
}

func TestApplySregs64(t *testing.T) {
	mem := newSparseMem(64 << 20)
	o := defaultBz()
	o.prefAddress, o.initSize = 0x100000, 0x100000
	e, err := Setup(mem, Config{Kernel: makeBzImage(o), MemSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	s := kvmstate.Sregs{CR0: 0x60000010, APICBase: 0xFEE00900, CR8: 3}
	e.ApplySregs(&s)
	code := kvmstate.Segment{Base: 0, Limit: 0xFFFFFFFF, Selector: 8, Type: 0xB, Present: 1, DPL: 0, DB: 0, S: 1, L: 1, G: 1}
	data := kvmstate.Segment{Base: 0, Limit: 0xFFFFFFFF, Selector: 0x10, Type: 0x3, Present: 1, DB: 1, S: 1, G: 1}
	tss := kvmstate.Segment{Base: 0, Limit: 0xFFFFFFFF, Selector: 0x18, Type: 0xB, Present: 1, S: 0, G: 1}
	if s.CS != code {
		t.Errorf("CS = %+v, want %+v", s.CS, code)
	}
	for name, seg := range map[string]kvmstate.Segment{"DS": s.DS, "ES": s.ES, "FS": s.FS, "GS": s.GS, "SS": s.SS} {
		if seg != data {
			t.Errorf("%s = %+v, want %+v", name, seg, data)
		}
	}
	if s.TR != tss {
		t.Errorf("TR = %+v, want %+v", s.TR, tss)
	}
	if s.GDT.Base != 0x500 || s.GDT.Limit != 31 || s.IDT.Base != 0x520 || s.IDT.Limit != 0 {
		t.Errorf("GDT %+v IDT %+v", s.GDT, s.IDT)
	}
	if s.CR0 != 0x80000011 || s.CR3 != 0x9000 || s.CR4 != 0x20 || s.EFER != 0x500 {
		t.Errorf("CR0 %#x CR3 %#x CR4 %#x EFER %#x", s.CR0, s.CR3, s.CR4, s.EFER)
	}
	if s.APICBase != 0xFEE00900 || s.CR8 != 3 {
		t.Errorf("ApplySregs changed APIC base or CR8")
	}
}

func TestSegmentFromDescriptor(t *testing.T) {
	// Base 0x12345678, limit 0xABCDE, G=0, DPL 3, AVL, not present.
	d := uint64(0x12)<<56 | uint64(0x1)<<52 | uint64(0xA)<<48 | uint64(0x6)<<44 | uint64(0x3)<<40 | uint64(0x345678)<<16 | 0xBCDE
	got := SegmentFromDescriptor(0x2B, d)
	want := kvmstate.Segment{Base: 0x12345678, Limit: 0xABCDE, Selector: 0x2B, Type: 3, S: 0, DPL: 3, Present: 0, AVL: 1, Unusable: 1}
	if got != want {
		t.Errorf("SegmentFromDescriptor = %+v, want %+v", got, want)
	}
}

func TestSetupPVH(t *testing.T) {
	const memSize = 128 << 20
	text := patternBytes(3000, 0x33)
	img := makeELF([]elfSeg{
		{typ: ptLoad, paddr: 0x100_0000, data: text, memsz: 0x3000},
		{typ: ptNote, data: pvhNote(0x100_0123, 8)},
	})
	mem := newSparseMem(memSize)
	// Dirty the bss to prove Load zero-fills it.
	mem.WriteAt(bytes.Repeat([]byte{0xEE}, 0x3000), 0x100_0000)
	initrd := patternBytes(5000, 1)
	e, err := Setup(mem, Config{Kernel: img, Initrd: initrd, Cmdline: "console=hvc0", MemSize: memSize, RSDP: 0xE0000})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	if got := mem.read(0x100_0000, 0x3000); !bytes.Equal(got[:3000], text) || !bytes.Equal(got[3000:], make([]byte, 0x3000-3000)) {
		t.Errorf("segment not loaded with a zeroed bss")
	}
	want := kvmstate.Regs{RIP: 0x100_0123, RBX: 0x6000, RFLAGS: 2}
	if e.Regs != want {
		t.Errorf("Regs = %+v, want %+v", e.Regs, want)
	}
	si := mem.read(StartInfoAddr, 56)
	fields := []struct {
		name string
		got  uint64
		want uint64
	}{
		{"magic", uint64(le.Uint32(si[0:])), 0x336ec578},
		{"version", uint64(le.Uint32(si[4:])), 1},
		{"flags", uint64(le.Uint32(si[8:])), 0},
		{"nr_modules", uint64(le.Uint32(si[12:])), 1},
		{"modlist_paddr", le.Uint64(si[16:]), 0x6040},
		{"cmdline_paddr", le.Uint64(si[24:]), 0x20000},
		{"rsdp_paddr", le.Uint64(si[32:]), 0xE0000},
		{"memmap_paddr", le.Uint64(si[40:]), PVHMemmapAddr},
		{"memmap_entries", uint64(le.Uint32(si[48:])), 4},
	}
	for _, f := range fields {
		if f.got != f.want {
			t.Errorf("start_info %s = %#x, want %#x", f.name, f.got, f.want)
		}
	}
	mod := mem.read(ModlistAddr, 32)
	if le.Uint64(mod[0:]) != e.InitrdAddr || le.Uint64(mod[8:]) != 5000 || e.InitrdAddr != (memSize-5000)&^0xFFF {
		t.Errorf("module 0 = %x, initrd at %#x", mod, e.InitrdAddr)
	}
	mm := mem.read(PVHMemmapAddr, 4*24)
	for i, want := range E820Map(memSize) {
		r := mm[i*24:]
		if le.Uint64(r) != want.Addr || le.Uint64(r[8:]) != want.Size || le.Uint32(r[16:]) != want.Type {
			t.Errorf("memmap[%d] = % x, want %+v", i, r[:24], want)
		}
	}
	if gdt := mem.read(GDTAddr+8, 24); le.Uint64(gdt) != 0x00CF9B000000FFFF || le.Uint64(gdt[16:]) != 0x0000_8B00_0000_0067 {
		t.Errorf("PVH GDT = % x", gdt)
	}
	var s kvmstate.Sregs
	e.ApplySregs(&s)
	if s.CS.L != 0 || s.CS.DB != 1 || s.CS.Limit != 0xFFFFFFFF || s.TR.Limit != 0x67 || s.TR.G != 0 || s.TR.Type != 0xB {
		t.Errorf("PVH CS %+v TR %+v", s.CS, s.TR)
	}
	if s.CR0 != CR0PE|CR0ET || s.CR4 != 0 || s.EFER != 0 || s.CR3 != 0 {
		t.Errorf("PVH CR0 %#x CR4 %#x EFER %#x CR3 %#x", s.CR0, s.CR4, s.EFER, s.CR3)
	}
}

func TestSetupErrors(t *testing.T) {
	bz := makeBzImage(defaultBz()) // needs RAM up to 24 MiB
	pvh := makeELF([]elfSeg{{typ: ptLoad, paddr: 0x100_0000, data: []byte{1}, memsz: 0x10000}, {typ: ptNote, data: pvhNote(0x100_0000, 4)}})
	lowMaxBz := func() []byte {
		o := defaultBz()
		o.initrdAddrMax = 0x1FF_FFFF // 32 MiB - 1
		return makeBzImage(o)
	}()
	tests := []struct {
		name    string
		cfg     Config
		want    error
		message string
	}{
		{"cmdline at bzImage limit", Config{Kernel: bz, MemSize: 64 << 20, Cmdline: strings.Repeat("a", 2047)}, nil, ""},
		{"cmdline over bzImage limit", Config{Kernel: bz, MemSize: 64 << 20, Cmdline: strings.Repeat("a", 2048)}, ErrCmdlineTooLong, "2048 bytes, the limit is 2047"},
		{"cmdline at 4095", Config{Kernel: pvh, MemSize: 64 << 20, Cmdline: strings.Repeat("a", 4095)}, nil, ""},
		{"cmdline over 4095", Config{Kernel: pvh, MemSize: 64 << 20, Cmdline: strings.Repeat("a", 4096)}, ErrCmdlineTooLong, "4096 bytes, the limit is 4095"},
		{"cmdline NUL", Config{Kernel: pvh, MemSize: 64 << 20, Cmdline: "a\x00b"}, nil, "NUL byte at 1"},
		{"initrd too big", Config{Kernel: bz, MemSize: 64 << 20, Initrd: make([]byte, 40<<20+1)}, ErrInitrdTooBig, "41943041 bytes do not fit between the kernel's end 0x1800000 and 0x4000000"},
		{"initrd just fits", Config{Kernel: bz, MemSize: 64 << 20, Initrd: make([]byte, 40<<20)}, nil, ""},
		{"initrd over initrd_addr_max", Config{Kernel: lowMaxBz, MemSize: 64 << 20, Initrd: make([]byte, 9<<20)}, ErrInitrdTooBig, "and 0x2000000"},
		{"initrd bigger than RAM", Config{Kernel: pvh, MemSize: 64 << 20, Initrd: make([]byte, 65<<20)}, ErrInitrdTooBig, ""},
		{"kernel beyond RAM", Config{Kernel: bz, MemSize: 16 << 20}, ErrNoRoom, "needs RAM up to 0x1800000, the guest's low RAM ends at 0x1000000"},
		{"tiny memory", Config{Kernel: bz, MemSize: 1 << 20}, ErrMemSize, "need more than 1 MiB"},
		{"bad kernel", Config{Kernel: []byte("hello"), MemSize: 64 << 20}, ErrUnknownKernel, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Setup(newSparseMem(tc.cfg.MemSize), tc.cfg)
			if tc.want == nil && tc.message == "" {
				if err != nil {
					t.Fatalf("Setup: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Setup succeeded, want %v", tc.want)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("error = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q does not mention %q", err, tc.message)
			}
		})
	}
}

func TestSetupHighMemory(t *testing.T) {
	// 5 GiB: the initrd stays below 3 GiB and the e820 map has a high entry.
	mem := newSparseMem(5 << 30)
	o := defaultBz()
	o.initrdAddrMax = 0xFFFF_FFFF
	e, err := Setup(mem, Config{Kernel: makeBzImage(o), Initrd: make([]byte, 4096), MemSize: 5 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if e.InitrdAddr != LowRAMLimit-4096 {
		t.Errorf("initrd at %#x, want %#x", e.InitrdAddr, LowRAMLimit-4096)
	}
	if n := mem.read(ZeroPageAddr+0x1E8, 1)[0]; n != 5 {
		t.Errorf("e820_entries = %d, want 5", n)
	}
	// initrd_addr_max 0x7FFFFFFF caps it below 2 GiB on 3 GiB of RAM.
	e, err = Setup(newSparseMem(3<<30), Config{Kernel: makeBzImage(defaultBz()), Initrd: make([]byte, 100), MemSize: 3 << 30})
	if err != nil || e.InitrdAddr != 0x8000_0000-4096 {
		t.Errorf("initrd at %#x (%v), want 0x7ffff000", e.InitrdAddr, err)
	}
}

func TestBootMSRs(t *testing.T) {
	seen := map[uint32]uint64{}
	for _, m := range BootMSRs() {
		if _, dup := seen[m.Index]; dup {
			t.Errorf("MSR %#x listed twice", m.Index)
		}
		seen[m.Index] = m.Value
	}
	if len(seen) != 11 || seen[0x1A0] != 1 || seen[0x2FF] != 0x806 || seen[0x10] != 0 {
		t.Errorf("BootMSRs = %v", seen)
	}
}
