package acpi

import "encoding/binary"

// FADT ("FACP") revision 6 layout (ACPI 6.5 §5.2.9, Table 5.9).
const (
	fadtLen           = 276
	fadtRevision      = 6
	fadtMinorRevision = 5
	fadtIAPCBootArch  = 109
	fadtFlags         = 112
	fadtResetReg      = 116
	fadtResetValue    = 128
	fadtMinorVersion  = 131
	fadtXDSDT         = 140
	fadtSleepControl  = 244
	fadtSleepStatus   = 256
	fadtHypervisorID  = 268
	bootArch8042      = 1 << 1
	bootArchNoVGA     = 1 << 2
	bootArchNoCMOSRTC = 1 << 5
	flagPwrButton     = 1 << 4
	flagSlpButton     = 1 << 5
	flagResetRegSup   = 1 << 10
	flagHWReducedACPI = 1 << 20
	gasSystemIO       = 1
	gasAccessByte     = 1
)

// buildFADT returns a hardware-reduced FADT: no PM1/GPE blocks, no SCI, no
// FACS; reset and sleep through I/O port ResetPort; the DSDT reached only
// through X_DSDT (the 32-bit DSDT field stays 0 so the two cannot disagree).
//
// IAPC_BOOT_ARCH: 8042 present (bit 1), so Linux probes the i8042 that
// chsnap emulates for reboot; VGA not present (bit 2); CMOS RTC not present
// (bit 5) only when cfg.NoCMOSRTC. PWR_BUTTON and SLP_BUTTON (bits 4, 5)
// say there are no fixed-feature buttons, which a HW-reduced FADT cannot
// have anyway.
func buildFADT(cfg Config, dsdt uint64) []byte {
	t := make([]byte, fadtLen)
	putHeader(t, "FACP", fadtRevision)
	le := binary.LittleEndian
	arch := uint16(bootArch8042 | bootArchNoVGA)
	if cfg.NoCMOSRTC {
		arch |= bootArchNoCMOSRTC
	}
	le.PutUint16(t[fadtIAPCBootArch:], arch)
	le.PutUint32(t[fadtFlags:], flagHWReducedACPI|flagResetRegSup|flagPwrButton|flagSlpButton)
	putGAS(t[fadtResetReg:], ResetPort)
	t[fadtResetValue] = ResetValue
	t[fadtMinorVersion] = fadtMinorRevision
	le.PutUint64(t[fadtXDSDT:], dsdt)
	putGAS(t[fadtSleepControl:], ResetPort)
	putGAS(t[fadtSleepStatus:], ResetPort)
	copy(t[fadtHypervisorID:], HypervisorVendorID)
	setChecksum(t, 9)
	return t
}

// putGAS writes a Generic Address Structure for an 8-bit I/O port.
func putGAS(g []byte, port uint64) {
	g[0] = gasSystemIO
	g[1] = 8 // bit width
	g[2] = 0 // bit offset
	g[3] = gasAccessByte
	binary.LittleEndian.PutUint64(g[4:], port)
}
