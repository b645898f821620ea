package acpi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func sum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}

// madtEntry is a parsed MADT subtable.
type madtEntry struct {
	typ  byte
	body []byte
}

// parseMADT walks the MADT's subtables, failing on any bad length.
func parseMADT(t *testing.T, m []byte) (lapicAddr, flags uint32, entries []madtEntry) {
	t.Helper()
	if string(m[:4]) != "APIC" || int(binary.LittleEndian.Uint32(m[4:])) != len(m) {
		t.Fatalf("MADT header: sig %q length %d, table %d bytes", m[:4], binary.LittleEndian.Uint32(m[4:]), len(m))
	}
	lapicAddr, flags = binary.LittleEndian.Uint32(m[36:]), binary.LittleEndian.Uint32(m[40:])
	for p := m[44:]; len(p) > 0; {
		if len(p) < 2 || int(p[1]) < 2 || int(p[1]) > len(p) {
			t.Fatalf("MADT subtable with bad length at offset %d", len(m)-len(p))
		}
		entries = append(entries, madtEntry{p[0], p[:p[1]]})
		p = p[p[1]:]
	}
	return lapicAddr, flags, entries
}

func TestBuild(t *testing.T) {
	for _, n := range []int{1, 2, 8, 64} {
		t.Run(fmt.Sprintf("%dcpus", n), func(t *testing.T) {
			ids := SequentialAPICIDs(n)
			if n == 8 {
				ids = []uint32{0, 2, 4, 6, 8, 10, 12, 14} // sparse IDs pass through
			}
			tb, err := Build(Config{APICIDs: ids})
			if err != nil {
				t.Fatal(err)
			}
			checkTables(t, tb)
			_, _, entries := parseMADT(t, tb.Bytes("APIC"))
			var cpus int
			for _, e := range entries {
				if e.typ != madtTypeLAPIC {
					continue
				}
				if len(e.body) != 8 || e.body[2] != byte(cpus) || uint32(e.body[3]) != ids[cpus] || binary.LittleEndian.Uint32(e.body[4:]) != 1 {
					t.Errorf("LAPIC entry %d = % x, want UID %d APIC ID %d enabled", cpus, e.body, cpus, ids[cpus])
				}
				cpus++
			}
			if cpus != n {
				t.Errorf("%d LAPIC entries, want %d", cpus, n)
			}
			if want := 44 + 8*n + 12 + 10; len(tb.Bytes("APIC")) != want {
				t.Errorf("MADT is %d bytes, want %d", len(tb.Bytes("APIC")), want)
			}
		})
	}
}

// checkTables verifies checksums, lengths and the pointers between tables.
func checkTables(t *testing.T, tb *Tables) {
	t.Helper()
	le := binary.LittleEndian
	if tb.RSDP != tb.Base || tb.Base != DefaultBase || uint64(len(tb.Blob)) > TablesEnd-tb.Base {
		t.Errorf("RSDP %#x base %#x blob %d bytes", tb.RSDP, tb.Base, len(tb.Blob))
	}
	rsdp := tb.Bytes("RSDP")
	if string(rsdp[:8]) != "RSD PTR " || rsdp[15] != 2 || string(rsdp[9:15]) != OEMID || le.Uint32(rsdp[16:]) != 0 || le.Uint32(rsdp[20:]) != 36 {
		t.Errorf("RSDP = % x", rsdp)
	}
	if sum(rsdp[:20]) != 0 || sum(rsdp) != 0 {
		t.Errorf("RSDP checksums: first 20 bytes sum %d, all 36 sum %d", sum(rsdp[:20]), sum(rsdp))
	}
	for _, e := range tb.Tables {
		if e.Addr%16 != 0 {
			t.Errorf("%s at %#x is not 16-byte aligned", e.Signature, e.Addr)
		}
		if e.Signature == "RSDP" {
			continue
		}
		b := tb.Bytes(e.Signature)
		if string(b[:4]) != e.Signature || int(le.Uint32(b[4:])) != len(b) || sum(b) != 0 {
			t.Errorf("%s: signature %q length %d (of %d) checksum sum %d", e.Signature, b[:4], le.Uint32(b[4:]), len(b), sum(b))
		}
		if string(b[10:16]) != OEMID || string(b[16:24]) != OEMTableID {
			t.Errorf("%s: OEM %q %q", e.Signature, b[10:16], b[16:24])
		}
	}
	at := func(addr uint64, n int) []byte {
		if addr < tb.Base || addr+uint64(n) > tb.Base+uint64(len(tb.Blob)) {
			t.Fatalf("address %#x+%d outside the blob", addr, n)
		}
		return tb.Blob[addr-tb.Base:][:n]
	}
	xsdt := at(le.Uint64(rsdp[24:]), 52)
	if string(xsdt[:4]) != "XSDT" || string(at(le.Uint64(xsdt[36:]), 4)) != "FACP" || string(at(le.Uint64(xsdt[44:]), 4)) != "APIC" {
		t.Errorf("XSDT does not point at FACP and APIC")
	}
	fadt := tb.Bytes("FACP")
	if string(at(le.Uint64(fadt[140:]), 4)) != "DSDT" || le.Uint32(fadt[40:]) != 0 {
		t.Errorf("FADT X_DSDT %#x / DSDT %#x", le.Uint64(fadt[140:]), le.Uint32(fadt[40:]))
	}
}

func TestFADTFields(t *testing.T) {
	tb, err := Build(Config{APICIDs: SequentialAPICIDs(1)})
	if err != nil {
		t.Fatal(err)
	}
	f := tb.Bytes("FACP")
	le := binary.LittleEndian
	if len(f) != 276 || f[8] != 6 || f[131] != 5 {
		t.Errorf("FADT length %d revision %d.%d", len(f), f[8], f[131])
	}
	if got := le.Uint32(f[112:]); got != 1<<20|1<<10|1<<4|1<<5 {
		t.Errorf("FADT flags %#x", got)
	}
	if got := le.Uint16(f[109:]); got != 0x6 {
		t.Errorf("IAPC_BOOT_ARCH %#x, want 0x6 (8042, no VGA)", got)
	}
	io600 := []byte{1, 8, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0}
	for name, off := range map[string]int{"RESET_REG": 116, "SLEEP_CONTROL_REG": 244, "SLEEP_STATUS_REG": 256} {
		if !bytes.Equal(f[off:off+12], io600) {
			t.Errorf("%s = % x, want % x", name, f[off:off+12], io600)
		}
	}
	if f[128] != 1 || string(f[268:276]) != "CHSNAPVM" {
		t.Errorf("reset value %d, hypervisor id %q", f[128], f[268:276])
	}
	tb, err = Build(Config{APICIDs: SequentialAPICIDs(1), NoCMOSRTC: true, NoPIC: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := le.Uint16(tb.Bytes("FACP")[109:]); got != 0x26 {
		t.Errorf("NoCMOSRTC: IAPC_BOOT_ARCH %#x, want 0x26", got)
	}
	if _, flags, _ := parseMADT(t, tb.Bytes("APIC")); flags != 0 {
		t.Errorf("NoPIC: MADT flags %#x, want 0", flags)
	}
}

func TestMADTFields(t *testing.T) {
	tb, err := Build(Config{APICIDs: SequentialAPICIDs(2), IOAPICID: 3, IOAPICGSIBase: 0})
	if err != nil {
		t.Fatal(err)
	}
	lapic, flags, entries := parseMADT(t, tb.Bytes("APIC"))
	if lapic != 0xFEE00000 || flags != 1 {
		t.Errorf("LAPIC address %#x flags %#x", lapic, flags)
	}
	var types []byte
	for _, e := range entries {
		types = append(types, e.typ)
	}
	if !bytes.Equal(types, []byte{0, 0, 1, 2}) {
		t.Fatalf("subtable types % x, want 00 00 01 02", types)
	}
	io := entries[2].body
	if len(io) != 12 || io[2] != 3 || binary.LittleEndian.Uint32(io[4:]) != 0xFEC00000 || binary.LittleEndian.Uint32(io[8:]) != 0 {
		t.Errorf("IOAPIC entry % x", io)
	}
	iso := entries[3].body
	if !bytes.Equal(iso, []byte{2, 10, 0, 4, 4, 0, 0, 0, 0, 0}) {
		t.Errorf("override entry % x, want IRQ 4 → GSI 4 flags 0", iso)
	}
}

func TestBuildDeterministic(t *testing.T) {
	mk := func() []byte {
		d, err := VirtioMMIO(3, 0xC0004000, 0x1000, 8)
		if err != nil {
			t.Fatal(err)
		}
		tb, err := Build(Config{APICIDs: SequentialAPICIDs(4), Devices: []Term{d}})
		if err != nil {
			t.Fatal(err)
		}
		return tb.Blob
	}
	a, b := mk(), mk()
	if !bytes.Equal(a, b) {
		t.Errorf("two builds of the same config differ")
	}
	base, err := Build(Config{APICIDs: SequentialAPICIDs(4)})
	if err != nil {
		t.Fatal(err)
	}
	if len(a)-len(base.Blob) != 71 {
		t.Errorf("a virtio device adds %d bytes, want 71", len(a)-len(base.Blob))
	}
}

func TestBuildErrors(t *testing.T) {
	huge := Name{Path: "BIG_", Value: String(strings.Repeat("x", 140000))}
	tests := []struct {
		name    string
		cfg     Config
		want    error
		message string
	}{
		{"no cpus", Config{}, nil, "0 vCPUs, want 1 to 255"},
		{"256 cpus", Config{APICIDs: SequentialAPICIDs(256)}, nil, "256 vCPUs"},
		{"apic id 255", Config{APICIDs: []uint32{0, 255}}, nil, "vCPU 1 has APIC ID 255"},
		{"duplicate id", Config{APICIDs: []uint32{1, 1}}, nil, "vCPUs 0 and 1 have the same APIC ID 1"},
		{"misaligned base", Config{Base: 0xE0008, APICIDs: SequentialAPICIDs(1)}, nil, "base 0xe0008"},
		{"base below area", Config{Base: 0xA0000, APICIDs: SequentialAPICIDs(1)}, nil, "base 0xa0000"},
		{"dsdt too big", Config{APICIDs: SequentialAPICIDs(1), Devices: []Term{huge}}, ErrTooBig, "exceed the 131056 bytes from 0xe0000 to 0xffff0"},
		{"no room at end", Config{Base: 0xFFF00, APICIDs: SequentialAPICIDs(1)}, ErrTooBig, "exceed the 240 bytes"},
		{"bad device", Config{APICIDs: SequentialAPICIDs(1), Devices: []Term{Device{Path: "bad"}}}, ErrAML, "DSDT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(tc.cfg)
			if err == nil {
				t.Fatal("Build succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q does not mention %q", err, tc.message)
			}
		})
	}
}
