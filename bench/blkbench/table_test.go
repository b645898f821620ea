package main

import (
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{2, 9, 4, 1, 7}, 4},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	for in, want := range map[string]string{"65536": "64 KiB", "4096": "4 KiB", "512": "512 B", "x": "?", "0": "?"} {
		if got := humanBytes(in); got != want {
			t.Errorf("humanBytes(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPrintTable checks the rates, IOPS and ratio of one format's rows.
func TestPrintTable(t *testing.T) {
	c := config{size: "256M", runs: 3, seqMiB: 32, randMiB: 8, formats: []string{"raw"}, vmms: []string{"chsnap", "qemu"}}
	reqBytes = map[string]map[string]bool{
		"seqwrite": {"65536": true}, "seqread": {"65536": true},
		"randwrite": {"4096": true}, "randread": {"4096": true, "2048": true},
	}
	secs := map[key][]float64{}
	for _, m := range modes {
		// 32 MiB in 1 s is 33.6 MB/s; QEMU takes twice as long.
		secs[key{"raw", "chsnap", m}] = []float64{9, 1, 1}
		secs[key{"raw", "qemu", m}] = []float64{2, 2, 0.1}
	}
	var b strings.Builder
	printTable(&b, c, secs)
	out := b.String()
	for _, want := range []string{
		"raw    seqwrite    64 KiB     32              33.6 MB/s              16.8 MB/s   2.00x",
		// 8 MiB of 4 KiB requests in 1 s: 2048 IOPS.
		"raw    randwrite    4 KiB      8     2048 IOPS 8.4 MB/s     1024 IOPS 4.2 MB/s   2.00x",
		"2 KiB/4 KiB",
		"higher is better",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
