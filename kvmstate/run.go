package kvmstate

import (
	"encoding/binary"
	"fmt"
)

// Offsets in struct kvm_run (include/uapi/linux/kvm.h) that chsnap reads;
// layout_test.go checks each against offsetof. The exit union starts at 32.
const (
	runImmediateExit = 1
	runExitReason    = 8

	runIODirection  = 32
	runIOSize       = 33
	runIOPort       = 34
	runIOCount      = 36
	runIODataOffset = 40

	runMMIOPhysAddr = 32
	runMMIOData     = 40
	runMMIOLen      = 48
	runMMIOIsWrite  = 52

	runFailEntryReason = 32

	runInternalSuberror = 32
	runInternalNData    = 36
	runInternalData     = 40
	runInternalMaxData  = 16

	runSystemEventType  = 32
	runSystemEventFlags = 40

	runEOIVector = 32

	// runPageMinSize is sizeof(struct kvm_run); the mapping is at least this.
	runPageMinSize = 2352
)

// le reads little-endian fields of the run page.
var le = binary.LittleEndian

// ExitReason returns why the last Run returned (an Exit… constant), or
// ExitUnknown on a closed vCPU.
func (v *VCPU) ExitReason() uint32 {
	if len(v.run) < runPageMinSize {
		return ExitUnknown
	}
	return le.Uint32(v.run[runExitReason:])
}

// IOExit is a port I/O exit (ExitIO).
type IOExit struct {
	Out   bool   // the guest writes (OUT); false: it reads (IN)
	Size  uint8  // bytes per access: 1, 2 or 4
	Port  uint16 // the port of every access
	Count uint32 // accesses (more than 1 for rep ins/outs), each Size bytes of Data in turn
	// Data views Size*Count bytes in the run page: for IOOut the guest's
	// bytes, for IOIn where the result must be written before the next Run.
	// It is valid until the next Run or Close.
	Data []byte
}

// IO decodes a port I/O exit. It checks what the kernel wrote — the access
// size and that the data lies inside the mapping — and returns an error
// rather than a view outside the run page.
func (v *VCPU) IO() (IOExit, error) {
	if len(v.run) < runPageMinSize {
		return IOExit{}, fmt.Errorf("kvm: io exit: vcpu %d is closed", v.id)
	}
	dir := v.run[runIODirection]
	e := IOExit{
		Out:   dir == ioOut,
		Size:  v.run[runIOSize],
		Port:  le.Uint16(v.run[runIOPort:]),
		Count: le.Uint32(v.run[runIOCount:]),
	}
	switch e.Size {
	case 1, 2, 4:
	default:
		return IOExit{}, fmt.Errorf("kvm: io exit on port %#x: access size %d is not 1, 2 or 4", e.Port, e.Size)
	}
	if dir != ioIn && dir != ioOut {
		return IOExit{}, fmt.Errorf("kvm: io exit on port %#x: direction %d is not in or out", e.Port, dir)
	}
	off := le.Uint64(v.run[runIODataOffset:])
	n := uint64(e.Size) * uint64(e.Count) // at most 4 * (2^32-1): no overflow
	if e.Count == 0 || off < runPageMinSize || off > uint64(len(v.run)) || n > uint64(len(v.run))-off {
		return IOExit{}, fmt.Errorf("kvm: io exit on port %#x: %d bytes at offset %#x do not fit the %d-byte run mapping", e.Port, n, off, len(v.run))
	}
	e.Data = v.run[off : off+n : off+n]
	return e, nil
}

// MMIOExit is an MMIO exit (ExitMMIO).
type MMIOExit struct {
	Addr uint64 // guest-physical address
	// Data views the 1–8 bytes of the access in the run page: the guest's
	// bytes for a write, where the result goes for a read. It is valid until
	// the next Run or Close.
	Data    []byte
	IsWrite bool
}

// MMIO decodes an MMIO exit, checking that the length is 1–8.
func (v *VCPU) MMIO() (MMIOExit, error) {
	if len(v.run) < runPageMinSize {
		return MMIOExit{}, fmt.Errorf("kvm: mmio exit: vcpu %d is closed", v.id)
	}
	e := MMIOExit{
		Addr:    le.Uint64(v.run[runMMIOPhysAddr:]),
		IsWrite: v.run[runMMIOIsWrite] != 0,
	}
	n := le.Uint32(v.run[runMMIOLen:])
	if n == 0 || n > 8 {
		return MMIOExit{}, fmt.Errorf("kvm: mmio exit at %#x: length %d is not 1–8", e.Addr, n)
	}
	e.Data = v.run[runMMIOData : runMMIOData+n : runMMIOData+n]
	return e, nil
}

// SystemEventExit is a system event exit (ExitSystemEvent).
type SystemEventExit struct {
	Type  uint32 // SystemEventShutdown, SystemEventReset, …
	Flags uint64 // architecture flags (data[0] on kernels that report ndata)
}

// SystemEvent decodes a system event exit.
func (v *VCPU) SystemEvent() SystemEventExit {
	if len(v.run) < runPageMinSize {
		return SystemEventExit{}
	}
	return SystemEventExit{Type: le.Uint32(v.run[runSystemEventType:]), Flags: le.Uint64(v.run[runSystemEventFlags:])}
}

// InternalErrorExit is an internal error exit (ExitInternalError).
type InternalErrorExit struct {
	Suberror uint32 // InternalErrorEmulation, …
	// Data holds the up to 16 words of debug data KVM attached; for an
	// emulation failure they include the instruction bytes.
	Data []uint64
}

// InternalError decodes an internal error exit.
func (v *VCPU) InternalError() InternalErrorExit {
	if len(v.run) < runPageMinSize {
		return InternalErrorExit{}
	}
	e := InternalErrorExit{Suberror: le.Uint32(v.run[runInternalSuberror:])}
	n := min(le.Uint32(v.run[runInternalNData:]), runInternalMaxData)
	e.Data = make([]uint64, n)
	for i := range e.Data {
		e.Data[i] = le.Uint64(v.run[runInternalData+8*i:])
	}
	return e
}

// String formats the exit for an error message: the sub-reason and the data
// words in hex.
func (e InternalErrorExit) String() string {
	return fmt.Sprintf("suberror %d, data %#x", e.Suberror, e.Data)
}

// FailEntry returns the hardware's reason for a failed VM entry
// (ExitFailEntry; on Intel the VMX exit reason with bit 31 set).
func (v *VCPU) FailEntry() uint64 {
	if len(v.run) < runPageMinSize {
		return 0
	}
	return le.Uint64(v.run[runFailEntryReason:])
}

// IOAPICEOI returns the vector of an IOAPIC EOI exit (ExitIOAPICEOI, split
// irqchip only).
func (v *VCPU) IOAPICEOI() uint8 {
	if len(v.run) < runPageMinSize {
		return 0
	}
	return v.run[runEOIVector]
}
