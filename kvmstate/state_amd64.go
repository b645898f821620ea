package kvmstate

// This file holds the Go mirrors of the x86 KVM state structs from
// <asm/kvm.h> and <linux/kvm.h>. layout_test.go checks every size and field
// offset against the C headers. Fields the kernel may give meaning to later
// (reserved arrays) are kept as named fields so that a get → set round trip
// preserves them; pure alignment padding is written as _.

// FPU mirrors struct kvm_fpu: the x87/SSE state in FXSAVE layout.
type FPU struct {
	FPR        [8][16]byte
	FCW        uint16
	FSW        uint16
	FTWX       uint8 // abridged tag word, as FXSAVE stores it
	_          uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        [16][16]byte
	MXCSR      uint32
	_          uint32
}

// LAPICState mirrors struct kvm_lapic_state: the local APIC's 1 KiB register
// page, laid out as the xAPIC MMIO page (register at offset off holds its
// 32-bit value in bytes off..off+3).
type LAPICState [1024]byte

// Offsets of local APIC registers within LAPICState (Intel SDM vol. 3,
// table "Local APIC Register Address Map").
const (
	LAPICRegID       = 0x20  // APIC ID (bits 24–31 in xAPIC mode)
	LAPICRegVersion  = 0x30  // version and max LVT entry
	LAPICRegTPR      = 0x80  // task priority
	LAPICRegSpurious = 0xF0  // spurious interrupt vector; bit 8 enables the APIC
	LAPICRegLVTTimer = 0x320 // LVT timer
	LAPICRegLVT0     = 0x350 // LVT LINT0
	LAPICRegLVT1     = 0x360 // LVT LINT1
	LAPICRegLVTError = 0x370 // LVT error
)

// Get32 returns the 32-bit register at byte offset off (little-endian). An
// offset that is not 4-byte aligned or lies past the page reads as 0.
func (s *LAPICState) Get32(off uint32) uint32 {
	if off%4 != 0 || off > uint32(len(s))-4 {
		return 0
	}
	return uint32(s[off]) | uint32(s[off+1])<<8 | uint32(s[off+2])<<16 | uint32(s[off+3])<<24
}

// Set32 stores v into the 32-bit register at byte offset off and reports
// whether off was valid (4-byte aligned and inside the page); an invalid
// offset changes nothing.
func (s *LAPICState) Set32(off uint32, v uint32) bool {
	if off%4 != 0 || off > uint32(len(s))-4 {
		return false
	}
	s[off], s[off+1], s[off+2], s[off+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	return true
}

// MSREntry mirrors struct kvm_msr_entry: one model-specific register.
type MSREntry struct {
	Index uint32
	_     uint32
	Data  uint64
}

// CPUIDEntry mirrors struct kvm_cpuid_entry2: the output of CPUID for one
// (Function, Index) input pair.
type CPUIDEntry struct {
	Function uint32
	Index    uint32
	Flags    uint32 // CPUIDFlag…
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
	_        [3]uint32
}

// CPUIDEntry.Flags bits (KVM_CPUID_FLAG_*).
const (
	// CPUIDFlagSignificantIndex says Index selects a sub-leaf (ECX input).
	CPUIDFlagSignificantIndex = 1 << 0
	// CPUIDFlagStatefulFunc and CPUIDFlagStateReadNext are obsolete (leaf 2 on old CPUs).
	CPUIDFlagStatefulFunc  = 1 << 1
	CPUIDFlagStateReadNext = 1 << 2
)

// MPState mirrors struct kvm_mp_state: a vCPU's multiprocessing state.
type MPState uint32

// MPState values (KVM_MP_STATE_*) that apply to x86.
const (
	MPStateRunnable      MPState = 0
	MPStateUninitialized MPState = 1 // an AP waiting for INIT
	MPStateInitReceived  MPState = 2 // an AP waiting for SIPI
	MPStateHalted        MPState = 3
	MPStateSIPIReceived  MPState = 4
	MPStateAPResetHold   MPState = 9 // SEV-ES AP reset hold
	MPStateSuspended     MPState = 10
)

// VCPUEvents mirrors struct kvm_vcpu_events: pending and injected
// exceptions, interrupts, NMI and SMI, and the interrupt shadow.
type VCPUEvents struct {
	Exception  VCPUEventsException
	Interrupt  VCPUEventsInterrupt
	NMI        VCPUEventsNMI
	SIPIVector uint32
	// Flags (VCPUEventValid…) says which optional fields KVM_SET_VCPU_EVENTS applies.
	Flags       uint32
	SMI         VCPUEventsSMI
	TripleFault VCPUEventsTripleFault
	Reserved    [26]uint8
	// ExceptionHasPayload and ExceptionPayload need KVM_CAP_EXCEPTION_PAYLOAD.
	ExceptionHasPayload uint8
	ExceptionPayload    uint64
}

// VCPUEventsException is the exception part of struct kvm_vcpu_events.
type VCPUEventsException struct {
	Injected     uint8
	Nr           uint8
	HasErrorCode uint8
	Pending      uint8
	ErrorCode    uint32
}

// VCPUEventsInterrupt is the interrupt part of struct kvm_vcpu_events.
type VCPUEventsInterrupt struct {
	Injected uint8
	Nr       uint8
	Soft     uint8
	Shadow   uint8 // KVM_X86_SHADOW_INT_MOV_SS (1) | KVM_X86_SHADOW_INT_STI (2)
}

// VCPUEventsNMI is the NMI part of struct kvm_vcpu_events.
type VCPUEventsNMI struct {
	Injected uint8
	Pending  uint8
	Masked   uint8
	_        uint8
}

// VCPUEventsSMI is the SMI part of struct kvm_vcpu_events.
type VCPUEventsSMI struct {
	SMM          uint8
	Pending      uint8
	SMMInsideNMI uint8
	LatchedInit  uint8
}

// VCPUEventsTripleFault is the triple_fault part of struct kvm_vcpu_events.
type VCPUEventsTripleFault struct {
	Pending uint8
}

// VCPUEvents.Flags bits (KVM_VCPUEVENT_VALID_*).
const (
	VCPUEventValidNMIPending  = 0x01
	VCPUEventValidSIPIVector  = 0x02
	VCPUEventValidShadow      = 0x04
	VCPUEventValidSMM         = 0x08
	VCPUEventValidPayload     = 0x10
	VCPUEventValidTripleFault = 0x20
)

// DebugRegs mirrors struct kvm_debugregs: DR0–DR3, DR6 and DR7.
// KVM_SET_DEBUGREGS requires Flags to be 0.
type DebugRegs struct {
	DB       [4]uint64
	DR6      uint64
	DR7      uint64
	Flags    uint64
	Reserved [9]uint64
}

// XCR mirrors struct kvm_xcr: one extended control register (XCR0 is index 0).
type XCR struct {
	XCR   uint32
	_     uint32
	Value uint64
}

// XCRS mirrors struct kvm_xcrs: the extended control registers of a vCPU.
// KVM_SET_XCRS requires Flags to be 0.
type XCRS struct {
	NrXCRS  uint32
	Flags   uint32
	XCRS    [16]XCR // KVM_MAX_XCRS
	Padding [16]uint64
}

// ClockData mirrors struct kvm_clock_data: the VM's kvmclock.
type ClockData struct {
	// Clock is the kvmclock value in nanoseconds.
	Clock uint64
	// Flags (ClockTSCStable, ClockRealtime, ClockHostTSC) says which fields KVM filled.
	Flags    uint32
	_        uint32
	Realtime uint64 // host CLOCK_REALTIME in ns when Flags has ClockRealtime
	HostTSC  uint64 // host TSC when Flags has ClockHostTSC
	_        [4]uint32
}

// ClockData.Flags bits (KVM_CLOCK_*).
const (
	ClockTSCStable = 2
	ClockRealtime  = 1 << 2
	ClockHostTSC   = 1 << 3
)

// PITChannelState mirrors struct kvm_pit_channel_state: one i8254 counter.
type PITChannelState struct {
	Count         uint32 // can be 65536
	LatchedCount  uint16
	CountLatched  uint8
	StatusLatched uint8
	Status        uint8
	ReadState     uint8
	WriteState    uint8
	WriteLatch    uint8
	RWMode        uint8
	Mode          uint8
	BCD           uint8
	Gate          uint8
	CountLoadTime int64 // host ktime (ns) when Count was loaded
}

// PITState2 mirrors struct kvm_pit_state2: the in-kernel i8254 PIT.
type PITState2 struct {
	Channels [3]PITChannelState
	Flags    uint32 // PITFlagsHPETLegacy, PITFlagsSpeakerDataOn
	Reserved [9]uint32
}

// PITState2.Flags bits (KVM_PIT_FLAGS_*).
const (
	PITFlagsHPETLegacy    = 0x1
	PITFlagsSpeakerDataOn = 0x2
)

// IRQChip mirrors struct kvm_irqchip: the state of one in-kernel interrupt
// controller, selected by ChipID (PICMaster, PICSlave, IOAPIC). Chip holds
// struct kvm_pic_state (16 bytes) or struct kvm_ioapic_state (216 bytes) at
// its start; the rest of the 512-byte union is zero.
type IRQChip struct {
	ChipID uint32
	_      uint32
	Chip   [512]byte
}

// IRQChip.ChipID values (KVM_IRQCHIP_*).
const (
	PICMaster = 0
	PICSlave  = 1
	IOAPIC    = 2
)

// IOAPICNumPins is the number of redirection entries of KVM's IOAPIC
// (KVM_IOAPIC_NUM_PINS); GSIs 0–23.
const IOAPICNumPins = 24
