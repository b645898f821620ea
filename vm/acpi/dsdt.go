package acpi

import "fmt"

const dsdtRevision = 2 // 2 or more: 64-bit AML integers

// legacyDevices are the ISA devices chsnap emulates, as Firecracker
// describes them: the 8250 UART (COM1, port 0x3F8, IRQ 4) and the i8042
// keyboard controller (ports 0x60 and 0x64, IRQ 1; 0x64 is listed so
// Linux's i8042 driver finds its command port through PNP).
func legacyDevices() []Term {
	return []Term{
		Device{Path: "COM1", Body: []Term{
			Name{Path: "_HID", Value: EISAID("PNP0501")},
			Name{Path: "_UID", Value: Integer(0)},
			Name{Path: "_DDN", Value: String("COM1")},
			Name{Path: "_CRS", Value: ResourceTemplate{
				Interrupt{Consumer: true, Edge: true, GSIs: []uint32{4}},
				IO{Min: 0x3F8, Max: 0x3F8, Align: 1, Length: 8},
			}},
		}},
		Device{Path: "PS2_", Body: []Term{
			Name{Path: "_HID", Value: EISAID("PNP0303")},
			Method{Path: "_STA", Body: []Term{Return{Integer(0x0F)}}},
			Name{Path: "_CRS", Value: ResourceTemplate{
				IO{Min: 0x60, Max: 0x60, Align: 1, Length: 1},
				IO{Min: 0x64, Max: 0x64, Align: 1, Length: 1},
				Interrupt{Consumer: true, Edge: true, GSIs: []uint32{1}},
			}},
		}},
	}
}

// buildDSDT returns the DSDT: Scope(\_SB_) { COM1, PS2_, cfg.Devices… } and
// Name(\_S5_, Package{5, 5, 0, 0}), so Linux's S5 power-off writes SLP_TYP 5
// to the sleep control register.
func buildDSDT(cfg Config) ([]byte, error) {
	body := append(legacyDevices(), cfg.Devices...)
	aml, err := Encode(
		Scope{Path: `\_SB_`, Body: body},
		Name{Path: `\_S5_`, Value: Package{Integer(5), Integer(5), Integer(0), Integer(0)}},
	)
	if err != nil {
		return nil, fmt.Errorf("build DSDT: %w", err)
	}
	t := make([]byte, 36+len(aml))
	copy(t[36:], aml)
	putHeader(t, "DSDT", dsdtRevision)
	setChecksum(t, 9)
	return t, nil
}
