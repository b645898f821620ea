package kvmstate

import (
	"errors"
	"fmt"
	"runtime"
)

// The state methods below follow one pattern: the argument struct is
// heap-allocated and copied, so the kernel never sees a caller's memory, and
// every error names the ioctl. api.rst and Firecracker impose an order on
// them for save and restore (MP_STATE first on save, VCPU_EVENTS last;
// CPUID2 → MP_STATE → REGS → SREGS → XSAVE → XCRS → DEBUGREGS → LAPIC → MSRS
// → VCPU_EVENTS on restore); the vm package owns that order.

// Regs returns the general-purpose registers (KVM_GET_REGS).
func (v *VCPU) Regs() (Regs, error) {
	r := new(Regs)
	_, err := ioctlPtr(v.fd, kvmGetRegs, r)
	return *r, err
}

// SetRegs loads the general-purpose registers (KVM_SET_REGS). It clears any
// pending exception, so restore calls it before SetVCPUEvents.
func (v *VCPU) SetRegs(r *Regs) error {
	cp := new(Regs)
	*cp = *r
	_, err := ioctlPtr(v.fd, kvmSetRegs, cp)
	return err
}

// Sregs returns the segment, control and descriptor-table registers
// (KVM_GET_SREGS).
func (v *VCPU) Sregs() (Sregs, error) {
	s := new(Sregs)
	_, err := ioctlPtr(v.fd, kvmGetSregs, s)
	return *s, err
}

// SetSregs loads the segment, control and descriptor-table registers and the
// APIC base (KVM_SET_SREGS); restore calls it before SetLAPIC.
func (v *VCPU) SetSregs(s *Sregs) error {
	cp := new(Sregs)
	*cp = *s
	_, err := ioctlPtr(v.fd, kvmSetSregs, cp)
	return err
}

// FPU returns the x87/SSE state (KVM_GET_FPU). XSAVE covers the same state
// and more; FPU is for building boot state.
func (v *VCPU) FPU() (FPU, error) {
	f := new(FPU)
	_, err := ioctlPtr(v.fd, kvmGetFPU, f)
	return *f, err
}

// SetFPU loads the x87/SSE state (KVM_SET_FPU).
func (v *VCPU) SetFPU(f *FPU) error {
	cp := new(FPU)
	*cp = *f
	_, err := ioctlPtr(v.fd, kvmSetFPU, cp)
	return err
}

// LAPIC returns the local APIC register page (KVM_GET_LAPIC). Needs the
// in-kernel irqchip.
func (v *VCPU) LAPIC() (LAPICState, error) {
	s := new(LAPICState)
	_, err := ioctlPtr(v.fd, kvmGetLAPIC, s)
	return *s, err
}

// SetLAPIC loads the local APIC register page (KVM_SET_LAPIC). Restore calls
// it after SetSregs (which sets the APIC base) and before SetMSRs (the TSC
// deadline MSR only restores with the LAPIC configured).
func (v *VCPU) SetLAPIC(s *LAPICState) error {
	cp := new(LAPICState)
	*cp = *s
	_, err := ioctlPtr(v.fd, kvmSetLAPIC, cp)
	return err
}

// MSRs reads the MSRs named by indices (KVM_GET_MSRS), at most 255 per
// ioctl. The kernel stops at the first MSR it refuses: MSRs then returns the
// entries read so far and an *MSRError naming the refused index, so a caller
// can skip it and continue.
func (v *VCPU) MSRs(indices []uint32) ([]MSREntry, error) {
	out := make([]MSREntry, 0, len(indices))
	buf := new(msrsBuf)
	for start := 0; start < len(indices); start += maxMSRsPerCall {
		chunk := indices[start:min(start+maxMSRsPerCall, len(indices))]
		buf.nmsrs = uint32(len(chunk))
		for i, idx := range chunk {
			buf.entries[i] = MSREntry{Index: idx}
		}
		n, err := ioctlPtr(v.fd, kvmGetMSRs, buf)
		runtime.KeepAlive(buf)
		if err != nil {
			return out, err
		}
		n = min(n, len(chunk))
		out = append(out, buf.entries[:n]...)
		if n < len(chunk) {
			return out, &MSRError{Ioctl: kvmGetMSRs.name, Index: chunk[n], Done: start + n, Total: len(indices)}
		}
	}
	return out, nil
}

// SetMSRs writes entries in order (KVM_SET_MSRS), at most 255 per ioctl. A
// short count from the kernel is returned as an *MSRError naming the MSR it
// refused; the entries before it were written. Restore puts
// MSR_IA32_TSC_DEADLINE after MSR_IA32_TSC, since KVM reads the guest TSC
// when the deadline is written.
func (v *VCPU) SetMSRs(entries []MSREntry) error {
	buf := new(msrsBuf)
	for start := 0; start < len(entries); start += maxMSRsPerCall {
		chunk := entries[start:min(start+maxMSRsPerCall, len(entries))]
		buf.nmsrs = uint32(len(chunk))
		copy(buf.entries[:], chunk)
		n, err := ioctlPtr(v.fd, kvmSetMSRs, buf)
		runtime.KeepAlive(buf)
		if err != nil {
			return err
		}
		if n < len(chunk) {
			return &MSRError{Ioctl: kvmSetMSRs.name, Index: chunk[n].Index, Done: start + n, Total: len(entries)}
		}
	}
	return nil
}

// SetCPUID2 sets the CPUID the guest sees (KVM_SET_CPUID2), at most 256
// entries. Call it before the other SET ioctls on restore: some depend on
// CPUID. Kernels since 5.16 refuse to change it once the vCPU has run.
func (v *VCPU) SetCPUID2(entries []CPUIDEntry) error {
	if len(entries) > maxCPUIDEntries {
		return fmt.Errorf("kvm: %s: %d entries, limit %d", kvmSetCPUID2.name, len(entries), maxCPUIDEntries)
	}
	buf := new(cpuid2Buf)
	buf.nent = uint32(len(entries))
	copy(buf.entries[:], entries)
	_, err := ioctlPtr(v.fd, kvmSetCPUID2, buf)
	runtime.KeepAlive(buf)
	return err
}

// CPUID2 returns the CPUID set on this vCPU (KVM_GET_CPUID2), without
// trailing all-zero entries.
func (v *VCPU) CPUID2() ([]CPUIDEntry, error) {
	buf := new(cpuid2Buf)
	buf.nent = maxCPUIDEntries
	_, err := ioctlPtr(v.fd, kvmGetCPUID2, buf)
	runtime.KeepAlive(buf)
	if err != nil {
		return nil, err
	}
	n := min(int(buf.nent), maxCPUIDEntries)
	for n > 0 && buf.entries[n-1] == (CPUIDEntry{}) {
		n--
	}
	return append([]CPUIDEntry(nil), buf.entries[:n]...), nil
}

// MPState returns the multiprocessing state (KVM_GET_MP_STATE). On save it
// comes first: it runs kvm_apic_accept_events, which can change LAPIC state.
func (v *VCPU) MPState() (MPState, error) {
	s := new(MPState)
	_, err := ioctlPtr(v.fd, kvmGetMPState, s)
	return *s, err
}

// SetMPState sets the multiprocessing state (KVM_SET_MP_STATE).
func (v *VCPU) SetMPState(s MPState) error {
	p := new(MPState)
	*p = s
	_, err := ioctlPtr(v.fd, kvmSetMPState, p)
	return err
}

// VCPUEvents returns pending exceptions, interrupts, NMI and SMI state
// (KVM_GET_VCPU_EVENTS). On save it comes last.
// Preconditions: all vCPUs paused (api.rst: unsafe while others run).
func (v *VCPU) VCPUEvents() (VCPUEvents, error) {
	e := new(VCPUEvents)
	_, err := ioctlPtr(v.fd, kvmGetVCPUEvents, e)
	return *e, err
}

// SetVCPUEvents loads pending events (KVM_SET_VCPU_EVENTS); e.Flags says
// which optional parts apply. On restore it comes after SetRegs and SetMSRs.
// Preconditions: all vCPUs paused.
func (v *VCPU) SetVCPUEvents(e *VCPUEvents) error {
	cp := new(VCPUEvents)
	*cp = *e
	_, err := ioctlPtr(v.fd, kvmSetVCPUEvents, cp)
	return err
}

// DebugRegs returns DR0–3, DR6 and DR7 (KVM_GET_DEBUGREGS).
func (v *VCPU) DebugRegs() (DebugRegs, error) {
	d := new(DebugRegs)
	_, err := ioctlPtr(v.fd, kvmGetDebugRegs, d)
	return *d, err
}

// SetDebugRegs loads DR0–3, DR6 and DR7 (KVM_SET_DEBUGREGS); d.Flags must
// be 0.
func (v *VCPU) SetDebugRegs(d *DebugRegs) error {
	cp := new(DebugRegs)
	*cp = *d
	_, err := ioctlPtr(v.fd, kvmSetDebugRegs, cp)
	return err
}

// XSAVESize returns the XSAVE buffer size for this vCPU: the VM's
// XSAVESize when the vCPU was created.
func (v *VCPU) XSAVESize() int { return v.xsaveSize }

// XSAVE returns the vCPU's XSAVE area in a buffer of size bytes
// (KVM_GET_XSAVE2, or KVM_GET_XSAVE on kernels without KVM_CAP_XSAVE2). The
// kernel writes as many bytes as the VM's XSAVESize, so size must be at
// least that; pass XSAVESize(). The layout follows host CPUID leaf 0xD.
func (v *VCPU) XSAVE(size int) ([]byte, error) {
	req := kvmGetXSAVE2
	if !v.xsave2 {
		req = kvmGetXSAVE
	}
	if size < v.xsaveSize || size > maxXSAVESize {
		return nil, fmt.Errorf("kvm: %s: buffer of %d bytes, need %d to %d", req.name, size, v.xsaveSize, maxXSAVESize)
	}
	buf := make([]byte, size)
	_, err := ioctlPtr(v.fd, req, &buf[0])
	runtime.KeepAlive(buf)
	if err != nil {
		return nil, err
	}
	return buf, nil
}

// SetXSAVE loads an XSAVE area (KVM_SET_XSAVE), which the kernel reads as
// XSAVESize bytes. A shorter buf (at least 4096 bytes) is zero-extended,
// which leaves the components it lacks in their init state; a longer one is
// accepted only if the excess is all zero, because those bytes would be
// dropped (state from a host with larger XSAVE features, such as AMX).
func (v *VCPU) SetXSAVE(buf []byte) error {
	if len(buf) < legacyXSAVESize {
		return fmt.Errorf("kvm: %s: %d bytes, need at least %d", kvmSetXSAVE.name, len(buf), legacyXSAVESize)
	}
	if len(buf) > v.xsaveSize {
		for i, b := range buf[v.xsaveSize:] {
			if b != 0 {
				return fmt.Errorf("kvm: %s: state of %d bytes has data at offset %#x, past this vcpu's %d-byte xsave area", kvmSetXSAVE.name, len(buf), v.xsaveSize+i, v.xsaveSize)
			}
		}
	}
	cp := make([]byte, v.xsaveSize)
	copy(cp, buf)
	_, err := ioctlPtr(v.fd, kvmSetXSAVE, &cp[0])
	runtime.KeepAlive(cp)
	return err
}

// XCRS returns the extended control registers (KVM_GET_XCRS).
func (v *VCPU) XCRS() (XCRS, error) {
	x := new(XCRS)
	_, err := ioctlPtr(v.fd, kvmGetXCRS, x)
	return *x, err
}

// SetXCRS loads the extended control registers (KVM_SET_XCRS); x.Flags must
// be 0 and x.NrXCRS at most 16.
func (v *VCPU) SetXCRS(x *XCRS) error {
	if x.NrXCRS > uint32(len(x.XCRS)) {
		return fmt.Errorf("kvm: %s: %d xcrs, limit %d", kvmSetXCRS.name, x.NrXCRS, len(x.XCRS))
	}
	cp := new(XCRS)
	*cp = *x
	_, err := ioctlPtr(v.fd, kvmSetXCRS, cp)
	return err
}

// TSCKHz returns the guest TSC frequency in kHz (KVM_GET_TSC_KHZ). The
// kernel returns EIO when the host TSC is unstable.
func (v *VCPU) TSCKHz() (uint32, error) {
	khz, err := ioctlInt(v.fd, kvmGetTSCKHz, 0)
	return uint32(khz), err
}

// SetTSCKHz sets the guest TSC frequency in kHz (KVM_SET_TSC_KHZ). Any value
// other than the host's needs TSC scaling (CapTSCControl).
func (v *VCPU) SetTSCKHz(khz uint32) error {
	if khz == 0 {
		return fmt.Errorf("kvm: %s: frequency 0 khz", kvmSetTSCKHz.name)
	}
	_, err := ioctlInt(v.fd, kvmSetTSCKHz, uintptr(khz))
	return err
}

// ReadableMSRs returns the indices this vCPU lets KVM_GET_MSRS read, in
// order, dropping each one the kernel refuses. KVM_GET_MSR_INDEX_LIST can
// name MSRs that a given CPUID or host does not support; probe the list once
// per VM (after SetCPUID2) and save that. It issues at most one extra
// KVM_GET_MSRS per refused MSR.
func (v *VCPU) ReadableMSRs(indices []uint32) ([]uint32, error) {
	out := make([]uint32, 0, len(indices))
	rest := indices
	for len(rest) > 0 {
		got, err := v.MSRs(rest)
		for _, e := range got {
			out = append(out, e.Index)
		}
		var me *MSRError
		if err == nil {
			break
		}
		if !errors.As(err, &me) {
			return nil, err
		}
		// got holds the MSRs before the refused one; skip that one.
		rest = rest[len(got)+1:]
	}
	return out, nil
}
