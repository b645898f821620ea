package vm

import (
	"fmt"
	"slices"
	"time"

	"github.com/chsnap/chsnap/kvmstate"
)

// MSR indices the TSC handling reads from saved vCPU state.
const (
	msrIA32TSC         = 0x10
	msrIA32TSCDeadline = 0x6e0
)

// savedMSR returns the entry of MSR index in st, or nil.
func savedMSR(st *kvmstate.VCPUState, index uint32) *kvmstate.MSREntry {
	i := slices.IndexFunc(st.MSRs, func(e kvmstate.MSREntry) bool { return e.Index == index })
	if i < 0 {
		return nil
	}
	return &st.MSRs[i]
}

// alignSavedTSCs makes st's kvmclock and vCPU TSCs one instant: the clock
// is read again, paired with the host TSC, and each vCPU's saved
// MSR_IA32_TSC becomes its TSC at that instant (kvmstate.SavedTSCs). Read
// one after another, as SaveState does, they are milliseconds apart, which a
// restored Linux guest sees as its TSC skewed against kvm-clock.
// Preconditions: the VM is paused (pauseMu held); st.VCPUs are saved.
func (v *VM) alignSavedTSCs(st *savedState) error {
	n := len(v.cpus)
	samples := make([]kvmstate.TSCSample, n)
	offsets := make([]int64, n)
	haveOffsets := make([]bool, n)
	err := v.onEachVCPU(func(c *vcpu) error {
		s, err := c.cpu.SampleTSC()
		if err != nil {
			return fmt.Errorf("vCPU %d: read tsc: %w", c.id, err)
		}
		samples[c.id] = s
		if c.cpu.HasTSCOffset() {
			if offsets[c.id], err = c.cpu.TSCOffset(); err != nil {
				return fmt.Errorf("vCPU %d: read tsc offset: %w", c.id, err)
			}
			haveOffsets[c.id] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	clock, at, err := v.kvm.SampleClock()
	if err != nil {
		return fmt.Errorf("read kvmclock: %w", err)
	}
	if slices.Contains(haveOffsets, false) {
		offsets = nil
	}
	tscs := kvmstate.SavedTSCs(at, samples, offsets)
	for i := range st.VCPUs {
		e := savedMSR(&st.VCPUs[i], msrIA32TSC)
		if e == nil {
			return fmt.Errorf("vCPU %d: MSR_IA32_TSC not saved", i)
		}
		e.Data = tscs[i]
	}
	st.VM.Clock = clock
	return nil
}

// restoreClock sets the restored VM's kvmclock to the saved one plus
// advance and returns the plan each vCPU applies to its TSC after its
// state is restored (kvmstate.TSCPlan): the guest finds its TSC and its
// kvm-clock moved on by the same time, all vCPUs in step. This is the one
// place that moves guest time on a restore; advance is 0 unless the guest's
// clocks are to catch up with time spent outside the VM.
//
// The guest TSC runs at the saved rate where KVM can scale it (restore sets
// KVM_SET_TSC_KHZ). Where the host runs at another rate and cannot scale,
// the guest TSC runs at the host's rate from the restore on: kvm-clock stays
// right (KVM rescales it), but a Linux guest that calibrated its TSC at the
// saved rate will find its TSC drifting against kvm-clock and stop using it
// as a clocksource (the restore warns of this).
func (v *VM) restoreClock(st *savedState, advance time.Duration) (*kvmstate.TSCPlan, error) {
	saved := make([]uint64, len(st.VCPUs))
	for i := range st.VCPUs {
		e := savedMSR(&st.VCPUs[i], msrIA32TSC)
		if e == nil {
			return nil, fmt.Errorf("restore vCPU %d: %w: MSR_IA32_TSC not saved", i, errNotRestorable)
		}
		saved[i] = e.Data
	}
	// A rate of 0 (saved where KVM found the host TSC unstable) lets the
	// plan take this host's.
	plan, err := v.kvm.RestoreClock(st.VM.Clock, advance, saved, st.VCPUs[0].TSCKHz)
	if err != nil {
		return nil, fmt.Errorf("restore kvmclock: %w", err)
	}
	return plan, nil
}
