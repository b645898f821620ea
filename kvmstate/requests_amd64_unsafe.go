package kvmstate

import "unsafe"

// Request numbers, built like the kernel's macros from the size of the Go
// mirror struct: a mirror that drifts in size gives a different number, which
// the kernel rejects with ENOTTY instead of copying the wrong amount.
// layout_test.go compares every one with <linux/kvm.h>.

// System (/dev/kvm) requests.
var (
	kvmGetAPIVersion     = _IO("KVM_GET_API_VERSION", 0x00)
	kvmCreateVM          = _IO("KVM_CREATE_VM", 0x01)
	kvmGetMSRIndexList   = _IOWR("KVM_GET_MSR_INDEX_LIST", 0x02, unsafe.Sizeof(msrListHeader{}))
	kvmCheckExtension    = _IO("KVM_CHECK_EXTENSION", 0x03)
	kvmGetVCPUMmapSize   = _IO("KVM_GET_VCPU_MMAP_SIZE", 0x04)
	kvmGetSupportedCPUID = _IOWR("KVM_GET_SUPPORTED_CPUID", 0x05, unsafe.Sizeof(cpuid2Header{}))
)

// VM requests.
var (
	kvmCreateVCPU          = _IO("KVM_CREATE_VCPU", 0x41)
	kvmGetDirtyLog         = _IOW("KVM_GET_DIRTY_LOG", 0x42, unsafe.Sizeof(dirtyLog{}))
	kvmSetUserMemoryRegion = _IOW("KVM_SET_USER_MEMORY_REGION", 0x46, unsafe.Sizeof(userspaceMemoryRegion{}))
	kvmSetTSSAddr          = _IO("KVM_SET_TSS_ADDR", 0x47)
	kvmSetIdentityMapAddr  = _IOW("KVM_SET_IDENTITY_MAP_ADDR", 0x48, unsafe.Sizeof(uint64(0)))
	kvmCreateIRQChip       = _IO("KVM_CREATE_IRQCHIP", 0x60)
	kvmIRQLine             = _IOW("KVM_IRQ_LINE", 0x61, unsafe.Sizeof(irqLevel{}))
	kvmGetIRQChip          = _IOWR("KVM_GET_IRQCHIP", 0x62, unsafe.Sizeof(IRQChip{}))
	kvmSetIRQChip          = _IOR("KVM_SET_IRQCHIP", 0x63, unsafe.Sizeof(IRQChip{})) // _IOR in the kernel header too
	kvmIRQFD               = _IOW("KVM_IRQFD", 0x76, unsafe.Sizeof(irqfd{}))
	kvmCreatePIT2          = _IOW("KVM_CREATE_PIT2", 0x77, unsafe.Sizeof(pitConfig{}))
	kvmIOEventFD           = _IOW("KVM_IOEVENTFD", 0x79, unsafe.Sizeof(ioeventfd{}))
	kvmSetClock            = _IOW("KVM_SET_CLOCK", 0x7b, unsafe.Sizeof(ClockData{}))
	kvmGetClock            = _IOR("KVM_GET_CLOCK", 0x7c, unsafe.Sizeof(ClockData{}))
	kvmGetPIT2             = _IOR("KVM_GET_PIT2", 0x9f, unsafe.Sizeof(PITState2{}))
	kvmSetPIT2             = _IOW("KVM_SET_PIT2", 0xa0, unsafe.Sizeof(PITState2{}))
)

// vCPU requests.
var (
	kvmRun           = _IO("KVM_RUN", 0x80)
	kvmGetRegs       = _IOR("KVM_GET_REGS", 0x81, unsafe.Sizeof(Regs{}))
	kvmSetRegs       = _IOW("KVM_SET_REGS", 0x82, unsafe.Sizeof(Regs{}))
	kvmGetSregs      = _IOR("KVM_GET_SREGS", 0x83, unsafe.Sizeof(Sregs{}))
	kvmSetSregs      = _IOW("KVM_SET_SREGS", 0x84, unsafe.Sizeof(Sregs{}))
	kvmGetMSRs       = _IOWR("KVM_GET_MSRS", 0x88, unsafe.Sizeof(msrsHeader{}))
	kvmSetMSRs       = _IOW("KVM_SET_MSRS", 0x89, unsafe.Sizeof(msrsHeader{}))
	kvmGetFPU        = _IOR("KVM_GET_FPU", 0x8c, unsafe.Sizeof(FPU{}))
	kvmSetFPU        = _IOW("KVM_SET_FPU", 0x8d, unsafe.Sizeof(FPU{}))
	kvmGetLAPIC      = _IOR("KVM_GET_LAPIC", 0x8e, unsafe.Sizeof(LAPICState{}))
	kvmSetLAPIC      = _IOW("KVM_SET_LAPIC", 0x8f, unsafe.Sizeof(LAPICState{}))
	kvmSetCPUID2     = _IOW("KVM_SET_CPUID2", 0x90, unsafe.Sizeof(cpuid2Header{}))
	kvmGetCPUID2     = _IOWR("KVM_GET_CPUID2", 0x91, unsafe.Sizeof(cpuid2Header{}))
	kvmGetMPState    = _IOR("KVM_GET_MP_STATE", 0x98, unsafe.Sizeof(MPState(0)))
	kvmSetMPState    = _IOW("KVM_SET_MP_STATE", 0x99, unsafe.Sizeof(MPState(0)))
	kvmGetVCPUEvents = _IOR("KVM_GET_VCPU_EVENTS", 0x9f, unsafe.Sizeof(VCPUEvents{}))
	kvmSetVCPUEvents = _IOW("KVM_SET_VCPU_EVENTS", 0xa0, unsafe.Sizeof(VCPUEvents{}))
	kvmGetDebugRegs  = _IOR("KVM_GET_DEBUGREGS", 0xa1, unsafe.Sizeof(DebugRegs{}))
	kvmSetDebugRegs  = _IOW("KVM_SET_DEBUGREGS", 0xa2, unsafe.Sizeof(DebugRegs{}))
	kvmSetTSCKHz     = _IO("KVM_SET_TSC_KHZ", 0xa2)
	kvmGetTSCKHz     = _IO("KVM_GET_TSC_KHZ", 0xa3)
	kvmGetXSAVE      = _IOR("KVM_GET_XSAVE", 0xa4, unsafe.Sizeof(xsaveLegacy{}))
	kvmSetXSAVE      = _IOW("KVM_SET_XSAVE", 0xa5, unsafe.Sizeof(xsaveLegacy{}))
	kvmGetXCRS       = _IOR("KVM_GET_XCRS", 0xa6, unsafe.Sizeof(XCRS{}))
	kvmSetXCRS       = _IOW("KVM_SET_XCRS", 0xa7, unsafe.Sizeof(XCRS{}))
	kvmKVMClockCtrl  = _IO("KVM_KVMCLOCK_CTRL", 0xad)
	kvmGetXSAVE2     = _IOR("KVM_GET_XSAVE2", 0xcf, unsafe.Sizeof(xsaveLegacy{}))
	kvmSetDeviceAttr = _IOW("KVM_SET_DEVICE_ATTR", 0xe1, unsafe.Sizeof(deviceAttr{}))
	kvmGetDeviceAttr = _IOW("KVM_GET_DEVICE_ATTR", 0xe2, unsafe.Sizeof(deviceAttr{}))
	kvmHasDeviceAttr = _IOW("KVM_HAS_DEVICE_ATTR", 0xe3, unsafe.Sizeof(deviceAttr{}))
)

// xsaveLegacy is struct kvm_xsave without its flexible tail: the 4096-byte
// legacy region that KVM_GET_XSAVE fills and whose size every XSAVE request
// encodes, whatever the real buffer size.
type xsaveLegacy [1024]uint32
