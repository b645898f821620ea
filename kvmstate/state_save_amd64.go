package kvmstate

import (
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"
)

// MSR indices the save and restore order depends on.
const (
	msrIA32TSC         = 0x10
	msrIA32TSCDeadline = 0x6e0
)

// tscScalingTolerancePPM is how far the saved TSC frequency may differ from
// this host's before RestoreState asks KVM to scale the guest TSC; closer
// than that is calibration jitter (Firecracker and QEMU use 250 ppm).
const tscScalingTolerancePPM = 250

// VCPUState is everything KVM holds for one vCPU: plain data with no fds or
// pointers, captured by SaveState and loaded by RestoreState.
type VCPUState struct {
	CPUID     []CPUIDEntry
	MPState   MPState
	Regs      Regs
	Sregs     Sregs
	XSAVE     []byte
	XCRS      XCRS
	DebugRegs DebugRegs
	LAPIC     LAPICState
	// TSCKHz is the guest TSC frequency, or 0 when the host TSC was
	// unstable (KVM_GET_TSC_KHZ failed with EIO).
	TSCKHz uint32
	// MSRs are in restore order: MSR_IA32_TSC_DEADLINE, if present, last.
	MSRs   []MSREntry
	Events VCPUEvents
}

// SaveState captures the vCPU's state, reading the MSRs named by msrs (the
// caller's choice, typically System.MSRIndexList plus the MTRRs). The order
// follows api.rst and Firecracker: MP state first, because reading it
// accepts pending INIT/SIPI events and can change the LAPIC; vCPU events
// last, because the other reads can change them. A TSC deadline of 0 is
// saved as the current TSC, so that restoring it never fires the timer at
// once, and is moved after MSR_IA32_TSC.
//
// Preconditions: called on the vCPU's thread; every vCPU of the VM paused,
// each having re-entered KVM_RUN with immediate_exit set so that pending
// I/O completed.
func (v *VCPU) SaveState(msrs []uint32) (VCPUState, error) {
	var st VCPUState
	var err error
	if st.MPState, err = v.MPState(); err != nil {
		return st, err
	}
	if st.Regs, err = v.Regs(); err != nil {
		return st, err
	}
	if st.Sregs, err = v.Sregs(); err != nil {
		return st, err
	}
	if st.XSAVE, err = v.XSAVE(v.xsaveSize); err != nil {
		return st, err
	}
	if st.XCRS, err = v.XCRS(); err != nil {
		return st, err
	}
	if st.DebugRegs, err = v.DebugRegs(); err != nil {
		return st, err
	}
	if st.LAPIC, err = v.LAPIC(); err != nil {
		return st, err
	}
	if st.TSCKHz, err = v.TSCKHz(); err != nil {
		if !errors.Is(err, unix.EIO) {
			return st, err
		}
		st.TSCKHz = 0
	}
	if st.CPUID, err = v.CPUID2(); err != nil {
		return st, err
	}
	if st.MSRs, err = v.MSRs(msrs); err != nil {
		return st, err
	}
	st.MSRs = orderTSCDeadline(st.MSRs)
	if st.Events, err = v.VCPUEvents(); err != nil {
		return st, err
	}
	return st, nil
}

// orderTSCDeadline moves MSR_IA32_TSC_DEADLINE to the end of msrs and, if it
// is 0, replaces it with the saved MSR_IA32_TSC value: KVM reads the guest
// TSC when the deadline is written to decide whether the timer is due.
func orderTSCDeadline(msrs []MSREntry) []MSREntry {
	i := slices.IndexFunc(msrs, func(e MSREntry) bool { return e.Index == msrIA32TSCDeadline })
	if i < 0 {
		return msrs
	}
	dl := msrs[i]
	msrs = slices.Delete(msrs, i, i+1)
	if dl.Data == 0 {
		if j := slices.IndexFunc(msrs, func(e MSREntry) bool { return e.Index == msrIA32TSC }); j >= 0 {
			dl.Data = msrs[j].Data
		}
	}
	return append(msrs, dl)
}

// RestoreState loads st into a freshly created vCPU, in the order the
// kernel requires: CPUID first (other SET ioctls depend on it), the TSC
// frequency when it differs from this host's by more than 250 ppm, MP
// state, REGS before VCPU_EVENTS (SET_REGS clears pending exceptions), SREGS
// (the APIC base) before LAPIC, LAPIC before the MSRs (the TSC deadline
// restores only with the LAPIC configured), MSR_IA32_TSC_DEADLINE after
// MSR_IA32_TSC, events last; then KVM_KVMCLOCK_CTRL, whose EINVAL (guest
// without kvmclock) is ignored.
//
// Preconditions: called on the vCPU's thread, before the vCPU first runs;
// every vCPU of the VM paused.
func (v *VCPU) RestoreState(st *VCPUState) error {
	if err := v.SetCPUID2(st.CPUID); err != nil {
		return err
	}
	if st.TSCKHz != 0 {
		cur, err := v.TSCKHz()
		if err != nil && !errors.Is(err, unix.EIO) {
			return err
		}
		if err != nil || tscDiffers(cur, st.TSCKHz) {
			if err := v.SetTSCKHz(st.TSCKHz); err != nil {
				return fmt.Errorf("guest tsc of %d khz on a host at %d khz: %w", st.TSCKHz, cur, err)
			}
		}
	}
	if err := v.SetMPState(st.MPState); err != nil {
		return err
	}
	if err := v.SetRegs(&st.Regs); err != nil {
		return err
	}
	if err := v.SetSregs(&st.Sregs); err != nil {
		return err
	}
	if err := v.SetXSAVE(st.XSAVE); err != nil {
		return err
	}
	if err := v.SetXCRS(&st.XCRS); err != nil {
		return err
	}
	if err := v.SetDebugRegs(&st.DebugRegs); err != nil {
		return err
	}
	if err := v.SetLAPIC(&st.LAPIC); err != nil {
		return err
	}
	if err := v.SetMSRs(orderTSCDeadline(slices.Clone(st.MSRs))); err != nil {
		return err
	}
	if err := v.SetVCPUEvents(&st.Events); err != nil {
		return err
	}
	if err := v.KVMClockCtrl(); err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	return nil
}

// tscDiffers reports whether two TSC frequencies differ by more than
// tscScalingTolerancePPM.
func tscDiffers(host, guest uint32) bool {
	d := int64(host) - int64(guest)
	if d < 0 {
		d = -d
	}
	return d*1_000_000 > int64(guest)*tscScalingTolerancePPM
}

// VMState is the VM-wide KVM state of a VM with the in-kernel irqchip and
// PIT: plain data, captured by SaveState and loaded by RestoreState.
type VMState struct {
	PIT   PITState2
	Clock ClockData
	// IRQChips are the PIC master, PIC slave and IOAPIC, indexed by chip id.
	IRQChips [3]IRQChip
}

// SaveState captures the PIT, the kvmclock and the three interrupt
// controllers, in Firecracker's order.
// Preconditions: every vCPU paused.
func (vm *VM) SaveState() (VMState, error) {
	var st VMState
	var err error
	if st.PIT, err = vm.GetPIT2(); err != nil {
		return st, err
	}
	if st.Clock, err = vm.GetClock(); err != nil {
		return st, err
	}
	for id := range st.IRQChips {
		if st.IRQChips[id], err = vm.GetIRQChip(uint32(id)); err != nil {
			return st, fmt.Errorf("irqchip %d: %w", id, err)
		}
	}
	return st, nil
}

// RestoreState loads st's PIT and interrupt controllers. The kvmclock is
// not touched: RestoreClock sets it, before the vCPUs are restored, together
// with the plan that sets their TSCs to match it.
// Preconditions: every vCPU restored and still paused.
func (vm *VM) RestoreState(st *VMState) error {
	if err := vm.SetPIT2(&st.PIT); err != nil {
		return err
	}
	for id := range st.IRQChips {
		c := st.IRQChips[id]
		if c.ChipID != uint32(id) {
			return fmt.Errorf("kvm: irqchip slot %d holds chip id %d", id, c.ChipID)
		}
		if err := vm.SetIRQChip(&c); err != nil {
			return fmt.Errorf("irqchip %d: %w", id, err)
		}
	}
	return nil
}
