package acpi

import (
	"encoding/binary"
	"fmt"
)

// Resource is one resource descriptor inside a ResourceTemplate (ACPI 6.5 §6.4).
type Resource interface {
	// AppendResource appends the descriptor's bytes to b.
	AppendResource(b []byte) ([]byte, error)
}

// ResourceTemplate is ResourceTemplate() { descriptors… }: a Buffer holding
// the descriptors and an End Tag with checksum 0 (meaning "not checksummed").
type ResourceTemplate []Resource

// AppendAML implements Term.
func (r ResourceTemplate) AppendAML(b []byte) ([]byte, error) {
	var data []byte
	var err error
	for _, d := range r {
		if d == nil {
			return nil, fmt.Errorf("%w: nil resource descriptor", ErrAML)
		}
		if data, err = d.AppendResource(data); err != nil {
			return nil, err
		}
	}
	data = append(data, 0x79, 0x00) // End Tag
	inner, err := Integer(len(data)).AppendAML(nil)
	if err != nil {
		return nil, err
	}
	return appendPkg(append(b, opBuffer), append(inner, data...))
}

// Memory32Fixed is a 32-bit fixed memory range descriptor.
type Memory32Fixed struct {
	Writable     bool
	Base, Length uint32
}

// AppendResource implements Resource.
func (m Memory32Fixed) AppendResource(b []byte) ([]byte, error) {
	var info byte
	if m.Writable {
		info = 1
	}
	b = append(b, 0x86, 9, 0, info)
	b = binary.LittleEndian.AppendUint32(b, m.Base)
	return binary.LittleEndian.AppendUint32(b, m.Length), nil
}

// IO is an I/O port descriptor with 16-bit decode: IO(Decode16, Min, Max, Align, Length).
type IO struct {
	Min, Max      uint16
	Align, Length uint8
}

// AppendResource implements Resource.
func (p IO) AppendResource(b []byte) ([]byte, error) {
	if p.Min > p.Max {
		return nil, fmt.Errorf("%w: IO range minimum %#x above maximum %#x", ErrAML, p.Min, p.Max)
	}
	b = append(b, 0x47, 1) // decode16
	b = binary.LittleEndian.AppendUint16(b, p.Min)
	b = binary.LittleEndian.AppendUint16(b, p.Max)
	return append(b, p.Align, p.Length), nil
}

// Interrupt is an Extended Interrupt descriptor:
// Interrupt(Consumer|Producer, Edge|Level, ActiveLow|ActiveHigh, Shared|Exclusive) { GSIs }.
type Interrupt struct {
	Consumer  bool
	Edge      bool
	ActiveLow bool
	Shared    bool
	GSIs      []uint32 // 1 to 255 interrupts
}

// AppendResource implements Resource.
func (i Interrupt) AppendResource(b []byte) ([]byte, error) {
	if len(i.GSIs) == 0 || len(i.GSIs) > 255 {
		return nil, fmt.Errorf("%w: interrupt descriptor with %d interrupts, want 1 to 255", ErrAML, len(i.GSIs))
	}
	var flags byte
	for bit, set := range []bool{i.Consumer, i.Edge, i.ActiveLow, i.Shared} {
		if set {
			flags |= 1 << bit
		}
	}
	b = append(b, 0x89)
	b = binary.LittleEndian.AppendUint16(b, uint16(2+4*len(i.GSIs)))
	b = append(b, flags, byte(len(i.GSIs)))
	for _, g := range i.GSIs {
		b = binary.LittleEndian.AppendUint32(b, g)
	}
	return b, nil
}

// VirtioMMIO returns the DSDT device for virtio-mmio transport number index
// (0–999, named V000…V999) with its 4 KiB-aligned register window at addr
// and an edge-triggered, active-high interrupt on gsi. Linux's virtio_mmio
// driver binds to _HID "LNRO0005". The encoding matches Firecracker's
// byte for byte (kvm-x86-brief.md §2.4).
func VirtioMMIO(index int, addr, size uint64, gsi uint32) (Device, error) {
	if index < 0 || index > 999 {
		return Device{}, fmt.Errorf("acpi: virtio-mmio device index %d is not 0–999", index)
	}
	if size == 0 || size > 1<<32 || addr > 1<<32-size {
		return Device{}, fmt.Errorf("acpi: virtio-mmio window [%#x, +%#x) is not below 4 GiB", addr, size)
	}
	return Device{
		Path: fmt.Sprintf("V%03d", index),
		Body: []Term{
			Name{Path: "_HID", Value: String("LNRO0005")},
			Name{Path: "_UID", Value: DWord(index)},
			Name{Path: "_CCA", Value: Integer(1)},
			Name{Path: "_CRS", Value: ResourceTemplate{
				Memory32Fixed{Writable: true, Base: uint32(addr), Length: uint32(size)},
				Interrupt{Consumer: true, Edge: true, GSIs: []uint32{gsi}},
			}},
		},
	}, nil
}
