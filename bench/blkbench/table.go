package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// printTable prints, per format and mode, the median MB/s (and IOPS for the
// random passes) of each VMM and the ratio chsnap/QEMU.
func printTable(w io.Writer, c config, secs map[key][]float64) {
	fmt.Fprintf(w, "guest block I/O through virtio-blk, %s image, one request in flight, median of %d\n", c.size, c.runs)
	if len(c.qemuExtra) > 0 {
		fmt.Fprintf(w, "QEMU with %s\n", strings.Join(c.qemuExtra, " "))
	}
	fmt.Fprintf(w, "%-6s %-9s %8s %6s %22s %22s %7s\n", "format", "mode", "request", "MiB", "chsnap", "QEMU", "ratio")
	for _, format := range c.formats {
		for _, mode := range modes {
			var sizes []string
			for b := range reqBytes[mode] {
				sizes = append(sizes, humanBytes(b))
			}
			slices.Sort(sizes)
			req := strings.Join(sizes, "/")
			cells := map[string]string{}
			rate := map[string]float64{}
			for _, vmm := range c.vmms {
				s := secs[key{format, vmm, mode}]
				if len(s) == 0 {
					continue
				}
				t := median(s)
				rate[vmm] = mbps(c.mib(mode), t)
				cell := fmt.Sprintf("%.1f MB/s", rate[vmm])
				if strings.HasPrefix(mode, "rand") {
					iops := float64(c.mib(mode)) * (1 << 20) / 4096 / t
					cell = fmt.Sprintf("%.0f IOPS %s", iops, cell)
				}
				cells[vmm] = cell
			}
			ratio := "-"
			if rate["chsnap"] > 0 && rate["qemu"] > 0 {
				ratio = fmt.Sprintf("%.2fx", rate["chsnap"]/rate["qemu"])
			}
			fmt.Fprintf(w, "%-6s %-9s %8s %6d %22s %22s %7s\n", format, mode, req, c.mib(mode),
				cells["chsnap"], cells["qemu"], ratio)
		}
	}
	fmt.Fprintln(w, "ratio = chsnap / QEMU throughput (higher is better; above 1.00x chsnap is faster)")
}

// humanBytes turns a byte count from the guest's reply into "64 KiB".
func humanBytes(s string) string {
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || n <= 0 {
		return "?"
	}
	if n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}
