package acpi

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVirtioMMIOVector checks the device against the 71-byte vector in
// kvm-x86-brief.md §2.4 (Firecracker's encoding).
func TestVirtioMMIOVector(t *testing.T) {
	want := unhex(t, `
5B 82 45 04 56 30 30 30 08 5F 48 49 44 0D 4C 4E 52 4F 30 30 30 35 00 08 5F 55 49 44
0C 00 00 00 00 08 5F 43 43 41 01 08 5F 43 52 53 11 1A 0A 17 86 09 00 01 00 10 00 C0
00 10 00 00 89 06 00 03 01 05 00 00 00 79 00`)
	d, err := VirtioMMIO(0, 0xC000_1000, 0x1000, 5)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Encode(d)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != 71 || !bytes.Equal(got, want) {
		t.Errorf("VirtioMMIO =\n% X\nwant\n% X", got, want)
	}
}

func TestAMLEncodings(t *testing.T) {
	tests := []struct {
		name string
		term Term
		want string
	}{
		{"zero", Integer(0), "00"},
		{"one", Integer(1), "01"},
		{"byte", Integer(0x0F), "0A 0F"},
		{"word", Integer(0x3F8), "0B F8 03"},
		{"dword", Integer(0xFEC00000), "0C 00 00 C0 FE"},
		{"qword", Integer(0x1_0000_0000), "0E 00 00 00 00 01 00 00 00"},
		{"forced dword", DWord(1), "0C 01 00 00 00"},
		{"string", String("COM1"), "0D 43 4F 4D 31 00"},
		{"eisaid PNP0501", EISAID("PNP0501"), "0C 41 D0 05 01"},
		{"eisaid PNP0303", EISAID("PNP0303"), "0C 41 D0 03 03"},
		{"name root dual", Name{Path: `\_SB_.COM1`, Value: Integer(0)}, "08 5C 2E 5F 53 42 5F 43 4F 4D 31 00"},
		{"name padded", Name{Path: "_S5", Value: Integer(0)}, "08 5F 53 35 5F 00"},
		{"name multi", Name{Path: "A.B.C", Value: Integer(0)}, "08 2F 03 41 5F 5F 5F 42 5F 5F 5F 43 5F 5F 5F 00"},
		{"name parent", Name{Path: "^^ABCD", Value: Integer(0)}, "08 5E 5E 41 42 43 44 00"},
		{"package S5", Name{Path: `\_S5_`, Value: Package{Integer(5), Integer(5), Integer(0), Integer(0)}},
			"08 5C 5F 53 35 5F 12 08 04 0A 05 0A 05 00 00"},
		{"method STA", Method{Path: "_STA", Body: []Term{Return{Integer(0x0F)}}}, "14 09 5F 53 54 41 00 A4 0A 0F"},
		{"serialized method", Method{Path: "FOO", Args: 2, Serialized: true}, "14 06 46 4F 4F 5F 0A"},
		{"scope", Scope{Path: `\_SB_`}, "10 06 5C 5F 53 42 5F"},
		{"io", ResourceTemplate{IO{Min: 0x60, Max: 0x60, Align: 1, Length: 1}}, "11 0D 0A 0A 47 01 60 00 60 00 01 01 79 00"},
		{"interrupt level low shared", ResourceTemplate{Interrupt{Consumer: true, ActiveLow: true, Shared: true, GSIs: []uint32{9, 10}}},
			"11 12 0A 0F 89 0A 00 0D 02 09 00 00 00 0A 00 00 00 79 00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Encode(tc.term)
			if err != nil {
				t.Fatal(err)
			}
			if want := unhex(t, tc.want); !bytes.Equal(got, want) {
				t.Errorf("got % X, want % X", got, want)
			}
		})
	}
}

// TestPkgLength checks each PkgLength width at its boundaries: the length
// includes the PkgLength bytes themselves.
func TestPkgLength(t *testing.T) {
	tests := []struct {
		body int
		want []byte
	}{
		{0, []byte{0x01}},
		{62, []byte{0x3F}},
		{63, []byte{0x41, 0x04}},         // total 65 = 0x41
		{4093, []byte{0x4F, 0xFF}},       // total 4095
		{4094, []byte{0x81, 0x00, 0x01}}, // total 4097 = 0x1001
		{1<<20 - 4, []byte{0x8F, 0xFF, 0xFF}},
		{1<<20 - 3, []byte{0xC1, 0x00, 0x00, 0x01}}, // total 0x100001
	}
	for _, tc := range tests {
		got, err := appendPkg(nil, make([]byte, tc.body))
		if err != nil {
			t.Fatalf("body %d: %v", tc.body, err)
		}
		if !bytes.Equal(got[:len(tc.want)], tc.want) || len(got) != tc.body+len(tc.want) {
			t.Errorf("body %d: PkgLength % X (total %d), want % X", tc.body, got[:len(tc.want)], len(got), tc.want)
		}
	}
}

func TestAMLErrors(t *testing.T) {
	for name, term := range map[string]Term{
		"lower-case name": Name{Path: "_hid", Value: Integer(0)},
		"long segment":    Device{Path: "ABCDE"},
		"digit first":     Device{Path: "1ABC"},
		"empty segment":   Device{Path: `\_SB_..X`},
		"bad eisaid":      EISAID("PNP05G1"),
		"short eisaid":    EISAID("PNP"),
		"non-ascii":       String("caf\xc3\xa9"),
		"NUL in string":   String("a\x00"),
		"nil value":       Name{Path: "X"},
		"8 args":          Method{Path: "M", Args: 8},
		"no interrupts":   ResourceTemplate{Interrupt{}},
		"bad IO range":    ResourceTemplate{IO{Min: 2, Max: 1}},
		"nested error":    Scope{Path: "S", Body: []Term{Device{Path: "D", Body: []Term{Name{Path: "bad"}}}}},
	} {
		if _, err := Encode(term); !errors.Is(err, ErrAML) {
			t.Errorf("%s: error = %v, want ErrAML", name, err)
		}
	}
	if _, err := VirtioMMIO(1000, 0xC0000000, 0x1000, 5); err == nil {
		t.Errorf("VirtioMMIO(index 1000) succeeded")
	}
	if _, err := VirtioMMIO(0, 0xFFFF_F800, 0x1000, 5); err == nil {
		t.Errorf("VirtioMMIO(window across 4 GiB) succeeded")
	}
}
