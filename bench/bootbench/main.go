// Command bootbench measures the time from process start to the test guest's
// ready line, for chsnap and for QEMU (-M microvm, KVM, the same guest) in the
// same run, and prints the medians as a table with ratios.
//
//	go run ./bench/bootbench -chsnap bin/chsnap -guest bin/chsnap-guest.bzImage
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	chsnap := flag.String("chsnap", "bin/chsnap", "chsnap binary")
	guest := flag.String("guest", "bin/chsnap-guest.bzImage", "test guest bzImage")
	qemu := flag.String("qemu", "qemu-system-x86_64", "QEMU binary")
	runs := flag.Int("runs", 7, "boots per configuration; the median is reported")
	cpuList := flag.String("cpus", "1,8", "comma-separated vCPU counts")
	mem := flag.String("memory", "256M", "guest memory")
	flag.Parse()
	if err := run(*chsnap, *guest, *qemu, *runs, *cpuList, *mem); err != nil {
		fmt.Fprintln(os.Stderr, "bootbench:", err)
		os.Exit(1)
	}
}

func run(chsnap, guest, qemu string, runs int, cpuList, mem string) error {
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err != nil {
		return fmt.Errorf("needs KVM to compare chsnap with QEMU: %w", err)
	} else {
		f.Close()
	}
	if runs < 1 {
		return errors.New("-runs must be at least 1")
	}
	fmt.Printf("boot to ready line, median of %d runs, memory %s\n", runs, mem)
	fmt.Printf("%-6s %12s %12s %8s\n", "vCPUs", "chsnap", "QEMU", "ratio")
	for _, s := range strings.Split(cpuList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("bad vCPU count %q", s)
		}
		ch, err := median(runs, func() (time.Duration, error) {
			return timeToReady(exec.Command(chsnap, "run", "--kernel", guest, "--cpus", fmt.Sprint(n), "--memory", mem))
		})
		if err != nil {
			return fmt.Errorf("chsnap, %d vCPUs: %w", n, err)
		}
		qe, err := median(runs, func() (time.Duration, error) {
			return timeToReady(exec.Command(qemu, "-M", "microvm", "-accel", "kvm", "-cpu", "host,-arch-capabilities",
				"-smp", fmt.Sprint(n), "-m", mem, "-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio",
				"-no-reboot", "-kernel", guest))
		})
		if err != nil {
			return fmt.Errorf("QEMU, %d vCPUs: %w", n, err)
		}
		fmt.Printf("%-6d %12s %12s %7.2fx\n", n, ch.Round(100*time.Microsecond), qe.Round(100*time.Microsecond), float64(ch)/float64(qe))
	}
	fmt.Println("ratio = chsnap / QEMU (lower is better; the goal is at most 0.5x)")
	return nil
}

func median(n int, f func() (time.Duration, error)) (time.Duration, error) {
	var ds []time.Duration
	for range n {
		d, err := f()
		if err != nil {
			return 0, err
		}
		ds = append(ds, d)
	}
	slices.Sort(ds)
	return ds[len(ds)/2], nil
}

// timeToReady starts cmd and returns the time until its console prints the
// guest's ready line, then kills it.
func timeToReady(cmd *exec.Cmd) (time.Duration, error) {
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	cmd.Stdin = nil
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	found := make(chan time.Duration, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "chsnap-guest ready") {
				found <- time.Since(start)
				io.Copy(io.Discard, out)
				return
			}
		}
		close(found)
	}()
	select {
	case d, ok := <-found:
		if !ok {
			return 0, fmt.Errorf("exited without a ready line: %s", strings.TrimSpace(stderr.String()))
		}
		return d, nil
	case <-time.After(60 * time.Second):
		return 0, fmt.Errorf("no ready line within 60s: %s", strings.TrimSpace(stderr.String()))
	}
}
