package main

import (
	"fmt"
	"io"
	"time"
)

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func mbps(bytes int64, d time.Duration) string {
	return fmt.Sprintf("%.0f MB/s", float64(bytes)/d.Seconds()/1e6)
}

func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func printTable(w io.Writer, c config, ch, qe vmResult, h hostResult) {
	fmt.Fprintf(w, "\nsnapshot of a %s guest after fillmix %d (1/2 zero, 1/4 text, 1/4 random pages), median of %d\n",
		c.memory, c.fillMiB, c.runs)
	if ch.ok() || qe.ok() {
		fmt.Fprintf(w, "%-30s %12s %12s %8s %6s\n", "", "chsnap", "QEMU", "ratio", "goal")
		row := func(name string, a, b time.Duration, aok, bok bool) {
			as, bs := "-", "-"
			if aok {
				as = a.Round(time.Millisecond).String()
			}
			if bok {
				bs = b.Round(time.Millisecond).String()
			}
			r := "-"
			if aok && bok {
				r = ratio(float64(a), float64(b))
			}
			fmt.Fprintf(w, "%-30s %12s %12s %8s %6s\n", name, as, bs, r, "<=0.5x")
		}
		var chs, qes, chr, qer time.Duration
		if ch.ok() {
			chs, chr = median(ch.save), median(ch.restore)
		}
		if qe.ok() {
			qes, qer = median(qe.save), median(qe.restore)
		}
		row("save (pause to file)", chs, qes, ch.ok(), qe.ok())
		as, bs, r := "-", "-", "-"
		if ch.ok() {
			as = mib(ch.size)
		}
		if qe.ok() {
			bs = mib(qe.size)
		}
		if ch.ok() && qe.ok() {
			r = ratio(float64(ch.size), float64(qe.size))
		}
		fmt.Fprintf(w, "%-30s %12s %12s %8s %6s\n", "archive size", as, bs, r, "<=0.5x")
		row("restore (start to answering)", chr, qer, ch.ok(), qe.ok())
		for _, v := range []struct {
			name string
			r    vmResult
		}{{"chsnap", ch}, {"QEMU", qe}} {
			if v.r.ok() {
				fmt.Fprintf(w, "  %s runs: save %v, restore %v\n", v.name, rounded(v.r.save), rounded(v.r.restore))
			}
		}
		fmt.Fprintln(w, "ratio = chsnap / QEMU (lower is better)")
	}
	if h.ok() {
		fmt.Fprintf(w, "\nhost limits on the same %s of guest data, median of %d\n", mib(h.bytes), c.runs)
		fmt.Fprintf(w, "  %-44s %s\n", "write + fsync", mbps(h.bytes, median(h.write)))
		fmt.Fprintf(w, "  %-44s %s\n", "read back (page cache)", mbps(h.bytes, median(h.read)))
		fmt.Fprintf(w, "  %-44s %s -> %s\n", "zstd level 1 as memdump, 1 worker", mbps(h.bytes, median(h.zstd1)), mib(h.compressed))
		fmt.Fprintf(w, "  %-44s %s\n", fmt.Sprintf("zstd level 1 as memdump, %d workers", h.workers), mbps(h.bytes, median(h.zstdN)))
		fmt.Fprintf(w, "  %-44s %s\n", "xxhash64", mbps(h.bytes, median(h.xxh)))
		fmt.Fprintln(w, "  (MB/s of guest data: zero pages count as data, as in a save)")
	}
}

func rounded(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}
