// Command blkbench measures block I/O from the test guest through virtio-blk:
// sequential read and write throughput and 4 KiB random IOPS, on a raw and on
// a qcow2 image, for chsnap and for QEMU (-M microvm, KVM, the same guest,
// the same kind of image) in the same run, and prints the medians as a table
// with the ratio chsnap/QEMU (higher is better).
//
//	go run ./bench/blkbench -chsnap bin/chsnap -guest bin/chsnap-guest.bzImage
//
// Each repetition makes a fresh image with qemu-img (qcow2 with no
// preallocation), boots one VMM on it and runs `blkbench` in the guest for
// seqwrite, seqread, randwrite and randread in that order, so that reads
// hit blocks written before (allocated clusters on qcow2; randread uses
// randwrite's seed and so reads the blocks it wrote). A pass is timed on
// the host from sending the command line to reading the reply. The guest
// keeps one request in flight: 64 KiB requests for the sequential passes,
// 4 KiB ones for the random passes.
package main

import (
	"errors"
	"flag"
	"fmt"
	"github.com/chsnap/chsnap/bench/internal/vmcon"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

type config struct {
	chsnap, guest, qemu, qemuImg, accel string
	memory, size                        string
	seqMiB, randMiB                     int
	runs                                int
	dir                                 string
	formats                             []string
	vmms                                []string
	qemuExtra                           []string
}

// modes are the guest's blkbench passes, in the order they run.
var modes = []string{"seqwrite", "seqread", "randwrite", "randread"}

// reqBytes is the request size the guest reported for each mode under each
// VMM (they differ only if a device's size_max is below 64 KiB).
var reqBytes = map[string]map[string]bool{}

func main() {
	var c config
	flag.StringVar(&c.chsnap, "chsnap", "bin/chsnap", "chsnap binary")
	flag.StringVar(&c.guest, "guest", "bin/chsnap-guest.bzImage", "test guest bzImage")
	flag.StringVar(&c.qemu, "qemu", "qemu-system-x86_64", "QEMU binary")
	flag.StringVar(&c.qemuImg, "qemu-img", "qemu-img", "qemu-img binary")
	flag.StringVar(&c.accel, "accel", "kvm", "QEMU accelerator (tcg only to try the QEMU part without KVM)")
	flag.StringVar(&c.memory, "memory", "256M", "guest memory")
	flag.StringVar(&c.size, "size", "256M", "image size (qemu-img create)")
	flag.IntVar(&c.seqMiB, "seq", 32, "MiB per sequential pass")
	flag.IntVar(&c.randMiB, "rand", 8, "MiB per random pass (4 KiB requests)")
	flag.IntVar(&c.runs, "runs", 3, "repetitions; the median is reported")
	flag.StringVar(&c.dir, "dir", "", "directory for the images (default: a new one under $TMPDIR)")
	formats := flag.String("formats", "raw,qcow2", "comma-separated image formats")
	vmms := flag.String("vmms", "chsnap,qemu", "comma-separated VMMs to run")
	qemuExtra := flag.String("qemu-args", "", "extra QEMU arguments, space-separated (e.g. \"-global virtio-mmio.ioeventfd=off\")")
	flag.Parse()
	c.formats = splitList(*formats)
	c.vmms = splitList(*vmms)
	c.qemuExtra = strings.Fields(*qemuExtra)
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "blkbench:", err)
		os.Exit(1)
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// key names one measurement: format, VMM and mode.
type key struct{ format, vmm, mode string }

func run(c config) error {
	if c.runs < 1 {
		return errors.New("-runs must be at least 1")
	}
	if c.seqMiB < 1 || c.randMiB < 1 {
		return errors.New("-seq and -rand must be at least 1 MiB")
	}
	for _, f := range c.formats {
		if f != "raw" && f != "qcow2" {
			return fmt.Errorf("-formats: unknown format %q (raw, qcow2)", f)
		}
	}
	for _, v := range c.vmms {
		if v != "chsnap" && v != "qemu" {
			return fmt.Errorf("-vmms: unknown VMM %q (chsnap, qemu)", v)
		}
	}
	if c.dir == "" {
		d, err := os.MkdirTemp("", "blkbench")
		if err != nil {
			return fmt.Errorf("image directory: %w", err)
		}
		defer os.RemoveAll(d)
		c.dir = d
	}
	secs := map[key][]float64{}
	start := time.Now()
	for _, format := range c.formats {
		for rep := range c.runs {
			// Alternate which VMM goes first, so neither always runs on a
			// colder (or warmer) host.
			order := slices.Clone(c.vmms)
			if rep%2 == 1 {
				slices.Reverse(order)
			}
			for _, vmm := range order {
				got, err := onePass(c, format, vmm, rep)
				if err != nil {
					return fmt.Errorf("%s on %s, repetition %d: %w", vmm, format, rep+1, err)
				}
				for mode, s := range got {
					k := key{format, vmm, mode}
					secs[k] = append(secs[k], s)
				}
				fmt.Fprintf(os.Stderr, "blkbench: %s %s rep %d: %s\n", format, vmm, rep+1, describe(c, got))
			}
		}
	}
	printTable(os.Stdout, c, secs)
	fmt.Fprintf(os.Stderr, "blkbench: whole run %v\n", time.Since(start).Round(time.Second))
	return nil
}

// describe summarises one repetition for the progress log.
func describe(c config, got map[string]float64) string {
	var parts []string
	for _, m := range modes {
		parts = append(parts, fmt.Sprintf("%s %.1f MB/s", m, mbps(c.mib(m), got[m])))
	}
	return strings.Join(parts, ", ")
}

// mib is the size of mode's pass.
func (c config) mib(mode string) int {
	if strings.HasPrefix(mode, "seq") {
		return c.seqMiB
	}
	return c.randMiB
}

func mbps(mib int, secs float64) float64 { return float64(mib) * (1 << 20) / secs / 1e6 }

// onePass makes a fresh image, boots vmm on it and times every mode.
func onePass(c config, format, vmm string, rep int) (map[string]float64, error) {
	img := filepath.Join(c.dir, fmt.Sprintf("disk-%s-%s-%d.%s", vmm, format, rep, format))
	if out, err := exec.Command(c.qemuImg, "create", "-q", "-f", format, img, c.size).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("qemu-img create %s: %w: %s", img, err, strings.TrimSpace(string(out)))
	}
	defer os.Remove(img)
	var cmd *exec.Cmd
	switch vmm {
	case "chsnap":
		cmd = exec.Command(c.chsnap, "run", "--kernel", c.guest, "--cpus", "1", "--memory", c.memory,
			"--disk", "id=disk0,path="+img+",format="+format)
	default:
		cpu := "host,-arch-capabilities"
		if c.accel != "kvm" {
			cpu = "max"
		}
		// QEMU 7.2 microvm describes virtio-mmio transports to the guest
		// only in the DSDT when ACPI is on, so the command-line word that
		// the test guest reads is passed here (transport 0, GSI unused:
		// the guest polls).
		cmd = exec.Command(c.qemu, "-M", "microvm", "-accel", c.accel, "-cpu", cpu, "-smp", "1", "-m", c.memory,
			"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio", "-no-reboot",
			"-kernel", c.guest, "-append", "virtio_mmio.device=512@0xfeb00000:24",
			"-global", "virtio-mmio.force-legacy=false",
			"-drive", "id=d0,file="+img+",format="+format+",if=none",
			"-device", "virtio-blk-device,drive=d0,bus=virtio-mmio-bus.0")
		cmd.Args = append(cmd.Args, c.qemuExtra...)
	}
	p, err := vmcon.Start(vmm, cmd)
	if err != nil {
		return nil, err
	}
	defer p.Kill()
	if _, err := p.Expect(`chsnap-guest ready`, 60*time.Second); err != nil {
		return nil, err
	}
	l, err := p.Command("blk", `^(blk |error)`, 30*time.Second)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(l.Text, "blk devs=1 ") {
		return nil, fmt.Errorf("guest sees no single disk: %q", l.Text)
	}
	got := map[string]float64{}
	rx := regexp.MustCompile(`^blkbench ok (\S+) (\d+) requests=(\d+) bytes=(\d+)$`)
	for _, mode := range modes {
		seed := 1
		cmdline := fmt.Sprintf("blkbench 0 %s %d %d", mode, c.mib(mode), seed)
		sent := time.Now()
		l, err := p.Command(cmdline, `^(blkbench |error)`, 5*time.Minute)
		if err != nil {
			return nil, err
		}
		m := rx.FindStringSubmatch(l.Text)
		if m == nil || m[1] != mode || m[2] != strconv.Itoa(c.mib(mode)) {
			return nil, fmt.Errorf("%q: reply %q", cmdline, l.Text)
		}
		got[mode] = l.At.Sub(sent).Seconds()
		if reqBytes[mode] == nil {
			reqBytes[mode] = map[string]bool{}
		}
		reqBytes[mode][m[4]] = true
	}
	return got, nil
}
