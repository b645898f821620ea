package acpi

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Identification written into every table header.
const (
	OEMID           = "CHSNAP"   // 6 bytes
	OEMTableID      = "CHSNAPVM" // 8 bytes
	OEMRevision     = 1
	CreatorID       = "CHSN"
	CreatorRevision = 1
	// HypervisorVendorID is FADT "Hypervisor Vendor Identity".
	HypervisorVendorID = "CHSNAPVM"
)

// Guest-physical area the tables live in, and defaults.
const (
	// AreaStart and AreaEnd bound the BIOS area ACPICA scans for the RSDP
	// (ACPI_HI_RSDP_WINDOW_BASE, size 0x20000); vm/boot reserves it in e820.
	AreaStart = 0xE0000
	AreaEnd   = 0x100000
	// TablesEnd is where the tables must stop: the last 16 bytes of the
	// area are the x86 reset vector (F000:FFF0), where vm/boot puts a stub.
	TablesEnd = 0xFFFF0
	// DefaultBase is where Build places the blob when Config.Base is 0.
	DefaultBase = AreaStart
	// DefaultLAPICAddr and DefaultIOAPICAddr are the xAPIC and IOAPIC
	// register windows KVM's in-kernel irqchip emulates.
	DefaultLAPICAddr  = 0xFEE0_0000
	DefaultIOAPICAddr = 0xFEC0_0000
	// ResetPort is the I/O port of FADT RESET_REG, SLEEP_CONTROL_REG and
	// SLEEP_STATUS_REG. Writing ResetValue there resets the guest; writing
	// SleepS5Value (SLP_TYP 5 << 2 | SLP_EN) powers it off.
	ResetPort    = 0x600
	ResetValue   = 1
	SleepS5Value = 5<<2 | 1<<5
)

// ErrTooBig is returned when the tables do not fit between Base and TablesEnd.
var ErrTooBig = errors.New("acpi: tables do not fit in the BIOS area")

// Config describes the machine the tables present.
type Config struct {
	// Base is the guest-physical address the blob is copied to: 16-byte
	// aligned, within [AreaStart, TablesEnd). 0 means DefaultBase.
	Base uint64
	// APICIDs has the local APIC ID of each vCPU; vCPU i gets ACPI processor
	// UID i. 1 to 255 vCPUs, each ID below 255 (xAPIC).
	APICIDs []uint32
	// LAPICAddr is the local APIC address; 0 means DefaultLAPICAddr.
	LAPICAddr uint32
	// IOAPICAddr is the IOAPIC address; 0 means DefaultIOAPICAddr.
	IOAPICAddr uint32
	// IOAPICID is the IOAPIC's ID and IOAPICGSIBase its first GSI.
	IOAPICID      uint8
	IOAPICGSIBase uint32
	// NoPIC says the VM has no 8259 pair (a split irqchip); it clears the
	// MADT PCAT_COMPAT flag.
	NoPIC bool
	// NoCMOSRTC sets IAPC_BOOT_ARCH "CMOS RTC not present", which keeps
	// Linux from registering rtc_cmos. Set it when no RTC is emulated.
	NoCMOSRTC bool
	// Devices are extra AML terms placed in the DSDT's \_SB_ scope after
	// the legacy devices, e.g. from VirtioMMIO.
	Devices []Term
}

// SequentialAPICIDs returns APIC IDs 0..n-1, the usual numbering.
func SequentialAPICIDs(n int) []uint32 {
	ids := make([]uint32, max(n, 0))
	for i := range ids {
		ids[i] = uint32(i)
	}
	return ids
}

// Table locates one table in the blob.
type Table struct {
	Signature string // "RSDP" for the RSDP (whose signature is "RSD PTR ")
	Addr      uint64 // guest-physical
	Length    int
}

// Tables is the result of Build.
type Tables struct {
	// Base is the guest-physical address Blob must be copied to.
	Base uint64
	// Blob holds every table, RSDP first.
	Blob []byte
	// RSDP is the guest-physical address of the RSDP (equal to Base), for
	// boot_params.acpi_rsdp_addr and hvm_start_info.rsdp_paddr.
	RSDP uint64
	// Tables lists the tables in blob order: RSDP, XSDT, FACP, APIC, DSDT.
	Tables []Table
}

// Bytes returns the bytes of the table with signature sig ("RSDP", "XSDT",
// "FACP", "APIC" or "DSDT"), aliasing Blob, or nil.
func (t *Tables) Bytes(sig string) []byte {
	for _, e := range t.Tables {
		if e.Signature == sig {
			off := e.Addr - t.Base
			return t.Blob[off : off+uint64(e.Length)]
		}
	}
	return nil
}

// Build lays out and checksums the tables for cfg. Same Config, same bytes.
func Build(cfg Config) (*Tables, error) {
	base := cfg.Base
	if base == 0 {
		base = DefaultBase
	}
	if base < AreaStart || base >= TablesEnd || base%16 != 0 {
		return nil, fmt.Errorf("acpi: base %#x is not a 16-byte aligned address in [%#x, %#x)", base, AreaStart, TablesEnd)
	}
	madt, err := buildMADT(cfg)
	if err != nil {
		return nil, err
	}
	dsdt, err := buildDSDT(cfg)
	if err != nil {
		return nil, err
	}

	const rsdpLen, xsdtLen = 36, 36 + 2*8
	offRSDP := uint64(0)
	offXSDT := align16(offRSDP + rsdpLen)
	offFACP := align16(offXSDT + xsdtLen)
	offMADT := align16(offFACP + fadtLen)
	offDSDT := align16(offMADT + uint64(len(madt)))
	total := offDSDT + uint64(len(dsdt))
	if total > TablesEnd-base {
		return nil, fmt.Errorf("%w: %d bytes (DSDT %d, MADT %d) exceed the %d bytes from %#x to %#x",
			ErrTooBig, total, len(dsdt), len(madt), TablesEnd-base, base, TablesEnd)
	}

	blob := make([]byte, total)
	copy(blob[offFACP:], buildFADT(cfg, base+offDSDT))
	copy(blob[offMADT:], madt)
	copy(blob[offDSDT:], dsdt)
	xsdt := blob[offXSDT : offXSDT+xsdtLen]
	putHeader(xsdt, "XSDT", 1)
	binary.LittleEndian.PutUint64(xsdt[36:], base+offFACP)
	binary.LittleEndian.PutUint64(xsdt[44:], base+offMADT)
	setChecksum(xsdt, 9)
	putRSDP(blob[offRSDP:offRSDP+rsdpLen], base+offXSDT)

	return &Tables{
		Base: base,
		Blob: blob,
		RSDP: base + offRSDP,
		Tables: []Table{
			{"RSDP", base + offRSDP, rsdpLen},
			{"XSDT", base + offXSDT, xsdtLen},
			{"FACP", base + offFACP, fadtLen},
			{"APIC", base + offMADT, len(madt)},
			{"DSDT", base + offDSDT, len(dsdt)},
		},
	}, nil
}

func align16(n uint64) uint64 { return (n + 15) &^ 15 }

// putHeader fills the 36-byte system description table header except the
// checksum; the table's length is len(t).
func putHeader(t []byte, sig string, rev byte) {
	copy(t[0:4], sig)
	binary.LittleEndian.PutUint32(t[4:], uint32(len(t)))
	t[8] = rev
	copy(t[10:16], OEMID)
	copy(t[16:24], OEMTableID)
	binary.LittleEndian.PutUint32(t[24:], OEMRevision)
	copy(t[28:32], CreatorID)
	binary.LittleEndian.PutUint32(t[32:], CreatorRevision)
}

// setChecksum stores at b[at] the byte that makes b sum to 0 mod 256.
func setChecksum(b []byte, at int) {
	b[at] = 0
	var sum byte
	for _, c := range b {
		sum += c
	}
	b[at] = -sum
}

// putRSDP writes a revision 2 RSDP pointing at the XSDT (RsdtAddress 0):
// the first checksum covers bytes 0–19, the extended one all 36.
func putRSDP(r []byte, xsdt uint64) {
	copy(r[0:8], "RSD PTR ")
	copy(r[9:15], OEMID)
	r[15] = 2
	binary.LittleEndian.PutUint32(r[20:], uint32(len(r)))
	binary.LittleEndian.PutUint64(r[24:], xsdt)
	setChecksum(r[:20], 8)
	setChecksum(r, 32)
}
