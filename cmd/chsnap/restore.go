package main

import (
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/chsnap/chsnap/fdmap"
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
			"Network devices get their taps again: --net-fd ID=FD binds an inherited\n" +
			"descriptor (each is checked: a tap, IFF_VNET_HDR as saved); nets that were run\n" +
			"with tap=NAME are reopened by name (in --netns) when no fd is given. Through the\n" +
			"API the descriptors come as SCM_RIGHTS with vm.restore and its \"net_fds\" list.\n\n" +
			"Examples:\n   chsnap restore vm.snap --name web1\n" +
			"   chsnap restore vm.snap --net-fd net0=3 3<>/dev/tap7\n" +
			"   chsnap restore --api-socket /tmp/vmm.sock &\n" +
			"   curl --unix-socket /tmp/vmm.sock -X PUT http://localhost/api/v1/vm.restore \\\n" +
			"        -d '{\"source_url\": \"file:///srv/vm.snap\", \"resume\": true}'",
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "paused", Usage: "keep the VM paused after restoring it (resume it with chsnap resume)"},
			&cli.BoolFlag{Name: "allow-cpu-mismatch", Usage: "restore even if this host lacks CPU features the guest saw (listed as warnings); the guest may then fault"},
			serialFlag(),
			diskOverrideFlag(),
			netFDFlag(),
			netnsFlag(),
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
	for _, s := range c.StringSlice("net-fd") {
		if _, _, err := fdmap.ParseNetFD(s); err != nil {
			return usagef("%w", err)
		}
	}
	if name == "" {
		if len(c.StringSlice("net-fd")) > 0 {
			return usagef("--net-fd needs an archive; with vm.restore send the fds over the API socket (SCM_RIGHTS)")
		}
		return serveEmpty(c, serial, sock)
	}
	// The inherited descriptors are taken first, so that whatever fails
	// next closes them (vm.Restore owns the set).
	netFDs, err := netFDSet(c.StringSlice("net-fd"))
	if err != nil {
		return err
	}
	handed := false
	defer func() {
		if !handed {
			netFDs.Close()
		}
	}()
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
	handed = true
	m, err := vm.Restore(&countingReader{r: in, p: prog}, vm.RestoreOptions{
		NetFDs:           netFDs,
		NetNS:            c.String("netns"),
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
		Net:     netInfo(cfg.Nets),
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
		NetNS: c.String("netns"),
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
