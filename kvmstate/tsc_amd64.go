package kvmstate

import (
	"fmt"
	"math/big"
	"sync"
	"time"
)

// rdtsc reads this host CPU's time-stamp counter (rdtsc_amd64.s), after an
// LFENCE so that it is not taken before earlier instructions finished.
func rdtsc() uint64

// ClockSample is a kvmclock reading paired with the host TSC at the same
// instant.
type ClockSample struct {
	Clock   uint64 // kvmclock, ns
	HostTSC uint64
}

// SampleClock reads the kvmclock (KVM_GET_CLOCK) and pairs it with the host
// TSC: KVM's own pairing when it reports one (ClockHostTSC, with the
// masterclock on a TSC-based host clock), else the midpoint of host TSC
// reads just before and after the ioctl.
func (vm *VM) SampleClock() (ClockData, ClockSample, error) {
	before := rdtsc()
	c, err := vm.GetClock()
	after := rdtsc()
	if err != nil {
		return c, ClockSample{}, err
	}
	s := ClockSample{Clock: c.Clock, HostTSC: before + (after-before)/2}
	if c.Flags&ClockHostTSC != 0 {
		s.HostTSC = c.HostTSC
	}
	return c, s, nil
}

// TSCSample is a guest TSC reading (MSR_IA32_TSC) paired with the host TSC
// at the same instant (the midpoint of reads around the ioctl).
type TSCSample struct {
	Guest   uint64
	HostTSC uint64
}

// At is the sample's guest TSC carried to host TSC instant h. Over the
// microseconds between two samples the guest TSC is taken to tick with the
// host's (exact unless KVM scales it, and then off by the rate ratio times
// that gap only).
func (s TSCSample) At(h uint64) uint64 { return s.Guest + (h - s.HostTSC) }

// SampleTSC reads the vCPU's TSC with the host TSC at that instant.
// Preconditions: the vCPU is not running.
func (v *VCPU) SampleTSC() (TSCSample, error) {
	before := rdtsc()
	m, err := v.MSRs([]uint32{msrIA32TSC})
	after := rdtsc()
	if err != nil {
		return TSCSample{}, err
	}
	return TSCSample{Guest: m[0].Data, HostTSC: before + (after-before)/2}, nil
}

// SavedTSCs returns each vCPU's TSC at the instant of clock, from a sample
// of each vCPU's TSC. offsets, if not nil, are the vCPUs' TSC offsets
// (KVM_VCPU_TSC_OFFSET): vCPU i is then vCPU 0 plus the difference of their
// offsets, exactly, so vCPUs in step at the save are in step in the archive
// (a sample per vCPU would differ by the sampling noise).
func SavedTSCs(clock ClockSample, samples []TSCSample, offsets []int64) []uint64 {
	out := make([]uint64, len(samples))
	for i, s := range samples {
		if offsets != nil && i > 0 {
			out[i] = out[0] + uint64(offsets[i]-offsets[0])
			continue
		}
		out[i] = s.At(clock.HostTSC)
	}
	return out
}

// TSCPlan carries the guest's TSCs across a restore. At the save, vCPU i's
// TSC read Saved[i] when the kvmclock read SavedClock (SavedTSCs). The
// guest's own clocks compare the two (Linux's clocksource watchdog checks
// the TSC against kvm-clock every half second and drops the TSC when they
// disagree by more than a fraction of a millisecond), so the restore keeps
// that relation: once the kvmclock is restored and reads Now, vCPU i's TSC
// must read Saved[i] + (Now.Clock − SavedClock) converted at KHz. The host
// TSC's own value plays no part, so a restore in another process, later,
// or on a host whose TSC counts from elsewhere comes out the same. Where
// the kvmclock was advanced (a wall-clock catch-up: RestoreClock's
// advance), the TSCs advance with it.
//
// Apply sets one vCPU; vCPUs saved in step come out with the same TSC offset,
// which KVM needs to run its masterclock (a stable kvmclock).
type TSCPlan struct {
	SavedClock uint64
	Saved      []uint64
	Now        ClockSample

	mu sync.Mutex
	// khz is the guest TSC rate the guest calibrated (the saved rate);
	// guarded by mu.
	khz uint32
	// base is the TSC offset of a vCPU whose saved TSC would be 0; nil
	// until the first Apply with the offset attribute. Guarded by mu.
	base *uint64
}

// RestoreClock sets the kvmclock to the saved clock plus advance (flags 0:
// guest monotonic time resumes where the save left it, moved on by advance
// only) and returns the plan that sets the vCPUs' TSCs to match, for vCPUs
// whose saved TSCs are saved (read at clock.Clock; see SavedTSCs) and whose
// guest TSC rate is khz (0: unknown, the rate the first vCPU applied reports).
// Preconditions: no vCPU of the VM has run since it was created.
func (vm *VM) RestoreClock(clock ClockData, advance time.Duration, saved []uint64, khz uint32) (*TSCPlan, error) {
	if advance < 0 {
		return nil, fmt.Errorf("kvm: restore clock: advance %v is negative", advance)
	}
	set := ClockData{Clock: clock.Clock + uint64(advance)}
	if err := vm.SetClock(&set); err != nil {
		return nil, err
	}
	_, now, err := vm.SampleClock()
	if err != nil {
		return nil, err
	}
	return &TSCPlan{SavedClock: clock.Clock, Saved: saved, Now: now, khz: khz}, nil
}

// target is the TSC that a vCPU whose saved TSC is saved must read at host
// TSC instant h. Preconditions: p.mu held, p.khz set.
func (p *TSCPlan) target(saved, h uint64) uint64 {
	return saved + uint64(nsToTicks(int64(p.Now.Clock-p.SavedClock), p.khz)) + (h - p.Now.HostTSC)
}

// nsToTicks converts ns nanoseconds to TSC ticks at khz, rounding toward
// zero, without overflow for any int64 ns (the result wraps like the TSC).
func nsToTicks(ns int64, khz uint32) int64 {
	t := new(big.Int).Mul(big.NewInt(ns), big.NewInt(int64(khz)))
	t.Quo(t, big.NewInt(1_000_000))
	return t.Int64() // the low 64 bits, as the TSC wraps
}

// Apply sets vCPU id's TSC by the plan, then writes deadline (the saved
// MSR_IA32_TSC_DEADLINE, if any) again so that KVM re-arms the timer against
// the TSC it now has. With the TSC offset attribute (Linux 5.16 and later)
// the first vCPU applied measures where its TSC stands and every vCPU gets
// that offset plus its saved difference, so vCPUs saved in step get equal
// offsets; without it, MSR_IA32_TSC is written with the value due at the
// write (KVM then matches vCPUs written within a second of each other).
// Preconditions: called on the vCPU's thread after RestoreState, before the
// vCPU first runs.
func (p *TSCPlan) Apply(v *VCPU, id int, deadline *MSREntry) error {
	if id < 0 || id >= len(p.Saved) {
		return fmt.Errorf("kvm: tsc plan for %d vcpus has no vcpu %d", len(p.Saved), id)
	}
	saved := p.Saved[id]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.khz == 0 {
		khz, err := v.TSCKHz()
		if err != nil {
			return fmt.Errorf("kvm: guest tsc rate: %w", err)
		}
		p.khz = khz
	}
	if v.HasTSCOffset() {
		if p.base == nil {
			s, err := v.SampleTSC()
			if err != nil {
				return err
			}
			ofs, err := v.TSCOffset()
			if err != nil {
				return err
			}
			// guest TSC = scaled host TSC + offset: moving the offset by
			// (target − now) moves this vCPU's TSC onto the target.
			b := uint64(ofs) + (p.target(saved, s.HostTSC) - s.Guest) - saved
			p.base = &b
		}
		if err := v.SetTSCOffset(int64(*p.base + saved)); err != nil {
			return err
		}
	} else {
		e := []MSREntry{{Index: msrIA32TSC, Data: p.target(saved, rdtsc())}}
		if err := v.SetMSRs(e); err != nil {
			return err
		}
	}
	if deadline != nil {
		if err := v.SetMSRs([]MSREntry{*deadline}); err != nil {
			return err
		}
	}
	return nil
}
