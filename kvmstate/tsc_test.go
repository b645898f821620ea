package kvmstate

import (
	"math"
	"testing"
)

func TestNsToTicks(t *testing.T) {
	for _, tc := range []struct {
		ns   int64
		khz  uint32
		want int64
	}{
		{0, 2_694_890, 0},
		{1_000_000, 2_694_890, 2_694_890},         // 1 ms
		{-1_000_000, 2_694_890, -2_694_890},       // back 1 ms
		{3600e9, 3_000_000, 3600 * 3_000_000_000}, // an hour at 3 GHz
		{999, 1_000_000, 999},                     // 1 GHz: one tick a ns
		{1, 999_999, 0},                           // rounds toward zero
	} {
		if got := nsToTicks(tc.ns, tc.khz); got != tc.want {
			t.Errorf("nsToTicks(%d, %d) = %d, want %d", tc.ns, tc.khz, got, tc.want)
		}
	}
}

func TestSavedTSCs(t *testing.T) {
	clock := ClockSample{Clock: 5e9, HostTSC: 1_000_000}
	samples := []TSCSample{
		{Guest: 500_000, HostTSC: 999_000},   // 1000 ticks before the clock read
		{Guest: 502_500, HostTSC: 1_002_000}, // 2000 after
	}
	got := SavedTSCs(clock, samples, nil)
	if got[0] != 501_000 || got[1] != 500_500 {
		t.Errorf("from samples: %v, want [501000 500500]", got)
	}
	// Offsets equal: the vCPUs are in step whatever the samples' noise.
	got = SavedTSCs(clock, samples, []int64{-7, -7})
	if got[0] != 501_000 || got[1] != 501_000 {
		t.Errorf("equal offsets: %v, want both 501000", got)
	}
	got = SavedTSCs(clock, samples, []int64{-7, 93})
	if got[1]-got[0] != 100 {
		t.Errorf("offsets 100 apart: %v", got)
	}
}

// TestTSCPlanTarget holds the restore's arithmetic: the TSC moves on by the
// kvmclock's progress since the save at the guest's rate, plus the host
// ticks since the clock was sampled; the host TSC's own value (a new host,
// a new process) does not matter.
func TestTSCPlanTarget(t *testing.T) {
	for _, host := range []uint64{0, 1 << 40, math.MaxUint64 - 1000} {
		p := &TSCPlan{SavedClock: 10e9, Saved: []uint64{7e9}, Now: ClockSample{Clock: 10e9 + 2e6, HostTSC: host}, khz: 1_000_000}
		if got, want := p.target(7e9, host), uint64(7e9+2e6); got != want {
			t.Errorf("host tsc %d: target at the clock sample %d, want %d", host, got, want)
		}
		if got, want := p.target(7e9, host+500), uint64(7e9+2e6+500); got != want {
			t.Errorf("host tsc %d: target 500 ticks later %d, want %d", host, got, want)
		}
	}
	// Advanced by an hour (RestoreClock's advance): the TSC follows.
	p := &TSCPlan{SavedClock: 1e9, Now: ClockSample{Clock: 1e9 + 3600e9, HostTSC: 42}, khz: 2_000_000}
	if got, want := p.target(100, 42), uint64(100+3600*2_000_000_000); got != want {
		t.Errorf("advanced an hour: %d, want %d", got, want)
	}
}
