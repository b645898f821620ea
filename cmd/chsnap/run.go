package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/chsnap/chsnap/fdmap"
	"github.com/chsnap/chsnap/vm"
	"github.com/chsnap/chsnap/vm/api"
	"github.com/chsnap/chsnap/vm/boot"
)

// defaultCmdline suits a Linux guest on chsnap's machine: console on the
// UART, reboot through the i8042 (which ends the run), reboot on panic.
const defaultCmdline = "console=ttyS0 reboot=k panic=1"

// guestMarker is a string only the bundled test guest contains.
var guestMarker = []byte("chsnap-guest ready")

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "boot a VM and attach its serial console",
		ArgsUsage: " ",
		Description: "Boots a kernel (a bzImage, or an ELF vmlinux with a PVH entry note) on KVM.\n" +
			"With no --kernel it boots the bundled test guest. The run ends with status 0\n" +
			"when the guest powers off or reboots.\n\n" +
			"Examples:\n   chsnap run --cpus 2 --memory 1G --kernel vmlinuz --initrd initrd.img\n" +
			"   chsnap run --net id=net0,tap=tap0 --netns /var/run/netns/lab\n" +
			"   chsnap run --net id=net0,fd=3 3<>/dev/tap7   # a macvtap opened by the caller",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "kernel", Usage: "kernel image: bzImage or PVH vmlinux (default: the bundled test guest)", TakesFile: true},
			&cli.StringFlag{Name: "initrd", Usage: "initial ramdisk to load", TakesFile: true},
			&cli.StringFlag{Name: "cmdline", Usage: "kernel command line", Value: defaultCmdline},
			cpusFlag(),
			&cli.StringFlag{Name: "memory", Usage: "guest RAM, e.g. 512M or 2G (binary units; a bare number is MiB)", Value: vm.FormatSize(vm.DefaultMemory)},
			serialFlag(),
			diskFlag(),
			netFlag(),
			netnsFlag(),
			kvmDeviceFlag(),
		}, apiSocketFlags()...),
		Action:       runAction,
		OnUsageError: commandUsageError,
	}
}

func runAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("run takes no arguments (got %q); use --kernel PATH", c.Args().First())
	}
	topo, err := vm.ParseCPUs(c.String("cpus"))
	if err != nil {
		return usagef("--cpus: %w", err)
	}
	cfg := vm.Config{Shape: vm.Shape{Cmdline: c.String("cmdline"), CPUs: topo.CPUs(), Topology: topo}, Host: vm.Host{KVMDevice: c.String("kvm-device")}}
	mem, err := vm.ParseSize(c.String("memory"))
	if err != nil {
		return usagef("--memory: %w", err)
	}
	cfg.Memory = mem
	probe := cfg.Shape // the kernel is checked below, after the cheap checks
	if err := probe.Validate(); err != nil {
		return usagef("%w", err)
	}
	serial, err := parseSerial(c.String("serial"))
	if err != nil {
		return usagef("--serial: %w", err)
	}
	sock, err := apiSocketPath(c)
	if err != nil {
		return err
	}
	for _, s := range c.StringSlice("disk") {
		d, err := parseDisk(s)
		if err != nil {
			return usagef("%w", err)
		}
		cfg.Disks = append(cfg.Disks, d)
	}
	nets, err := parseNets(c.StringSlice("net"))
	if err != nil {
		return usagef("%w", err)
	}
	for _, n := range nets {
		// ids and MACs are checked here, before any descriptor is taken.
		probe.Nets = append(probe.Nets, vm.NetConfig{ID: n.id, MAC: n.mac})
	}
	probe.Disks = cfg.Disks
	if err := probe.Validate(); err != nil {
		return usagef("%w", err)
	}

	// Read and check every input file before touching /dev/kvm.
	kernelPath := c.String("kernel")
	if kernelPath == "" {
		if kernelPath, err = bundledGuest(); err != nil {
			return err
		}
	}
	if cfg.Kernel, err = os.ReadFile(kernelPath); err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	cfg.KernelPath = kernelPath
	if _, err := boot.ParseKernel(cfg.Kernel); err != nil {
		return fmt.Errorf("kernel %s: %w", kernelPath, err)
	}
	if p := c.String("initrd"); p != "" {
		if cfg.Initrd, err = os.ReadFile(p); err != nil {
			return fmt.Errorf("initrd: %w", err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return usagef("%w", err)
	}
	if err := checkDisks(cfg.Disks); err != nil {
		return err
	}
	// The taps last: from here vm.New owns them, failing or not.
	if cfg.Nets, err = netConfigs(nets, c.String("netns")); err != nil {
		return err
	}
	if isPVMHost() && !bytes.Contains(cfg.Kernel, guestMarker) {
		fmt.Fprintln(c.App.ErrWriter, "chsnap: note: this host's KVM is kvm_pvm, which emulates guest ring-0 code (~1M instructions/s): a stock kernel only gets through its early boot here")
	}

	// From here on chsnap owns the serial descriptor, if one was given.
	sink, err := serial.open(c.App.Writer)
	if err != nil {
		return err
	}
	defer sink.close()
	cfg.SerialOut, cfg.SerialIn = sink.out, sink.in

	m, err := vm.New(cfg)
	if err != nil {
		return err
	}
	info := api.VMConfigInfo{
		CPUs:    api.CPUsConfig{BootVCPUs: cfg.CPUs, MaxVCPUs: cfg.CPUs},
		Memory:  api.MemoryConfig{Size: cfg.Memory},
		Payload: api.PayloadConfig{Kernel: c.String("kernel"), Cmdline: cfg.Cmdline, Initramfs: c.String("initrd")},
		Disks:   diskInfo(cfg.Disks),
		Net:     netInfo(m.Config().Nets),
	}
	if err := serveAndRun(c, newController(m, info), sock); err != nil {
		return err
	}
	if err := sink.err(); err != nil {
		fmt.Fprintf(c.App.ErrWriter, "chsnap: serial output: %v\n", err)
	}
	return nil
}

// serialFlag is --serial, shared by run and restore.
func serialFlag() cli.Flag {
	return &cli.StringFlag{Name: "serial", Usage: "serial console: stdio, file=PATH (output only), fd=N (an inherited descriptor, used both ways, closed once at exit) or off", Value: "stdio"}
}

// kvmDeviceFlag is the hidden --kvm-device, shared by run and restore.
func kvmDeviceFlag() cli.Flag {
	return &cli.StringFlag{Name: "kvm-device", Usage: "KVM device node", Value: "/dev/kvm", Hidden: true}
}

// serialSpec is a parsed --serial value.
type serialSpec struct {
	mode string // stdio, file, fd, off
	path string
	fd   int
}

func parseSerial(s string) (serialSpec, error) {
	switch {
	case s == "stdio" || s == "off":
		return serialSpec{mode: s}, nil
	case strings.HasPrefix(s, "file="):
		p := strings.TrimPrefix(s, "file=")
		if p == "" {
			return serialSpec{}, errors.New("file= needs a path")
		}
		return serialSpec{mode: "file", path: p}, nil
	case strings.HasPrefix(s, "fd="):
		fd, err := fdmap.ParseFD(strings.TrimPrefix(s, "fd="))
		if err != nil {
			return serialSpec{}, err
		}
		return serialSpec{mode: "fd", fd: fd}, nil
	}
	return serialSpec{}, fmt.Errorf("%q is not one of stdio, file=PATH, fd=N, off", s)
}

// serialSink is the host end of the serial console. It owns the file it
// opened or adopted and closes it exactly once.
type serialSink struct {
	out   io.Writer
	in    io.Reader
	file  *os.File // owned; nil for stdio and off
	wrErr *errWriter
}

func (s serialSpec) open(stdout io.Writer) (*serialSink, error) {
	switch s.mode {
	case "stdio":
		w := &errWriter{w: stdout}
		return &serialSink{out: w, in: os.Stdin, wrErr: w}, nil
	case "off":
		return &serialSink{}, nil
	case "file":
		f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, fmt.Errorf("--serial file: %w", err)
		}
		w := &errWriter{w: f}
		return &serialSink{out: w, file: f, wrErr: w}, nil
	case "fd":
		f, err := fdmap.Adopt(s.fd, fmt.Sprintf("serial fd %d", s.fd))
		if err != nil {
			return nil, fmt.Errorf("--serial: %w", err)
		}
		w := &errWriter{w: f}
		sink := &serialSink{out: w, file: f, wrErr: w}
		if readable(f) {
			sink.in = f
		}
		return sink, nil
	}
	return nil, fmt.Errorf("--serial: unknown mode %q", s.mode)
}

func (s *serialSink) close() {
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
}

func (s *serialSink) err() error {
	if s.wrErr == nil {
		return nil
	}
	return s.wrErr.first
}

// errWriter keeps the guest running when the console sink fails: it drops
// output after the first error and remembers that error.
type errWriter struct {
	w     io.Writer
	first error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.first != nil {
		return len(p), nil
	}
	if _, err := e.w.Write(p); err != nil {
		e.first = err
	}
	return len(p), nil
}

// bundledGuest finds the test guest that ships with chsnap: $CHSNAP_GUEST,
// then chsnap-guest.bzImage beside the executable, then the build output of
// the source tree the executable was built in.
func bundledGuest() (string, error) {
	if p := os.Getenv("CHSNAP_GUEST"); p != "" {
		return p, nil
	}
	var tried []string
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		for _, p := range []string{
			filepath.Join(dir, "chsnap-guest.bzImage"),
			filepath.Join(dir, "..", "testdata", "guest", "build", "guest.bzImage"),
		} {
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
			tried = append(tried, p)
		}
	}
	return "", fmt.Errorf("no --kernel given and the bundled test guest is missing (looked for %s; run `make` to build it, or set CHSNAP_GUEST)", strings.Join(tried, ", "))
}

// isPVMHost reports whether /dev/kvm is provided by kvm_pvm.
func isPVMHost() bool {
	_, err := os.Stat("/sys/module/kvm_pvm")
	return err == nil
}
