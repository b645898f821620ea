package main

import (
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/chsnap/chsnap/vm"
	"github.com/chsnap/chsnap/vm/api"
)

func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:      "restore",
		Usage:     "restore a VM from a snapshot archive and resume it",
		ArgsUsage: "[ARCHIVE|-]",
		Description: "Rebuilds the saved VM in this process and resumes it where it stopped. Every\n" +
			"section and piece of state is checked before any vCPU runs: a damaged or\n" +
			"incompatible archive is refused and no guest starts. `-` reads the archive\n" +
			"from standard input. With no archive, chsnap starts with only its API socket\n" +
			"and waits for PUT /api/v1/vm.restore (Cloud Hypervisor's RestoreConfig: the\n" +
			"VM stays paused unless \"resume\": true).\n\n" +
			"Examples:\n   chsnap restore vm.snap --name web1\n" +
			"   chsnap restore --api-socket /tmp/vmm.sock &\n" +
			"   curl --unix-socket /tmp/vmm.sock -X PUT http://localhost/api/v1/vm.restore \\\n" +
			"        -d '{\"source_url\": \"file:///srv/vm.snap\", \"resume\": true}'",
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "paused", Usage: "keep the VM paused after restoring it (resume it with `chsnap resume`)"},
			&cli.BoolFlag{Name: "allow-cpu-mismatch", Usage: "restore even if this host lacks CPU features the guest saw (listed as warnings); the guest may then fault"},
			serialFlag(),
			diskOverrideFlag(),
			kvmDeviceFlag(),
		}, apiSocketFlags()...),
		Action:       restoreAction,
		OnUsageError: commandUsageError,
	}
}

func restoreAction(c *cli.Context) error {
	if c.NArg() > 1 {
		return usagef("restore takes at most one archive path (or - for standard input)")
	}
	name := c.Args().First()
	serial, err := parseSerial(c.String("serial"))
	if err != nil {
		return usagef("--serial: %w", err)
	}
	sock, err := apiSocketPath(c)
	if err != nil {
		return err
	}
	disks, err := parseDiskOverrides(c.StringSlice("disk"))
	if err != nil {
		return usagef("%w", err)
	}
	if name == "" {
		return serveEmpty(c, serial, sock)
	}
	var (
		in    io.Reader
		total uint64
	)
	if name == "-" {
		if isTerminal(os.Stdin) {
			return usagef("restore -: standard input is a terminal, not an archive")
		}
		if serial.mode == "stdio" {
			return usagef("restore -: the archive comes on standard input, so the console cannot; use --serial off, file=PATH or fd=N")
		}
		in = os.Stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("archive: %w", err)
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil {
			total = uint64(fi.Size())
		}
		in = f
	}
	prog := newProgress(c.App.ErrWriter, "restoring "+name)
	prog.SetTotal(total)
	sink, err := serial.open(c.App.Writer)
	if err != nil {
		return err
	}
	defer sink.close()
	m, err := vm.Restore(&countingReader{r: in, p: prog}, vm.RestoreOptions{
		KVMDevice:        c.String("kvm-device"),
		SerialOut:        sink.out,
		SerialIn:         sink.in,
		Paused:           c.Bool("paused"),
		DiskPaths:        disks,
		AllowCPUMismatch: c.Bool("allow-cpu-mismatch"),
		Warn:             warner(c),
	})
	if err != nil {
		prog.Finish("")
		return fmt.Errorf("restore %s: %w", name, err)
	}
	prog.Finish(fmt.Sprintf("restored %s", name))
	cfg := m.Config()
	info := api.VMConfigInfo{
		CPUs:    api.CPUsConfig{BootVCPUs: cfg.CPUs, MaxVCPUs: cfg.CPUs},
		Memory:  api.MemoryConfig{Size: cfg.Memory},
		Payload: api.PayloadConfig{Kernel: cfg.KernelPath, Cmdline: cfg.Cmdline},
		Disks:   diskInfo(cfg.Disks),
	}
	return serveAndRun(c, newController(m, info), sock)
}

// serveEmpty runs a VMM with no VM: its API socket waits for vm.restore.
func serveEmpty(c *cli.Context, serial serialSpec, sock string) error {
	sink, err := serial.open(c.App.Writer)
	if err != nil {
		return err
	}
	defer sink.close()
	ctl := newController(nil, api.VMConfigInfo{})
	ctl.restoreOpt = vm.RestoreOptions{
		KVMDevice: c.String("kvm-device"), SerialOut: sink.out, SerialIn: sink.in,
		AllowCPUMismatch: c.Bool("allow-cpu-mismatch"), Warn: warner(c),
	}
	return serveAndRun(c, ctl, sock)
}

// warner prints one-line warnings on standard error.
func warner(c *cli.Context) func(string) {
	return func(s string) { fmt.Fprintf(c.App.ErrWriter, "chsnap: warning: %s\n", s) }
}

// countingReader reports bytes read to a progress line.
type countingReader struct {
	r io.Reader
	p *progress
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.p.Add(uint64(n))
	return n, err
}
