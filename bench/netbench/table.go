package main

import (
	"fmt"
	"io"
	"strings"
)

// summary is one VMM's medians over its repetitions.
type summary struct {
	P50us, P99us, PPS float64 // medians
	Lost, Sent        int     // over all repetitions, latency and rate
}

func summarize(c config, rs []runResult) summary {
	var s summary
	var p50, p99, pps []float64
	for _, r := range rs {
		p50 = append(p50, micros(r.P50))
		p99 = append(p99, micros(r.P99))
		pps = append(pps, r.Rate.PPS())
		s.Lost += r.LatLost + r.Rate.Lost
		s.Sent += c.count + r.Rate.Sent
	}
	s.P50us, s.P99us, s.PPS = median(p50), median(p99), median(pps)
	return s
}

// ratio is a/b as "0.75x", or "-" when either is missing.
func ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// printTable prints the medians of each VMM and the ratio chsnap/QEMU.
func printTable(w io.Writer, c config, results map[string][]runResult) {
	runs := "median of %d runs"
	if c.runs == 1 {
		runs = "%d run"
	}
	fmt.Fprintf(w, "UDP echo, host to guest and back, through virtio-net on a tap; %d-byte payloads; "+runs+"\n", c.size, c.runs)
	fmt.Fprintf(w, "latency: %d sequential round trips after %d warm-up; rate: %d requests in flight for %v\n",
		c.count, c.warmup, c.window, c.duration)
	if c.accel != "kvm" {
		fmt.Fprintf(w, "QEMU with -accel %s: its numbers are not comparable\n", c.accel)
	}
	if len(c.qemuExtra) > 0 {
		fmt.Fprintf(w, "QEMU with %s\n", strings.Join(c.qemuExtra, " "))
	}
	sums := map[string]summary{}
	for vmm, rs := range results {
		if len(rs) > 0 {
			sums[vmm] = summarize(c, rs)
		}
	}
	cell := func(vmm string, f func(summary) string) string {
		s, ok := sums[vmm]
		if !ok {
			return "-"
		}
		return f(s)
	}
	us := func(v float64) string { return fmt.Sprintf("%.1f µs", v) }
	ch, qe := sums["chsnap"], sums["qemu"]
	fmt.Fprintf(w, "%-12s %14s %14s %7s\n", "", "chsnap", "QEMU", "ratio")
	fmt.Fprintf(w, "%-12s %14s %14s %7s\n", "latency p50",
		cell("chsnap", func(s summary) string { return us(s.P50us) }),
		cell("qemu", func(s summary) string { return us(s.P50us) }), ratio(ch.P50us, qe.P50us))
	fmt.Fprintf(w, "%-12s %14s %14s %7s\n", "latency p99",
		cell("chsnap", func(s summary) string { return us(s.P99us) }),
		cell("qemu", func(s summary) string { return us(s.P99us) }), ratio(ch.P99us, qe.P99us))
	fmt.Fprintf(w, "%-12s %14s %14s %7s\n", "pkts/s",
		cell("chsnap", func(s summary) string { return fmt.Sprintf("%.0f", s.PPS) }),
		cell("qemu", func(s summary) string { return fmt.Sprintf("%.0f", s.PPS) }), ratio(ch.PPS, qe.PPS))
	fmt.Fprintf(w, "%-12s %14s %14s\n", "lost/sent",
		cell("chsnap", func(s summary) string { return fmt.Sprintf("%d/%d", s.Lost, s.Sent) }),
		cell("qemu", func(s summary) string { return fmt.Sprintf("%d/%d", s.Lost, s.Sent) }))
	fmt.Fprintln(w, "ratio = chsnap / QEMU: for latency lower is better (below 1.00x chsnap is faster);")
	fmt.Fprintln(w, "for pkts/s higher is better (above 1.00x chsnap is faster)")
}

// jsonRun is one repetition in the JSON output.
type jsonRun struct {
	P50us       float64 `json:"p50_us"`
	P99us       float64 `json:"p99_us"`
	PPS         float64 `json:"pkts_per_s"`
	LatencyLost int     `json:"latency_lost"`
	RateSent    int     `json:"rate_sent"`
	RateLost    int     `json:"rate_lost"`
	RateLate    int     `json:"rate_late"`
	GuestNet    string  `json:"guest_net"`
}

// jsonVMM is one VMM's repetitions and medians.
type jsonVMM struct {
	Runs  []jsonRun `json:"runs"`
	P50us float64   `json:"p50_us"`
	P99us float64   `json:"p99_us"`
	PPS   float64   `json:"pkts_per_s"`
}

// jsonOut is the whole JSON report; Ratio holds chsnap/QEMU for p50_us,
// p99_us (lower is better) and pkts_per_s (higher is better).
type jsonOut struct {
	PayloadBytes int                `json:"payload_bytes"`
	Count        int                `json:"count"`
	Warmup       int                `json:"warmup"`
	Window       int                `json:"window"`
	DurationS    float64            `json:"duration_s"`
	Runs         int                `json:"runs"`
	Accel        string             `json:"qemu_accel"`
	VMMs         map[string]jsonVMM `json:"vmms"`
	Ratio        map[string]float64 `json:"ratio_chsnap_qemu,omitempty"`
}

func jsonReport(c config, results map[string][]runResult) jsonOut {
	out := jsonOut{PayloadBytes: c.size, Count: c.count, Warmup: c.warmup, Window: c.window,
		DurationS: c.duration.Seconds(), Runs: c.runs, Accel: c.accel, VMMs: map[string]jsonVMM{}}
	for vmm, rs := range results {
		s := summarize(c, rs)
		v := jsonVMM{P50us: s.P50us, P99us: s.P99us, PPS: s.PPS}
		for _, r := range rs {
			v.Runs = append(v.Runs, jsonRun{P50us: micros(r.P50), P99us: micros(r.P99), PPS: r.Rate.PPS(),
				LatencyLost: r.LatLost, RateSent: r.Rate.Sent, RateLost: r.Rate.Lost, RateLate: r.Rate.Late,
				GuestNet: r.GuestNet})
		}
		out.VMMs[vmm] = v
	}
	ch, okc := out.VMMs["chsnap"]
	qe, okq := out.VMMs["qemu"]
	if okc && okq && qe.P50us > 0 && qe.P99us > 0 && qe.PPS > 0 {
		out.Ratio = map[string]float64{"p50_us": ch.P50us / qe.P50us, "p99_us": ch.P99us / qe.P99us, "pkts_per_s": ch.PPS / qe.PPS}
	}
	return out
}
