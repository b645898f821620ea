package kvmstate

import "unsafe"

func size(group string, got uintptr, ctype string) layoutCheck {
	return layoutCheck{group: group, what: "size", got: uint64(got), cExpr: "sizeof(" + ctype + ")"}
}

func offset(group, field string, got uintptr, ctype, cfield string) layoutCheck {
	return layoutCheck{group: group, what: field + " offset", got: uint64(got), cExpr: "offsetof(" + ctype + ", " + cfield + ")"}
}

func constant[T ~int | ~uint32 | ~uint8](group, name string, got T, cname string) layoutCheck {
	return layoutCheck{group: group, what: name, got: uint64(got), cExpr: cname}
}

// layoutChecks lists every mirror struct's size and field offsets, the
// kvm_run offsets read by run.go and the constants copied from the headers.
// Blank (_) padding fields have no offset to take; the size and the next
// field's offset cover them.
func layoutChecks() []layoutCheck {
	var (
		regs   Regs
		seg    Segment
		dt     DTable
		sregs  Sregs
		fpu    FPU
		msr    MSREntry
		cpuid  CPUIDEntry
		ev     VCPUEvents
		dbg    DebugRegs
		xcr    XCR
		xcrs   XCRS
		clock  ClockData
		pitch  PITChannelState
		pit    PITState2
		chip   IRQChip
		mem    userspaceMemoryRegion
		irql   irqLevel
		irqf   irqfd
		ioev   ioeventfd
		pitcfg pitConfig
		dlog   dirtyLog
		attr   deviceAttr
		msrs   msrsBuf
		cpuid2 cpuid2Buf
		msrl   msrListBuf
	)
	const (
		cRegs  = "struct kvm_regs"
		cSeg   = "struct kvm_segment"
		cDT    = "struct kvm_dtable"
		cSregs = "struct kvm_sregs"
		cFPU   = "struct kvm_fpu"
		cEv    = "struct kvm_vcpu_events"
		cPitCh = "struct kvm_pit_channel_state"
		cRun   = "struct kvm_run"
	)
	c := []layoutCheck{
		size("Regs", unsafe.Sizeof(regs), cRegs),
		offset("Regs", "RAX", unsafe.Offsetof(regs.RAX), cRegs, "rax"),
		offset("Regs", "RBX", unsafe.Offsetof(regs.RBX), cRegs, "rbx"),
		offset("Regs", "RCX", unsafe.Offsetof(regs.RCX), cRegs, "rcx"),
		offset("Regs", "RDX", unsafe.Offsetof(regs.RDX), cRegs, "rdx"),
		offset("Regs", "RSI", unsafe.Offsetof(regs.RSI), cRegs, "rsi"),
		offset("Regs", "RDI", unsafe.Offsetof(regs.RDI), cRegs, "rdi"),
		offset("Regs", "RSP", unsafe.Offsetof(regs.RSP), cRegs, "rsp"),
		offset("Regs", "RBP", unsafe.Offsetof(regs.RBP), cRegs, "rbp"),
		offset("Regs", "R8", unsafe.Offsetof(regs.R8), cRegs, "r8"),
		offset("Regs", "R9", unsafe.Offsetof(regs.R9), cRegs, "r9"),
		offset("Regs", "R10", unsafe.Offsetof(regs.R10), cRegs, "r10"),
		offset("Regs", "R11", unsafe.Offsetof(regs.R11), cRegs, "r11"),
		offset("Regs", "R12", unsafe.Offsetof(regs.R12), cRegs, "r12"),
		offset("Regs", "R13", unsafe.Offsetof(regs.R13), cRegs, "r13"),
		offset("Regs", "R14", unsafe.Offsetof(regs.R14), cRegs, "r14"),
		offset("Regs", "R15", unsafe.Offsetof(regs.R15), cRegs, "r15"),
		offset("Regs", "RIP", unsafe.Offsetof(regs.RIP), cRegs, "rip"),
		offset("Regs", "RFLAGS", unsafe.Offsetof(regs.RFLAGS), cRegs, "rflags"),

		size("Segment", unsafe.Sizeof(seg), cSeg),
		offset("Segment", "Base", unsafe.Offsetof(seg.Base), cSeg, "base"),
		offset("Segment", "Limit", unsafe.Offsetof(seg.Limit), cSeg, "limit"),
		offset("Segment", "Selector", unsafe.Offsetof(seg.Selector), cSeg, "selector"),
		offset("Segment", "Type", unsafe.Offsetof(seg.Type), cSeg, "type"),
		offset("Segment", "Present", unsafe.Offsetof(seg.Present), cSeg, "present"),
		offset("Segment", "DPL", unsafe.Offsetof(seg.DPL), cSeg, "dpl"),
		offset("Segment", "DB", unsafe.Offsetof(seg.DB), cSeg, "db"),
		offset("Segment", "S", unsafe.Offsetof(seg.S), cSeg, "s"),
		offset("Segment", "L", unsafe.Offsetof(seg.L), cSeg, "l"),
		offset("Segment", "G", unsafe.Offsetof(seg.G), cSeg, "g"),
		offset("Segment", "AVL", unsafe.Offsetof(seg.AVL), cSeg, "avl"),
		offset("Segment", "Unusable", unsafe.Offsetof(seg.Unusable), cSeg, "unusable"),

		size("DTable", unsafe.Sizeof(dt), cDT),
		offset("DTable", "Base", unsafe.Offsetof(dt.Base), cDT, "base"),
		offset("DTable", "Limit", unsafe.Offsetof(dt.Limit), cDT, "limit"),

		size("Sregs", unsafe.Sizeof(sregs), cSregs),
		offset("Sregs", "CS", unsafe.Offsetof(sregs.CS), cSregs, "cs"),
		offset("Sregs", "DS", unsafe.Offsetof(sregs.DS), cSregs, "ds"),
		offset("Sregs", "ES", unsafe.Offsetof(sregs.ES), cSregs, "es"),
		offset("Sregs", "FS", unsafe.Offsetof(sregs.FS), cSregs, "fs"),
		offset("Sregs", "GS", unsafe.Offsetof(sregs.GS), cSregs, "gs"),
		offset("Sregs", "SS", unsafe.Offsetof(sregs.SS), cSregs, "ss"),
		offset("Sregs", "TR", unsafe.Offsetof(sregs.TR), cSregs, "tr"),
		offset("Sregs", "LDT", unsafe.Offsetof(sregs.LDT), cSregs, "ldt"),
		offset("Sregs", "GDT", unsafe.Offsetof(sregs.GDT), cSregs, "gdt"),
		offset("Sregs", "IDT", unsafe.Offsetof(sregs.IDT), cSregs, "idt"),
		offset("Sregs", "CR0", unsafe.Offsetof(sregs.CR0), cSregs, "cr0"),
		offset("Sregs", "CR2", unsafe.Offsetof(sregs.CR2), cSregs, "cr2"),
		offset("Sregs", "CR3", unsafe.Offsetof(sregs.CR3), cSregs, "cr3"),
		offset("Sregs", "CR4", unsafe.Offsetof(sregs.CR4), cSregs, "cr4"),
		offset("Sregs", "CR8", unsafe.Offsetof(sregs.CR8), cSregs, "cr8"),
		offset("Sregs", "EFER", unsafe.Offsetof(sregs.EFER), cSregs, "efer"),
		offset("Sregs", "APICBase", unsafe.Offsetof(sregs.APICBase), cSregs, "apic_base"),
		offset("Sregs", "InterruptBitmap", unsafe.Offsetof(sregs.InterruptBitmap), cSregs, "interrupt_bitmap"),
		size("Sregs", unsafe.Sizeof(sregs.InterruptBitmap), "((struct kvm_sregs *)0)->interrupt_bitmap"),

		size("FPU", unsafe.Sizeof(fpu), cFPU),
		offset("FPU", "FPR", unsafe.Offsetof(fpu.FPR), cFPU, "fpr"),
		offset("FPU", "FCW", unsafe.Offsetof(fpu.FCW), cFPU, "fcw"),
		offset("FPU", "FSW", unsafe.Offsetof(fpu.FSW), cFPU, "fsw"),
		offset("FPU", "FTWX", unsafe.Offsetof(fpu.FTWX), cFPU, "ftwx"),
		offset("FPU", "LastOpcode", unsafe.Offsetof(fpu.LastOpcode), cFPU, "last_opcode"),
		offset("FPU", "LastIP", unsafe.Offsetof(fpu.LastIP), cFPU, "last_ip"),
		offset("FPU", "LastDP", unsafe.Offsetof(fpu.LastDP), cFPU, "last_dp"),
		offset("FPU", "XMM", unsafe.Offsetof(fpu.XMM), cFPU, "xmm"),
		offset("FPU", "MXCSR", unsafe.Offsetof(fpu.MXCSR), cFPU, "mxcsr"),

		size("LAPICState", unsafe.Sizeof(LAPICState{}), "struct kvm_lapic_state"),
		constant("LAPICState", "len", len(LAPICState{}), "KVM_APIC_REG_SIZE"),

		size("MSREntry", unsafe.Sizeof(msr), "struct kvm_msr_entry"),
		offset("MSREntry", "Index", unsafe.Offsetof(msr.Index), "struct kvm_msr_entry", "index"),
		offset("MSREntry", "Data", unsafe.Offsetof(msr.Data), "struct kvm_msr_entry", "data"),

		size("msrsHeader", unsafe.Sizeof(msrsHeader{}), "struct kvm_msrs"),
		offset("msrsBuf", "nmsrs", unsafe.Offsetof(msrs.nmsrs), "struct kvm_msrs", "nmsrs"),
		offset("msrsBuf", "entries", unsafe.Offsetof(msrs.entries), "struct kvm_msrs", "entries"),

		size("CPUIDEntry", unsafe.Sizeof(cpuid), "struct kvm_cpuid_entry2"),
		offset("CPUIDEntry", "Function", unsafe.Offsetof(cpuid.Function), "struct kvm_cpuid_entry2", "function"),
		offset("CPUIDEntry", "Index", unsafe.Offsetof(cpuid.Index), "struct kvm_cpuid_entry2", "index"),
		offset("CPUIDEntry", "Flags", unsafe.Offsetof(cpuid.Flags), "struct kvm_cpuid_entry2", "flags"),
		offset("CPUIDEntry", "EAX", unsafe.Offsetof(cpuid.EAX), "struct kvm_cpuid_entry2", "eax"),
		offset("CPUIDEntry", "EBX", unsafe.Offsetof(cpuid.EBX), "struct kvm_cpuid_entry2", "ebx"),
		offset("CPUIDEntry", "ECX", unsafe.Offsetof(cpuid.ECX), "struct kvm_cpuid_entry2", "ecx"),
		offset("CPUIDEntry", "EDX", unsafe.Offsetof(cpuid.EDX), "struct kvm_cpuid_entry2", "edx"),
		constant("CPUIDEntry", "CPUIDFlagSignificantIndex", CPUIDFlagSignificantIndex, "KVM_CPUID_FLAG_SIGNIFCANT_INDEX"),
		constant("CPUIDEntry", "CPUIDFlagStatefulFunc", CPUIDFlagStatefulFunc, "KVM_CPUID_FLAG_STATEFUL_FUNC"),
		constant("CPUIDEntry", "CPUIDFlagStateReadNext", CPUIDFlagStateReadNext, "KVM_CPUID_FLAG_STATE_READ_NEXT"),

		size("cpuid2Header", unsafe.Sizeof(cpuid2Header{}), "struct kvm_cpuid2"),
		offset("cpuid2Buf", "nent", unsafe.Offsetof(cpuid2.nent), "struct kvm_cpuid2", "nent"),
		offset("cpuid2Buf", "entries", unsafe.Offsetof(cpuid2.entries), "struct kvm_cpuid2", "entries"),

		size("msrListHeader", unsafe.Sizeof(msrListHeader{}), "struct kvm_msr_list"),
		offset("msrListBuf", "indices", unsafe.Offsetof(msrl.indices), "struct kvm_msr_list", "indices"),

		size("MPState", unsafe.Sizeof(MPState(0)), "struct kvm_mp_state"),
		constant("MPState", "MPStateRunnable", MPStateRunnable, "KVM_MP_STATE_RUNNABLE"),
		constant("MPState", "MPStateUninitialized", MPStateUninitialized, "KVM_MP_STATE_UNINITIALIZED"),
		constant("MPState", "MPStateInitReceived", MPStateInitReceived, "KVM_MP_STATE_INIT_RECEIVED"),
		constant("MPState", "MPStateHalted", MPStateHalted, "KVM_MP_STATE_HALTED"),
		constant("MPState", "MPStateSIPIReceived", MPStateSIPIReceived, "KVM_MP_STATE_SIPI_RECEIVED"),
		constant("MPState", "MPStateAPResetHold", MPStateAPResetHold, "KVM_MP_STATE_AP_RESET_HOLD"),
		constant("MPState", "MPStateSuspended", MPStateSuspended, "KVM_MP_STATE_SUSPENDED"),

		size("VCPUEvents", unsafe.Sizeof(ev), cEv),
		offset("VCPUEvents", "Exception", unsafe.Offsetof(ev.Exception), cEv, "exception"),
		offset("VCPUEvents", "Exception.Injected", unsafe.Offsetof(ev.Exception)+unsafe.Offsetof(ev.Exception.Injected), cEv, "exception.injected"),
		offset("VCPUEvents", "Exception.Nr", unsafe.Offsetof(ev.Exception)+unsafe.Offsetof(ev.Exception.Nr), cEv, "exception.nr"),
		offset("VCPUEvents", "Exception.HasErrorCode", unsafe.Offsetof(ev.Exception)+unsafe.Offsetof(ev.Exception.HasErrorCode), cEv, "exception.has_error_code"),
		offset("VCPUEvents", "Exception.Pending", unsafe.Offsetof(ev.Exception)+unsafe.Offsetof(ev.Exception.Pending), cEv, "exception.pending"),
		offset("VCPUEvents", "Exception.ErrorCode", unsafe.Offsetof(ev.Exception)+unsafe.Offsetof(ev.Exception.ErrorCode), cEv, "exception.error_code"),
		offset("VCPUEvents", "Interrupt.Injected", unsafe.Offsetof(ev.Interrupt)+unsafe.Offsetof(ev.Interrupt.Injected), cEv, "interrupt.injected"),
		offset("VCPUEvents", "Interrupt.Nr", unsafe.Offsetof(ev.Interrupt)+unsafe.Offsetof(ev.Interrupt.Nr), cEv, "interrupt.nr"),
		offset("VCPUEvents", "Interrupt.Soft", unsafe.Offsetof(ev.Interrupt)+unsafe.Offsetof(ev.Interrupt.Soft), cEv, "interrupt.soft"),
		offset("VCPUEvents", "Interrupt.Shadow", unsafe.Offsetof(ev.Interrupt)+unsafe.Offsetof(ev.Interrupt.Shadow), cEv, "interrupt.shadow"),
		offset("VCPUEvents", "NMI.Injected", unsafe.Offsetof(ev.NMI)+unsafe.Offsetof(ev.NMI.Injected), cEv, "nmi.injected"),
		offset("VCPUEvents", "NMI.Pending", unsafe.Offsetof(ev.NMI)+unsafe.Offsetof(ev.NMI.Pending), cEv, "nmi.pending"),
		offset("VCPUEvents", "NMI.Masked", unsafe.Offsetof(ev.NMI)+unsafe.Offsetof(ev.NMI.Masked), cEv, "nmi.masked"),
		offset("VCPUEvents", "SIPIVector", unsafe.Offsetof(ev.SIPIVector), cEv, "sipi_vector"),
		offset("VCPUEvents", "Flags", unsafe.Offsetof(ev.Flags), cEv, "flags"),
		offset("VCPUEvents", "SMI.SMM", unsafe.Offsetof(ev.SMI)+unsafe.Offsetof(ev.SMI.SMM), cEv, "smi.smm"),
		offset("VCPUEvents", "SMI.Pending", unsafe.Offsetof(ev.SMI)+unsafe.Offsetof(ev.SMI.Pending), cEv, "smi.pending"),
		offset("VCPUEvents", "SMI.SMMInsideNMI", unsafe.Offsetof(ev.SMI)+unsafe.Offsetof(ev.SMI.SMMInsideNMI), cEv, "smi.smm_inside_nmi"),
		offset("VCPUEvents", "SMI.LatchedInit", unsafe.Offsetof(ev.SMI)+unsafe.Offsetof(ev.SMI.LatchedInit), cEv, "smi.latched_init"),
		offset("VCPUEvents", "TripleFault.Pending", unsafe.Offsetof(ev.TripleFault)+unsafe.Offsetof(ev.TripleFault.Pending), cEv, "triple_fault.pending"),
		offset("VCPUEvents", "Reserved", unsafe.Offsetof(ev.Reserved), cEv, "reserved"),
		offset("VCPUEvents", "ExceptionHasPayload", unsafe.Offsetof(ev.ExceptionHasPayload), cEv, "exception_has_payload"),
		offset("VCPUEvents", "ExceptionPayload", unsafe.Offsetof(ev.ExceptionPayload), cEv, "exception_payload"),
		constant("VCPUEvents", "VCPUEventValidNMIPending", VCPUEventValidNMIPending, "KVM_VCPUEVENT_VALID_NMI_PENDING"),
		constant("VCPUEvents", "VCPUEventValidSIPIVector", VCPUEventValidSIPIVector, "KVM_VCPUEVENT_VALID_SIPI_VECTOR"),
		constant("VCPUEvents", "VCPUEventValidShadow", VCPUEventValidShadow, "KVM_VCPUEVENT_VALID_SHADOW"),
		constant("VCPUEvents", "VCPUEventValidSMM", VCPUEventValidSMM, "KVM_VCPUEVENT_VALID_SMM"),
		constant("VCPUEvents", "VCPUEventValidPayload", VCPUEventValidPayload, "KVM_VCPUEVENT_VALID_PAYLOAD"),
		constant("VCPUEvents", "VCPUEventValidTripleFault", VCPUEventValidTripleFault, "KVM_VCPUEVENT_VALID_TRIPLE_FAULT"),

		size("DebugRegs", unsafe.Sizeof(dbg), "struct kvm_debugregs"),
		offset("DebugRegs", "DB", unsafe.Offsetof(dbg.DB), "struct kvm_debugregs", "db"),
		offset("DebugRegs", "DR6", unsafe.Offsetof(dbg.DR6), "struct kvm_debugregs", "dr6"),
		offset("DebugRegs", "DR7", unsafe.Offsetof(dbg.DR7), "struct kvm_debugregs", "dr7"),
		offset("DebugRegs", "Flags", unsafe.Offsetof(dbg.Flags), "struct kvm_debugregs", "flags"),
		offset("DebugRegs", "Reserved", unsafe.Offsetof(dbg.Reserved), "struct kvm_debugregs", "reserved"),

		size("XCR", unsafe.Sizeof(xcr), "struct kvm_xcr"),
		offset("XCR", "XCR", unsafe.Offsetof(xcr.XCR), "struct kvm_xcr", "xcr"),
		offset("XCR", "Value", unsafe.Offsetof(xcr.Value), "struct kvm_xcr", "value"),
		size("XCRS", unsafe.Sizeof(xcrs), "struct kvm_xcrs"),
		offset("XCRS", "NrXCRS", unsafe.Offsetof(xcrs.NrXCRS), "struct kvm_xcrs", "nr_xcrs"),
		offset("XCRS", "Flags", unsafe.Offsetof(xcrs.Flags), "struct kvm_xcrs", "flags"),
		offset("XCRS", "XCRS", unsafe.Offsetof(xcrs.XCRS), "struct kvm_xcrs", "xcrs"),
		offset("XCRS", "Padding", unsafe.Offsetof(xcrs.Padding), "struct kvm_xcrs", "padding"),
		constant("XCRS", "len(XCRS)", len(xcrs.XCRS), "KVM_MAX_XCRS"),

		size("xsaveLegacy", unsafe.Sizeof(xsaveLegacy{}), "struct kvm_xsave"),
		constant("xsaveLegacy", "legacyXSAVESize", legacyXSAVESize, "sizeof(struct kvm_xsave)"),

		size("ClockData", unsafe.Sizeof(clock), "struct kvm_clock_data"),
		offset("ClockData", "Clock", unsafe.Offsetof(clock.Clock), "struct kvm_clock_data", "clock"),
		offset("ClockData", "Flags", unsafe.Offsetof(clock.Flags), "struct kvm_clock_data", "flags"),
		offset("ClockData", "Realtime", unsafe.Offsetof(clock.Realtime), "struct kvm_clock_data", "realtime"),
		offset("ClockData", "HostTSC", unsafe.Offsetof(clock.HostTSC), "struct kvm_clock_data", "host_tsc"),
		constant("ClockData", "ClockTSCStable", ClockTSCStable, "KVM_CLOCK_TSC_STABLE"),
		constant("ClockData", "ClockRealtime", ClockRealtime, "KVM_CLOCK_REALTIME"),
		constant("ClockData", "ClockHostTSC", ClockHostTSC, "KVM_CLOCK_HOST_TSC"),

		size("PITChannelState", unsafe.Sizeof(pitch), cPitCh),
		offset("PITChannelState", "Count", unsafe.Offsetof(pitch.Count), cPitCh, "count"),
		offset("PITChannelState", "LatchedCount", unsafe.Offsetof(pitch.LatchedCount), cPitCh, "latched_count"),
		offset("PITChannelState", "CountLatched", unsafe.Offsetof(pitch.CountLatched), cPitCh, "count_latched"),
		offset("PITChannelState", "StatusLatched", unsafe.Offsetof(pitch.StatusLatched), cPitCh, "status_latched"),
		offset("PITChannelState", "Status", unsafe.Offsetof(pitch.Status), cPitCh, "status"),
		offset("PITChannelState", "ReadState", unsafe.Offsetof(pitch.ReadState), cPitCh, "read_state"),
		offset("PITChannelState", "WriteState", unsafe.Offsetof(pitch.WriteState), cPitCh, "write_state"),
		offset("PITChannelState", "WriteLatch", unsafe.Offsetof(pitch.WriteLatch), cPitCh, "write_latch"),
		offset("PITChannelState", "RWMode", unsafe.Offsetof(pitch.RWMode), cPitCh, "rw_mode"),
		offset("PITChannelState", "Mode", unsafe.Offsetof(pitch.Mode), cPitCh, "mode"),
		offset("PITChannelState", "BCD", unsafe.Offsetof(pitch.BCD), cPitCh, "bcd"),
		offset("PITChannelState", "Gate", unsafe.Offsetof(pitch.Gate), cPitCh, "gate"),
		offset("PITChannelState", "CountLoadTime", unsafe.Offsetof(pitch.CountLoadTime), cPitCh, "count_load_time"),

		size("PITState2", unsafe.Sizeof(pit), "struct kvm_pit_state2"),
		offset("PITState2", "Channels", unsafe.Offsetof(pit.Channels), "struct kvm_pit_state2", "channels"),
		offset("PITState2", "Flags", unsafe.Offsetof(pit.Flags), "struct kvm_pit_state2", "flags"),
		offset("PITState2", "Reserved", unsafe.Offsetof(pit.Reserved), "struct kvm_pit_state2", "reserved"),
		constant("PITState2", "PITFlagsHPETLegacy", PITFlagsHPETLegacy, "KVM_PIT_FLAGS_HPET_LEGACY"),
		constant("PITState2", "PITFlagsSpeakerDataOn", PITFlagsSpeakerDataOn, "KVM_PIT_FLAGS_SPEAKER_DATA_ON"),

		size("IRQChip", unsafe.Sizeof(chip), "struct kvm_irqchip"),
		offset("IRQChip", "ChipID", unsafe.Offsetof(chip.ChipID), "struct kvm_irqchip", "chip_id"),
		offset("IRQChip", "Chip", unsafe.Offsetof(chip.Chip), "struct kvm_irqchip", "chip"),
		size("IRQChip", unsafe.Sizeof(chip.Chip), "((struct kvm_irqchip *)0)->chip"),
		constant("IRQChip", "PICMaster", PICMaster, "KVM_IRQCHIP_PIC_MASTER"),
		constant("IRQChip", "PICSlave", PICSlave, "KVM_IRQCHIP_PIC_SLAVE"),
		constant("IRQChip", "IOAPIC", IOAPIC, "KVM_IRQCHIP_IOAPIC"),
		constant("IRQChip", "IOAPICNumPins", IOAPICNumPins, "KVM_IOAPIC_NUM_PINS"),

		size("userspaceMemoryRegion", unsafe.Sizeof(mem), "struct kvm_userspace_memory_region"),
		offset("userspaceMemoryRegion", "slot", unsafe.Offsetof(mem.slot), "struct kvm_userspace_memory_region", "slot"),
		offset("userspaceMemoryRegion", "flags", unsafe.Offsetof(mem.flags), "struct kvm_userspace_memory_region", "flags"),
		offset("userspaceMemoryRegion", "guestPhysAddr", unsafe.Offsetof(mem.guestPhysAddr), "struct kvm_userspace_memory_region", "guest_phys_addr"),
		offset("userspaceMemoryRegion", "memorySize", unsafe.Offsetof(mem.memorySize), "struct kvm_userspace_memory_region", "memory_size"),
		offset("userspaceMemoryRegion", "userspaceAddr", unsafe.Offsetof(mem.userspaceAddr), "struct kvm_userspace_memory_region", "userspace_addr"),
		constant("userspaceMemoryRegion", "MemLogDirtyPages", MemLogDirtyPages, "KVM_MEM_LOG_DIRTY_PAGES"),
		constant("userspaceMemoryRegion", "MemReadonly", MemReadonly, "KVM_MEM_READONLY"),

		size("irqLevel", unsafe.Sizeof(irql), "struct kvm_irq_level"),
		offset("irqLevel", "irq", unsafe.Offsetof(irql.irq), "struct kvm_irq_level", "irq"),
		offset("irqLevel", "level", unsafe.Offsetof(irql.level), "struct kvm_irq_level", "level"),

		size("irqfd", unsafe.Sizeof(irqf), "struct kvm_irqfd"),
		offset("irqfd", "fd", unsafe.Offsetof(irqf.fd), "struct kvm_irqfd", "fd"),
		offset("irqfd", "gsi", unsafe.Offsetof(irqf.gsi), "struct kvm_irqfd", "gsi"),
		offset("irqfd", "flags", unsafe.Offsetof(irqf.flags), "struct kvm_irqfd", "flags"),
		offset("irqfd", "resamplefd", unsafe.Offsetof(irqf.resamplefd), "struct kvm_irqfd", "resamplefd"),
		constant("irqfd", "irqfdFlagDeassign", irqfdFlagDeassign, "KVM_IRQFD_FLAG_DEASSIGN"),

		size("ioeventfd", unsafe.Sizeof(ioev), "struct kvm_ioeventfd"),
		offset("ioeventfd", "datamatch", unsafe.Offsetof(ioev.datamatch), "struct kvm_ioeventfd", "datamatch"),
		offset("ioeventfd", "addr", unsafe.Offsetof(ioev.addr), "struct kvm_ioeventfd", "addr"),
		offset("ioeventfd", "len", unsafe.Offsetof(ioev.len), "struct kvm_ioeventfd", "len"),
		offset("ioeventfd", "fd", unsafe.Offsetof(ioev.fd), "struct kvm_ioeventfd", "fd"),
		offset("ioeventfd", "flags", unsafe.Offsetof(ioev.flags), "struct kvm_ioeventfd", "flags"),
		constant("ioeventfd", "ioeventfdFlagDatamatch", ioeventfdFlagDatamatch, "KVM_IOEVENTFD_FLAG_DATAMATCH"),
		constant("ioeventfd", "ioeventfdFlagPIO", ioeventfdFlagPIO, "KVM_IOEVENTFD_FLAG_PIO"),
		constant("ioeventfd", "ioeventfdFlagDeassign", ioeventfdFlagDeassign, "KVM_IOEVENTFD_FLAG_DEASSIGN"),

		size("pitConfig", unsafe.Sizeof(pitcfg), "struct kvm_pit_config"),
		offset("pitConfig", "flags", unsafe.Offsetof(pitcfg.flags), "struct kvm_pit_config", "flags"),
		constant("pitConfig", "PITSpeakerDummy", PITSpeakerDummy, "KVM_PIT_SPEAKER_DUMMY"),

		size("dirtyLog", unsafe.Sizeof(dlog), "struct kvm_dirty_log"),
		offset("dirtyLog", "slot", unsafe.Offsetof(dlog.slot), "struct kvm_dirty_log", "slot"),
		offset("dirtyLog", "bitmap", unsafe.Offsetof(dlog.bitmap), "struct kvm_dirty_log", "dirty_bitmap"),

		size("deviceAttr", unsafe.Sizeof(attr), "struct kvm_device_attr"),
		offset("deviceAttr", "flags", unsafe.Offsetof(attr.flags), "struct kvm_device_attr", "flags"),
		offset("deviceAttr", "group", unsafe.Offsetof(attr.group), "struct kvm_device_attr", "group"),
		offset("deviceAttr", "attr", unsafe.Offsetof(attr.attr), "struct kvm_device_attr", "attr"),
		offset("deviceAttr", "addr", unsafe.Offsetof(attr.addr), "struct kvm_device_attr", "addr"),
		constant("deviceAttr", "vcpuTSCCtrl", vcpuTSCCtrl, "KVM_VCPU_TSC_CTRL"),
		constant("deviceAttr", "vcpuTSCOffset", vcpuTSCOffset, "KVM_VCPU_TSC_OFFSET"),

		size("kvm_run", runPageMinSize, cRun),
		offset("kvm_run", "immediate_exit", runImmediateExit, cRun, "immediate_exit"),
		offset("kvm_run", "exit_reason", runExitReason, cRun, "exit_reason"),
		offset("kvm_run", "io.direction", runIODirection, cRun, "io.direction"),
		offset("kvm_run", "io.size", runIOSize, cRun, "io.size"),
		offset("kvm_run", "io.port", runIOPort, cRun, "io.port"),
		offset("kvm_run", "io.count", runIOCount, cRun, "io.count"),
		offset("kvm_run", "io.data_offset", runIODataOffset, cRun, "io.data_offset"),
		offset("kvm_run", "mmio.phys_addr", runMMIOPhysAddr, cRun, "mmio.phys_addr"),
		offset("kvm_run", "mmio.data", runMMIOData, cRun, "mmio.data"),
		offset("kvm_run", "mmio.len", runMMIOLen, cRun, "mmio.len"),
		offset("kvm_run", "mmio.is_write", runMMIOIsWrite, cRun, "mmio.is_write"),
		offset("kvm_run", "fail_entry.hardware_entry_failure_reason", runFailEntryReason, cRun, "fail_entry.hardware_entry_failure_reason"),
		offset("kvm_run", "internal.suberror", runInternalSuberror, cRun, "internal.suberror"),
		offset("kvm_run", "internal.ndata", runInternalNData, cRun, "internal.ndata"),
		offset("kvm_run", "internal.data", runInternalData, cRun, "internal.data"),
		size("kvm_run", runInternalMaxData*8, "((struct kvm_run *)0)->internal.data"),
		offset("kvm_run", "system_event.type", runSystemEventType, cRun, "system_event.type"),
		offset("kvm_run", "system_event.flags", runSystemEventFlags, cRun, "system_event.flags"),
		offset("kvm_run", "eoi.vector", runEOIVector, cRun, "eoi.vector"),

		constant("API", "APIVersion", APIVersion, "KVM_API_VERSION"),
		constant("prctl", "archGetXCompSupp", archGetXCompSupp, "ARCH_GET_XCOMP_SUPP"),
		constant("prctl", "archReqXCompGuestPerm", archReqXCompGuestPerm, "ARCH_REQ_XCOMP_GUEST_PERM"),

		constant("IO", "ioIn", ioIn, "KVM_EXIT_IO_IN"),
		constant("IO", "ioOut", ioOut, "KVM_EXIT_IO_OUT"),
	}

	for _, k := range []struct {
		name  string
		got   int
		cname string
	}{
		{"CapIRQChip", CapIRQChip, "KVM_CAP_IRQCHIP"},
		{"CapUserMemory", CapUserMemory, "KVM_CAP_USER_MEMORY"},
		{"CapSetTSSAddr", CapSetTSSAddr, "KVM_CAP_SET_TSS_ADDR"},
		{"CapExtCPUID", CapExtCPUID, "KVM_CAP_EXT_CPUID"},
		{"CapNrVCPUs", CapNrVCPUs, "KVM_CAP_NR_VCPUS"},
		{"CapNrMemslots", CapNrMemslots, "KVM_CAP_NR_MEMSLOTS"},
		{"CapMPState", CapMPState, "KVM_CAP_MP_STATE"},
		{"CapSyncMMU", CapSyncMMU, "KVM_CAP_SYNC_MMU"},
		{"CapIRQRouting", CapIRQRouting, "KVM_CAP_IRQ_ROUTING"},
		{"CapIRQFD", CapIRQFD, "KVM_CAP_IRQFD"},
		{"CapPIT2", CapPIT2, "KVM_CAP_PIT2"},
		{"CapPITState2", CapPITState2, "KVM_CAP_PIT_STATE2"},
		{"CapIOEventFD", CapIOEventFD, "KVM_CAP_IOEVENTFD"},
		{"CapAdjustClock", CapAdjustClock, "KVM_CAP_ADJUST_CLOCK"},
		{"CapVCPUEvents", CapVCPUEvents, "KVM_CAP_VCPU_EVENTS"},
		{"CapDebugRegs", CapDebugRegs, "KVM_CAP_DEBUGREGS"},
		{"CapXSAVE", CapXSAVE, "KVM_CAP_XSAVE"},
		{"CapXCRS", CapXCRS, "KVM_CAP_XCRS"},
		{"CapTSCControl", CapTSCControl, "KVM_CAP_TSC_CONTROL"},
		{"CapGetTSCKHz", CapGetTSCKHz, "KVM_CAP_GET_TSC_KHZ"},
		{"CapMaxVCPUs", CapMaxVCPUs, "KVM_CAP_MAX_VCPUS"},
		{"CapTSCDeadlineTimer", CapTSCDeadlineTimer, "KVM_CAP_TSC_DEADLINE_TIMER"},
		{"CapKVMClockCtrl", CapKVMClockCtrl, "KVM_CAP_KVMCLOCK_CTRL"},
		{"CapReadonlyMem", CapReadonlyMem, "KVM_CAP_READONLY_MEM"},
		{"CapSplitIRQChip", CapSplitIRQChip, "KVM_CAP_SPLIT_IRQCHIP"},
		{"CapX2APICAPI", CapX2APICAPI, "KVM_CAP_X2APIC_API"},
		{"CapImmediateExit", CapImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"},
		{"CapManualDirtyLogProtect", CapManualDirtyLogProtect, "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2"},
		{"CapXSAVE2", CapXSAVE2, "KVM_CAP_XSAVE2"},
		{"CapVMTSCControl", CapVMTSCControl, "KVM_CAP_VM_TSC_CONTROL"},
	} {
		c = append(c, constant("Cap", k.name, k.got, k.cname))
	}
	for _, k := range []struct {
		name  string
		got   int
		cname string
	}{
		{"ExitUnknown", ExitUnknown, "KVM_EXIT_UNKNOWN"},
		{"ExitException", ExitException, "KVM_EXIT_EXCEPTION"},
		{"ExitIO", ExitIO, "KVM_EXIT_IO"},
		{"ExitHypercall", ExitHypercall, "KVM_EXIT_HYPERCALL"},
		{"ExitDebug", ExitDebug, "KVM_EXIT_DEBUG"},
		{"ExitHLT", ExitHLT, "KVM_EXIT_HLT"},
		{"ExitMMIO", ExitMMIO, "KVM_EXIT_MMIO"},
		{"ExitIRQWindowOpen", ExitIRQWindowOpen, "KVM_EXIT_IRQ_WINDOW_OPEN"},
		{"ExitShutdown", ExitShutdown, "KVM_EXIT_SHUTDOWN"},
		{"ExitFailEntry", ExitFailEntry, "KVM_EXIT_FAIL_ENTRY"},
		{"ExitIntr", ExitIntr, "KVM_EXIT_INTR"},
		{"ExitSetTPR", ExitSetTPR, "KVM_EXIT_SET_TPR"},
		{"ExitTPRAccess", ExitTPRAccess, "KVM_EXIT_TPR_ACCESS"},
		{"ExitNMI", ExitNMI, "KVM_EXIT_NMI"},
		{"ExitInternalError", ExitInternalError, "KVM_EXIT_INTERNAL_ERROR"},
		{"ExitSystemEvent", ExitSystemEvent, "KVM_EXIT_SYSTEM_EVENT"},
		{"ExitIOAPICEOI", ExitIOAPICEOI, "KVM_EXIT_IOAPIC_EOI"},
		{"ExitHyperV", ExitHyperV, "KVM_EXIT_HYPERV"},
		{"ExitX86RDMSR", ExitX86RDMSR, "KVM_EXIT_X86_RDMSR"},
		{"ExitX86WRMSR", ExitX86WRMSR, "KVM_EXIT_X86_WRMSR"},
		{"ExitDirtyRingFull", ExitDirtyRingFull, "KVM_EXIT_DIRTY_RING_FULL"},
		{"ExitAPResetHold", ExitAPResetHold, "KVM_EXIT_AP_RESET_HOLD"},
		{"ExitX86BusLock", ExitX86BusLock, "KVM_EXIT_X86_BUS_LOCK"},
		{"ExitNotify", ExitNotify, "KVM_EXIT_NOTIFY"},
		{"SystemEventShutdown", SystemEventShutdown, "KVM_SYSTEM_EVENT_SHUTDOWN"},
		{"SystemEventReset", SystemEventReset, "KVM_SYSTEM_EVENT_RESET"},
		{"SystemEventCrash", SystemEventCrash, "KVM_SYSTEM_EVENT_CRASH"},
		{"SystemEventWakeup", SystemEventWakeup, "KVM_SYSTEM_EVENT_WAKEUP"},
		{"SystemEventSuspend", SystemEventSuspend, "KVM_SYSTEM_EVENT_SUSPEND"},
		{"SystemEventSEVTerm", SystemEventSEVTerm, "KVM_SYSTEM_EVENT_SEV_TERM"},
		{"InternalErrorEmulation", InternalErrorEmulation, "KVM_INTERNAL_ERROR_EMULATION"},
		{"InternalErrorSimulEx", InternalErrorSimulEx, "KVM_INTERNAL_ERROR_SIMUL_EX"},
		{"InternalErrorDeliveryEv", InternalErrorDeliveryEv, "KVM_INTERNAL_ERROR_DELIVERY_EV"},
		{"InternalErrorUnexpectedEx", InternalErrorUnexpectedEx, "KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON"},
	} {
		c = append(c, constant("Exit", k.name, k.got, k.cname))
	}
	return c
}
