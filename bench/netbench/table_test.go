package main

import (
	"strings"
	"testing"
	"time"
)

func testResults() map[string][]runResult {
	us := time.Microsecond
	rate := func(replies, lost int) rateResult {
		return rateResult{Sent: replies + lost, Replies: replies, Lost: lost, Elapsed: 3 * time.Second}
	}
	return map[string][]runResult{
		// medians: p50 40 µs, p99 90 µs, 30000 pkts/s
		"chsnap": {
			{P50: 40 * us, P99: 90 * us, Rate: rate(90000, 0)},
			{P50: 50 * us, P99: 80 * us, Rate: rate(60000, 1)},
			{P50: 30 * us, P99: 200 * us, Rate: rate(150000, 0), LatLost: 2},
		},
		// medians: p50 80 µs, p99 120 µs, 20000 pkts/s
		"qemu": {
			{P50: 80 * us, P99: 120 * us, Rate: rate(60000, 0)},
			{P50: 70 * us, P99: 100 * us, Rate: rate(30000, 0)},
			{P50: 90 * us, P99: 130 * us, Rate: rate(90000, 0)},
		},
	}
}

// TestPrintTable checks the medians, the ratios and their direction.
func TestPrintTable(t *testing.T) {
	c := config{size: 64, runs: 3, count: 2000, warmup: 200, window: 32, duration: 3 * time.Second, accel: "kvm"}
	var b strings.Builder
	printTable(&b, c, testResults())
	out := b.String()
	for _, want := range []string{
		"64-byte payloads; median of 3 runs",
		"2000 sequential round trips after 200 warm-up; rate: 32 requests in flight for 3s",
		"                     chsnap           QEMU   ratio",
		"latency p50         40.0 µs        80.0 µs   0.50x",
		"latency p99         90.0 µs       120.0 µs   0.75x",
		"pkts/s                30000          20000   1.50x",
		// 3 lost of 3×2000 latency requests plus 300001 rate requests.
		"lost/sent          3/306001       0/186000",
		"for latency lower is better",
		"for pkts/s higher is better",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "not comparable") {
		t.Errorf("table under KVM warns about the accelerator:\n%s", out)
	}
}

// TestPrintTableOneVMM checks the table with QEMU only (-only qemu, TCG).
func TestPrintTableOneVMM(t *testing.T) {
	c := config{size: 64, runs: 1, count: 2000, window: 32, duration: time.Second, accel: "tcg"}
	res := testResults()
	delete(res, "chsnap")
	var b strings.Builder
	printTable(&b, c, res)
	out := b.String()
	for _, want := range []string{
		"latency p50               -        80.0 µs       -",
		"pkts/s                    -          20000       -",
		"QEMU with -accel tcg: its numbers are not comparable",
		"64-byte payloads; 1 run\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestJSONReport(t *testing.T) {
	c := config{size: 64, runs: 3, count: 2000, window: 32, duration: 3 * time.Second, accel: "kvm"}
	out := jsonReport(c, testResults())
	if got := out.VMMs["chsnap"]; got.P50us != 40 || got.P99us != 90 || got.PPS != 30000 || len(got.Runs) != 3 {
		t.Errorf("chsnap = %+v, want p50 40, p99 90, 30000 pkts/s, 3 runs", got)
	}
	if out.Ratio["p50_us"] != 0.5 || out.Ratio["p99_us"] != 0.75 || out.Ratio["pkts_per_s"] != 1.5 {
		t.Errorf("ratios %v, want p50 0.5, p99 0.75, pkts/s 1.5", out.Ratio)
	}
	if r := jsonReport(c, map[string][]runResult{"qemu": testResults()["qemu"]}).Ratio; r != nil {
		t.Errorf("ratios with one VMM: %v, want none", r)
	}
}

func TestConfigCheck(t *testing.T) {
	ok := config{runs: 3, count: 2000, window: 32, size: 64, duration: time.Second, lossAfter: time.Second, vmms: []string{"chsnap", "qemu"}}
	if err := ok.check(); err != nil {
		t.Fatalf("default config refused: %v", err)
	}
	for name, mod := range map[string]func(*config){
		"-only":   func(c *config) { c.vmms = []string{"firecracker"} },
		"-runs":   func(c *config) { c.runs = 0 },
		"-window": func(c *config) { c.window = 0 },
		"-size":   func(c *config) { c.size = 2000 },
		"-count":  func(c *config) { c.count = 0 },
	} {
		c := ok
		mod(&c)
		if err := c.check(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: check() = %v, want an error naming %s", name, err, name)
		}
	}
}
