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
		ArgsUsage: "ARCHIVE|-",
		Description: "Rebuilds the saved VM in this process and resumes it where it stopped. Every\n" +
			"section and piece of state is checked before any vCPU runs: a damaged or\n" +
			"incompatible archive is refused and no guest starts. `-` reads the archive\n" +
			"from standard input.\n\n" +
			"Example:\n   chsnap restore vm.snap --name web1",
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "paused", Usage: "keep the VM paused after restoring it (resume it with `chsnap resume`)"},
			serialFlag(),
			kvmDeviceFlag(),
		}, apiSocketFlags()...),
		Action:       restoreAction,
		OnUsageError: commandUsageError,
	}
}

func restoreAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("restore takes one archive path (or - for standard input)")
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
		KVMDevice: c.String("kvm-device"),
		SerialOut: sink.out,
		SerialIn:  sink.in,
		Paused:    c.Bool("paused"),
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
	}
	return serveAndRun(c, m, sock, info)
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
