package kvmstate

// APIVersion is the only KVM API version chsnap speaks (KVM_API_VERSION);
// Open refuses any other.
const APIVersion = 12

// Capabilities for CheckExtension (KVM_CAP_*). System.CheckExtension asks
// /dev/kvm; VM.CheckExtension asks a VM, which can answer differently
// (KVM_CAP_XSAVE2 in particular is meaningful only on a VM).
const (
	CapIRQChip               = 0
	CapUserMemory            = 3
	CapSetTSSAddr            = 4
	CapExtCPUID              = 7
	CapNrVCPUs               = 9  // recommended maximum vCPUs per VM
	CapNrMemslots            = 10 // maximum memory slots per VM
	CapMPState               = 14
	CapSyncMMU               = 16
	CapIRQRouting            = 25
	CapIRQFD                 = 32
	CapPIT2                  = 33
	CapPITState2             = 35
	CapIOEventFD             = 36
	CapAdjustClock           = 39 // returns the KVM_CLOCK_* flags KVM_GET_CLOCK can report
	CapVCPUEvents            = 41
	CapDebugRegs             = 50
	CapXSAVE                 = 55
	CapXCRS                  = 56
	CapTSCControl            = 60
	CapGetTSCKHz             = 61
	CapMaxVCPUs              = 66
	CapTSCDeadlineTimer      = 72
	CapKVMClockCtrl          = 76
	CapReadonlyMem           = 81
	CapSplitIRQChip          = 121
	CapX2APICAPI             = 129
	CapImmediateExit         = 136
	CapManualDirtyLogProtect = 168 // KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2
	CapXSAVE2                = 208 // on a VM fd: the KVM_GET_XSAVE2 buffer size
	CapVMTSCControl          = 214
)

// Exit reasons read from the run page by VCPU.ExitReason (KVM_EXIT_*).
const (
	ExitUnknown       = 0
	ExitException     = 1
	ExitIO            = 2
	ExitHypercall     = 3
	ExitDebug         = 4
	ExitHLT           = 5
	ExitMMIO          = 6
	ExitIRQWindowOpen = 7
	ExitShutdown      = 8 // triple fault
	ExitFailEntry     = 9
	ExitIntr          = 10
	ExitSetTPR        = 11
	ExitTPRAccess     = 12
	ExitNMI           = 16
	ExitInternalError = 17
	ExitSystemEvent   = 24
	ExitIOAPICEOI     = 26
	ExitHyperV        = 27
	ExitX86RDMSR      = 29
	ExitX86WRMSR      = 30
	ExitDirtyRingFull = 31
	ExitAPResetHold   = 32
	ExitX86BusLock    = 33
	ExitNotify        = 37
)

// kvm_run.io.direction values (KVM_EXIT_IO_IN, KVM_EXIT_IO_OUT).
const (
	ioIn  = 0
	ioOut = 1
)

// System event types reported by VCPU.SystemEvent (KVM_SYSTEM_EVENT_*).
const (
	SystemEventShutdown = 1
	SystemEventReset    = 2
	SystemEventCrash    = 3
	SystemEventWakeup   = 4
	SystemEventSuspend  = 5
	SystemEventSEVTerm  = 6
)

// Internal error sub-reasons reported by VCPU.InternalError
// (KVM_INTERNAL_ERROR_*).
const (
	InternalErrorEmulation    = 1 // KVM could not emulate an instruction
	InternalErrorSimulEx      = 2 // exception while delivering an exception
	InternalErrorDeliveryEv   = 3 // event delivery failed (e.g. on an MMIO page)
	InternalErrorUnexpectedEx = 4
)

// Memory slot flags for VM.SetUserMemoryRegion (KVM_MEM_*).
const (
	MemLogDirtyPages = 1 << 0
	MemReadonly      = 1 << 1
)

// PITSpeakerDummy is the VM.CreatePIT2 flag (KVM_PIT_SPEAKER_DUMMY) that
// makes KVM emulate port 0x61 (the PC speaker / PIT gate) as a dummy device,
// so the guest's PIT calibration reads do not exit to chsnap.
const PITSpeakerDummy = 1

// Flags of the irqfd and ioeventfd requests.
const (
	irqfdFlagDeassign = 1 << 0 // KVM_IRQFD_FLAG_DEASSIGN

	ioeventfdFlagDatamatch = 1 << 0 // KVM_IOEVENTFD_FLAG_DATAMATCH
	ioeventfdFlagPIO       = 1 << 1 // KVM_IOEVENTFD_FLAG_PIO
	ioeventfdFlagDeassign  = 1 << 2 // KVM_IOEVENTFD_FLAG_DEASSIGN
)
