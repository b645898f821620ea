package kvmstate

import (
	"slices"
	"testing"
)

func TestOrderTSCDeadline(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []MSREntry
		want []MSREntry
	}{
		{
			name: "zero deadline takes the tsc and goes last",
			in:   []MSREntry{{Index: 0x6e0}, {Index: 0x10, Data: 5000}, {Index: 0x174, Data: 8}},
			want: []MSREntry{{Index: 0x10, Data: 5000}, {Index: 0x174, Data: 8}, {Index: 0x6e0, Data: 5000}},
		},
		{
			name: "armed deadline keeps its value",
			in:   []MSREntry{{Index: 0x6e0, Data: 9000}, {Index: 0x10, Data: 5000}},
			want: []MSREntry{{Index: 0x10, Data: 5000}, {Index: 0x6e0, Data: 9000}},
		},
		{
			name: "no tsc saved",
			in:   []MSREntry{{Index: 0x6e0}, {Index: 0x174, Data: 8}},
			want: []MSREntry{{Index: 0x174, Data: 8}, {Index: 0x6e0}},
		},
		{
			name: "no deadline",
			in:   []MSREntry{{Index: 0x10, Data: 1}, {Index: 0x174, Data: 8}},
			want: []MSREntry{{Index: 0x10, Data: 1}, {Index: 0x174, Data: 8}},
		},
		{name: "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := orderTSCDeadline(slices.Clone(tc.in)); !slices.Equal(got, tc.want) {
				t.Errorf("orderTSCDeadline(%v) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestTSCDiffers(t *testing.T) {
	for _, tc := range []struct {
		host, guest uint32
		want        bool
	}{
		{2_000_000, 2_000_000, false},
		{2_000_500, 2_000_000, false}, // 250 ppm exactly
		{2_000_501, 2_000_000, true},
		{1_999_499, 2_000_000, true},
		{3_000_000, 2_000_000, true},
		{4_294_967_295, 1, true}, // no overflow
	} {
		if got := tscDiffers(tc.host, tc.guest); got != tc.want {
			t.Errorf("tscDiffers(%d, %d) = %v, want %v", tc.host, tc.guest, got, tc.want)
		}
	}
}
