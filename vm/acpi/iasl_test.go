package acpi

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestIASLDisassembly checks that ACPICA's disassembler accepts every table
// with no warning or error and decodes the fields chsnap sets. The RSDP is
// left out: iasl's binary-file check reads a 4-byte signature and a length
// at offset 4, which an RSDP does not have ("RSD PTR "), so it refuses any
// standalone RSDP file; checkTables verifies the RSDP instead.
func TestIASLDisassembly(t *testing.T) {
	iasl, err := exec.LookPath("iasl")
	if err != nil {
		t.Skip("SKIP: iasl not found (apt-get install acpica-tools); ACPI tables not checked against ACPICA")
	}
	for _, n := range []int{1, 2, 8, 64} {
		t.Run(fmt.Sprintf("%dcpus", n), func(t *testing.T) {
			v0, err := VirtioMMIO(0, 0xC0001000, 0x1000, 5)
			if err != nil {
				t.Fatal(err)
			}
			v1, err := VirtioMMIO(1, 0xC0002000, 0x1000, 6)
			if err != nil {
				t.Fatal(err)
			}
			tb, err := Build(Config{APICIDs: SequentialAPICIDs(n), Devices: []Term{v0, v1}})
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			dsl := map[string]string{}
			for _, sig := range []string{"XSDT", "FACP", "APIC", "DSDT"} {
				if err := os.WriteFile(filepath.Join(dir, sig+".dat"), tb.Bytes(sig), 0o644); err != nil {
					t.Fatal(err)
				}
				cmd := exec.Command(iasl, "-d", sig+".dat")
				cmd.Dir = dir
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("iasl -d %s.dat: %v\n%s", sig, err, out)
				}
				if m := regexp.MustCompile(`(?i)(warning|error|remark|invalid|incorrect)`).Find(out); m != nil {
					t.Errorf("iasl -d %s.dat reported %q:\n%s", sig, m, out)
				}
				text, err := os.ReadFile(filepath.Join(dir, sig+".dsl"))
				if err != nil {
					t.Fatalf("iasl -d %s.dat wrote no .dsl: %v\n%s", sig, err, out)
				}
				dsl[sig] = string(text)
			}
			wants := map[string][]string{
				"XSDT": {
					fmt.Sprintf("ACPI Table Address   0 : %016X", tb.Tables[2].Addr),
					fmt.Sprintf("ACPI Table Address   1 : %016X", tb.Tables[3].Addr),
				},
				"FACP": {
					"Hardware Reduced (V5) : 1",
					"Reset Register Supported (V2) : 1",
					"8042 Present on ports 60/64 (V2) : 1",
					"VGA Not Present (V4) : 1",
					"Control Method Power Button (V1) : 1",
					"Control Method Sleep Button (V1) : 1",
					"Value to cause reset : 01",
					"FADT Minor Revision : 05",
					fmt.Sprintf("DSDT Address : %016X", tb.Tables[4].Addr),
					"Address : 0000000000000600",
					"Hypervisor ID : 4D5650414E534843", // "CHSNAPVM" little-endian
				},
				"APIC": {
					"Local Apic Address : FEE00000",
					"PC-AT Compatibility : 1",
					"Subtable Type : 01 [I/O APIC]",
					"Address : FEC00000",
					"Subtable Type : 02 [Interrupt Source Override]",
				},
				"DSDT": {
					`DefinitionBlock ("", "DSDT", 2, "CHSNAP", "CHSNAPVM", 0x00000001)`,
					"Scope (\\_SB)",
					"Device (COM1)",
					`EisaId ("PNP0501")`,
					`Name (_DDN, "COM1")`,
					"0x03F8,             // Range Minimum",
					"Device (PS2)",
					`EisaId ("PNP0303")`,
					"Return (0x0F)",
					"Device (V000)",
					"Device (V001)",
					`Name (_HID, "LNRO0005")`,
					"0xC0002000,         // Address Base",
					"0x00000006,",
					"Name (\\_S5, Package (0x04)  // _S5_: S5 System State",
				},
			}
			for sig, list := range wants {
				// iasl aligns the colon in a column; compare with runs of spaces collapsed.
				text := collapseSpaces(dsl[sig])
				for _, w := range list {
					if !strings.Contains(text, collapseSpaces(w)) {
						t.Errorf("%s disassembly lacks %q", sig, w)
					}
				}
			}
			if got := strings.Count(dsl["APIC"], "[Processor Local APIC]"); got != n {
				t.Errorf("APIC disassembly has %d Processor Local APIC entries, want %d", got, n)
			}
			last := fmt.Sprintf("Processor ID : %02X", n-1)
			if !strings.Contains(collapseSpaces(dsl["APIC"]), last) {
				t.Errorf("APIC disassembly lacks %q", last)
			}
		})
	}
}

var spaces = regexp.MustCompile(` +`)

func collapseSpaces(s string) string { return spaces.ReplaceAllString(s, " ") }
