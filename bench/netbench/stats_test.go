package main

import (
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{2, 9, 4, 1, 7}, 4},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	// 1..100 µs, shuffled: the nearest-rank p-th percentile is p µs.
	var ds []time.Duration
	for i := range 100 {
		ds = append(ds, time.Duration((i*37)%100+1)*time.Microsecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{
		{50, 50 * time.Microsecond},
		{99, 99 * time.Microsecond},
		{100, 100 * time.Microsecond},
		{0.5, 1 * time.Microsecond},
		{99.5, 100 * time.Microsecond},
	} {
		if got := percentile(ds, tc.p); got != tc.want {
			t.Errorf("percentile(1..100 µs, %v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	// Small samples: p99 of 10 is the largest, p50 the fifth.
	few := []time.Duration{10, 1, 9, 2, 8, 3, 7, 4, 6, 5}
	if got := percentile(few, 99); got != 10 {
		t.Errorf("p99 of 1..10 = %v, want 10", got)
	}
	if got := percentile(few, 50); got != 5 {
		t.Errorf("p50 of 1..10 = %v, want 5", got)
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile of none = %v, want 0", got)
	}
	if few[0] != 10 {
		t.Errorf("percentile sorted its input in place: %v", few)
	}
}

func TestPayload(t *testing.T) {
	b := make([]byte, 64)
	fillPayload(b, 0x0102030405060708)
	seq, ok := parseReply(b, 64)
	if !ok || seq != 0x0102030405060708 {
		t.Fatalf("parseReply(fillPayload(seq)) = %#x, %v", seq, ok)
	}
	if _, ok := parseReply(b[:63], 64); ok {
		t.Error("a short reply parsed as intact")
	}
	b[40] ^= 1
	if _, ok := parseReply(b, 64); ok {
		t.Error("a reply with a flipped bit parsed as intact")
	}
	b[40] ^= 1
	b[0] = 'N'
	if _, ok := parseReply(b, 64); ok {
		t.Error("a reply without the magic parsed as intact")
	}
}

func TestRatePPS(t *testing.T) {
	r := rateResult{Replies: 3000, Elapsed: 2 * time.Second}
	if got := r.PPS(); got != 1500 {
		t.Errorf("PPS = %v, want 1500", got)
	}
	if got := (rateResult{Replies: 5}).PPS(); got != 0 {
		t.Errorf("PPS with no elapsed time = %v, want 0", got)
	}
}
