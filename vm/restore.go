package vm

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"slices"
	"sync"

	"github.com/chsnap/chsnap/fdmap"
	"github.com/chsnap/chsnap/formats"
	"github.com/chsnap/chsnap/kvmstate"
	"github.com/chsnap/chsnap/memdump"
	"golang.org/x/sys/unix"
)

// RestoreOptions tunes a restore.
type RestoreOptions struct {
	// KVMDevice is the KVM device node; empty means /dev/kvm.
	KVMDevice string
	// SerialOut and SerialIn connect the restored UART, as in Config.
	SerialOut io.Writer
	SerialIn  io.Reader
	// Paused keeps every vCPU paused after Run starts: nothing of the guest
	// runs until Resume.
	Paused bool
	// Progress, if set, is called with bytes of guest RAM loaded so far.
	Progress func(done, total uint64)
	// DiskPaths points disks (by id) at other image files than the ones the
	// archive names, e.g. copies; each must still be the same image
	// (format, size, header).
	DiskPaths map[string]string
	// AllowCPUMismatch restores even when this host does not support every
	// CPU feature the guest saw (the guest may then fault on them).
	AllowCPUMismatch bool
	// Warn receives one-line warnings (CPU differences allowed, a TSC that
	// cannot be scaled); nil logs them to Logger.
	Warn func(string)
	// Logger is the restored VM's logger, as in Config.
	Logger *log.Logger
	// NetFDs holds the tap descriptors offered for the archive's nets
	// (--net-fd, or SCM_RIGHTS with vm.restore). Restore takes ownership
	// of the set: it binds every descriptor to its device, checking each
	// (fdmap.Set.Bind), or closes them all; nil offers none. A net that
	// chsnap opened by tap name and for which no descriptor is offered is
	// reopened by name.
	NetFDs *fdmap.Set
	// NetNS is the network namespace (a path such as /proc/PID/ns/net) in
	// which taps are reopened by name; empty means chsnap's own.
	NetNS string
}

// Restore rebuilds a VM from an archive read from r, ready to Run. The
// whole archive is read and checked first (readArchive: every section,
// every chunk of guest memory, the config against this host's limits), the
// disks opened and checked and the taps bound, all before /dev/kvm is
// opened: a refused archive prepares nothing of KVM and starts no guest. On
// error everything created so far is released.
func Restore(r io.Reader, opt RestoreOptions) (_ *VM, err error) {
	set := opt.NetFDs
	if set == nil {
		set = &fdmap.Set{}
	}
	defer set.Close() // closes nothing once Bind has run
	a, err := readArchive(r, readOptions{progress: opt.Progress, diskPaths: opt.DiskPaths, memName: "chsnap-guest-ram", host: true})
	if err != nil {
		return nil, err
	}
	st, cfg := a.st, a.cfg
	cfg.Host = Host{KVMDevice: opt.KVMDevice, SerialOut: opt.SerialOut, SerialIn: opt.SerialIn, Logger: opt.Logger}
	images, err := openDisks(cfg.Disks, st.Disks)
	if err != nil {
		a.mem.Close()
		return nil, err
	}
	// Every tap is bound and checked before /dev/kvm is touched: a refused
	// descriptor starts nothing.
	if err := bindNets(&cfg, st.Config.Nets, set, opt.NetNS); err != nil {
		closeDisks(images)
		a.mem.Close()
		return nil, err
	}
	v, err := newMachine(cfg, a.mem, images)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			v.abort()
		}
	}()
	warn := opt.Warn
	if warn == nil {
		warn = func(s string) { v.logf("warning: %s", s) }
	}
	if err := v.checkCPUs(st, opt.AllowCPUMismatch, warn); err != nil {
		return nil, err
	}
	if v.dev, err = newDevices(v, st); err != nil {
		return nil, err
	}
	v.kickPending = true
	// vCPUs first, then the VM-wide state (Firecracker's order): the
	// irqchip and PIT come back onto vCPUs whose LAPICs are already set.
	canScale := false
	if n, err := v.sys.CheckExtension(kvmstate.CapTSCControl); err == nil && n > 0 {
		canScale = true
	}
	// The kvmclock first: each vCPU sets its TSC against it (restoreClock).
	plan, err := v.restoreClock(st, 0)
	if err != nil {
		return nil, err
	}
	var tscWarn sync.Once
	err = v.createVCPUs(func(id int, cpu *kvmstate.VCPU) error {
		state := st.VCPUs[id]
		state.MSRs = withoutIgnoredMSRs(state.MSRs)
		// A fresh vCPU reports this host's TSC rate.
		if host, err := cpu.TSCKHz(); err == nil {
			if _, w := TSCScaling(state.TSCKHz, host, canScale); w != "" {
				tscWarn.Do(func() { warn(w) })
				state.TSCKHz = 0 // keep the host's rate rather than fail
			}
		}
		if err := cpu.RestoreState(&state); err != nil {
			return fmt.Errorf("restore vCPU %d: %w", id, err)
		}
		if err := plan.Apply(cpu, id, savedMSR(&state, msrIA32TSCDeadline)); err != nil {
			return fmt.Errorf("restore vCPU %d: tsc: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := v.kvm.RestoreState(&st.VM); err != nil {
		return nil, fmt.Errorf("restore VM state: %w", err)
	}
	// The IOAPIC was just overwritten: interrupts the devices raised while
	// being restored are gone from it. Raise the pending ones again.
	if err := v.dev.reassertIRQs(); err != nil {
		return nil, err
	}
	if opt.Paused {
		// Park every vCPU before it can run: they drain their mailbox
		// before the first KVM_RUN.
		v.pauseMu.Lock()
		v.resume = make(chan struct{})
		acks := make(chan int, len(v.cpus))
		for _, c := range v.cpus {
			c.do(c.parkFunc(v.resume, acks))
		}
		v.paused = true
		v.restored = st
		v.pauseMu.Unlock()
	}
	return v, nil
}

// ArchiveReport describes a verified archive.
type ArchiveReport struct {
	CPUs    int               `json:"cpus"`
	Memory  uint64            `json:"memory"`
	Cmdline string            `json:"cmdline"`
	Kernel  string            `json:"kernel,omitempty"`
	Devices []string          `json:"devices"`
	Memstat memdump.DumpStats `json:"memory_stats"`
	Summary formats.Summary   `json:"archive"`
	Hosts   []hostResource    `json:"host_resources"`
}

// VerifyArchive reads a whole archive as Restore would — every checksum,
// every state section decoded and checked, guest memory decompressed into a
// scratch memory and every chunk's hash compared — without KVM. On error
// the report holds what was read before the damage (nil if not even the
// archive's header was), for a caller that shows it.
func VerifyArchive(r io.Reader) (*ArchiveReport, error) {
	a, err := readArchive(r, readOptions{memName: "chsnap-verify"})
	if a.mem != nil {
		a.mem.Close()
	}
	var rep *ArchiveReport
	if a.summary != nil {
		rep = &ArchiveReport{Summary: *a.summary, Memstat: a.stats}
		if st := a.st; st != nil {
			rep.CPUs, rep.Memory, rep.Cmdline, rep.Kernel = st.Config.CPUs, st.Config.Memory, st.Config.Cmdline, st.Config.Kernel
			rep.Devices, rep.Hosts = st.deviceIDs(), st.Resources.Resources
		}
	}
	return rep, err
}

// readOptions tunes readArchive.
type readOptions struct {
	progress  func(done, total uint64)
	diskPaths map[string]string // disks pointed elsewhere (RestoreOptions.DiskPaths)
	memName   string            // the guest memory's memfd name
	host      bool              // check the config against this host's limits
}

// archiveRead is what readArchive read.
type archiveRead struct {
	st  *savedState
	cfg Config          // the VM's shape, from the config section
	mem *memdump.Memory // guest RAM loaded from the archive; the caller's
	// stats and summary describe the memory and the sections read, as far
	// as they were read on error.
	stats   memdump.DumpStats
	summary *formats.Summary
}

// readArchive reads and checks a whole archive in the two phases the format
// lays out: first the config section, which gives the VM's shape
// (readConfig); then, into guest memory of that shape created here, not
// yet known to any KVM VM, every other section (readSections). It opens
// nothing of KVM: a caller builds the machine only with the checked result
// in hand. On error the memory is released and the result holds only the
// config (if read) and the summary.
func readArchive(r io.Reader, opt readOptions) (a archiveRead, err error) {
	ar, err := formats.NewReader(r)
	if err != nil {
		return a, err
	}
	defer func() {
		s := ar.Summary()
		a.summary = &s
		if err != nil && a.mem != nil {
			a.mem.Close()
			a.mem = nil
		}
	}()
	if a.st, a.cfg, err = readConfig(ar, opt.diskPaths); err != nil {
		return a, err
	}
	if opt.host {
		if err := checkHostLimits(a.cfg); err != nil {
			return a, err
		}
	}
	if a.mem, err = memdump.New(opt.memName, a.cfg.Memory); err != nil {
		return a, err
	}
	a.stats, err = readSections(ar, a.st, a.mem, opt.progress)
	return a, err
}

// readConfig is phase one of readArchive: the first section, which must be
// the config, decoded and checked as a VM configuration.
func readConfig(ar *formats.Reader, diskPaths map[string]string) (*savedState, Config, error) {
	sec, err := ar.Next()
	if errors.Is(err, io.EOF) {
		return nil, Config{}, fmt.Errorf("%w: no config section", errNotRestorable)
	}
	if err != nil {
		return nil, Config{}, err
	}
	if sec.Kind != formats.KindConfig {
		return nil, Config{}, fmt.Errorf("%w: the first section is %s, not the config", errNotRestorable, sec.Kind)
	}
	st := &savedState{}
	if err := strictUnmarshal(sec.Payload, &st.Config); err != nil {
		return nil, Config{}, fmt.Errorf("config section: %w", err)
	}
	cfg := Config{KernelPath: st.Config.Kernel, Shape: Shape{Cmdline: st.Config.Cmdline, CPUs: st.Config.CPUs, Memory: st.Config.Memory}}
	if st.Config.Topology != nil {
		cfg.Topology = *st.Config.Topology
	}
	for _, d := range st.Config.Disks {
		sd := diskSaved{Record: d}
		if p, ok := diskPaths[d.ID]; ok {
			sd.Record.Path, sd.moved = p, true
		}
		st.Disks = append(st.Disks, sd)
		cfg.Disks = append(cfg.Disks, DiskConfig{ID: d.ID, Path: sd.Record.Path, Format: d.Format, ReadOnly: d.ReadOnly})
	}
	for id := range diskPaths {
		if !slices.ContainsFunc(st.Config.Disks, func(d diskRecord) bool { return d.ID == id }) {
			return nil, Config{}, fmt.Errorf("%w: --disk %s: the archive has no disk %s", errNotRestorable, id, id)
		}
	}
	for _, n := range st.Config.Nets {
		mac, err := net.ParseMAC(n.MAC)
		if err != nil {
			return nil, Config{}, fmt.Errorf("config section: net %s: %w", n.ID, err)
		}
		if n.FDs != 1 {
			return nil, Config{}, fmt.Errorf("%w: net %s needs %d tap fds; this chsnap supports 1", errNotRestorable, n.ID, n.FDs)
		}
		st.Nets = append(st.Nets, netSaved{Record: n})
		cfg.Nets = append(cfg.Nets, NetConfig{ID: n.ID, MAC: mac, TapName: n.Tap})
	}
	if err := cfg.Shape.Validate(); err != nil {
		return nil, Config{}, fmt.Errorf("config section: %w", err)
	}
	st.VCPUs = make([]kvmstate.VCPUState, cfg.CPUs)
	return st, cfg, nil
}

// readSections is phase two of readArchive: every section after the config,
// decoded and checked into st, guest memory loaded into mem, up to the
// verified table and trailer; then the whole state is checked as one.
func readSections(ar *formats.Reader, st *savedState, mem *memdump.Memory, progress func(done, total uint64)) (stats memdump.DumpStats, err error) {
	loader := memdump.NewLoader(mem, memdump.LoadOptions{Progress: progress})
	defer func() {
		if loader != nil {
			loader.Finish() // stop its workers before the memory goes
		}
	}()
	var (
		haveVM     bool
		haveRes    bool
		haveVCPU   = make([]bool, len(st.VCPUs))
		table      = st.deviceTable()
		haveDevice = make([]bool, len(table))
	)
	for {
		sec, err := ar.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return stats, err
		}
		switch sec.Kind {
		case formats.KindConfig:
			return stats, fmt.Errorf("%w: two config sections", errNotRestorable)
		case formats.KindHostResource:
			if haveRes {
				return stats, fmt.Errorf("%w: two host-resource sections", errNotRestorable)
			}
			haveRes = true
			if err := strictUnmarshal(sec.Payload, &st.Resources); err != nil {
				return stats, fmt.Errorf("host-resource section: %w", err)
			}
		case formats.KindVCPU:
			if int(sec.ID) >= len(haveVCPU) || haveVCPU[sec.ID] {
				return stats, fmt.Errorf("%w: vCPU section %d is out of range or repeated (the VM has %d vCPUs)", errNotRestorable, sec.ID, len(haveVCPU))
			}
			haveVCPU[sec.ID] = true
			if err := strictUnmarshal(sec.Payload, &st.VCPUs[sec.ID]); err != nil {
				return stats, fmt.Errorf("vCPU %d section: %w", sec.ID, err)
			}
		case formats.KindVM:
			if haveVM {
				return stats, fmt.Errorf("%w: two VM sections", errNotRestorable)
			}
			haveVM = true
			if err := strictUnmarshal(sec.Payload, &st.VM); err != nil {
				return stats, fmt.Errorf("VM section: %w", err)
			}
		case formats.KindDevice:
			if int(sec.ID) < len(haveDevice) && haveDevice[sec.ID] {
				return stats, fmt.Errorf("%w: device section %d repeated", errNotRestorable, sec.ID)
			}
			if err := decodeDevice(table, sec.ID, sec.Payload); err != nil {
				return stats, fmt.Errorf("%w: %w", errNotRestorable, err)
			}
			haveDevice[sec.ID] = true
		case formats.KindMemoryChunk, formats.KindMemoryIndex:
			if err := loader.Add(sec); err != nil {
				return stats, err
			}
		default:
			// A kind this version does not know, from a newer minor of the
			// same major: skipped, as formats/SPEC.md allows.
		}
	}
	if !haveRes || !haveVM {
		return stats, fmt.Errorf("%w: missing host-resource or VM section", errNotRestorable)
	}
	for i, ok := range haveVCPU {
		if !ok {
			return stats, fmt.Errorf("%w: no state for vCPU %d", errNotRestorable, i)
		}
	}
	for i, ok := range haveDevice {
		if !ok {
			return stats, fmt.Errorf("%w: no state for device %s", errNotRestorable, table[i].id)
		}
	}
	if err := checkResources(st); err != nil {
		return stats, err
	}
	stats, err = loader.Finish()
	loader = nil
	if err != nil {
		return stats, fmt.Errorf("guest memory: %w", err)
	}
	return stats, nil
}

// checkHostLimits refuses a VM shape this host cannot hold: more guest RAM
// than the host has, RAM and swap together. It runs before any guest
// memory is created and before /dev/kvm is opened.
func checkHostLimits(cfg Config) error {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return nil // no figure to check against; KVM and mmap still refuse what they cannot do
	}
	unit := uint64(si.Unit)
	if unit == 0 {
		unit = 1
	}
	if host := (uint64(si.Totalram) + uint64(si.Totalswap)) * unit; cfg.Memory > host {
		return fmt.Errorf("%w: the archive's VM has %s of memory, more than this host's %s (RAM and swap)", errNotRestorable, FormatSize(cfg.Memory), FormatSize(host))
	}
	return nil
}

// checkCPUs compares every vCPU's saved CPUID with what this host supports
// and refuses the restore on a difference unless allow.
func (v *VM) checkCPUs(st *savedState, allow bool, warn func(string)) error {
	seen := map[string]bool{}
	var errs []error
	for i := range st.VCPUs {
		warnings, err := CheckCPUCompat(st.VCPUs[i].CPUID, 0, v.cpuid, 0)
		for _, w := range warnings {
			if !seen[w] {
				seen[w] = true
				warn(w)
			}
		}
		if err != nil {
			if !allow {
				return fmt.Errorf("vCPU %d: %w (restore anyway with --allow-cpu-mismatch)", i, err)
			}
			if !seen[err.Error()] {
				seen[err.Error()] = true
				errs = append(errs, err)
			}
		}
	}
	for _, err := range errs {
		warn(fmt.Sprintf("restoring despite: %v", err))
	}
	return nil
}

// checkResources refuses host resources this chsnap cannot supply again,
// and resources that name no device of the archive or a device of another
// kind: the serial console is com1's, each disk's and net's its own.
func checkResources(st *savedState) error {
	kinds := map[string]string{deviceNames[devSerial]: "serial-console"}
	for _, d := range st.Disks {
		kinds[d.Record.ID] = "disk"
	}
	for _, n := range st.Nets {
		kinds[n.Record.ID] = "net"
	}
	seen := map[string]bool{}
	for _, res := range st.Resources.Resources {
		switch {
		case res.Kind == "serial-console" && res.FDs == 0:
		case res.Kind == "disk" && res.FDs == 0:
		case res.Kind == "net" && res.FDs == 1:
		default:
			return fmt.Errorf("%w: host resource %q of kind %q with %d fds is not supported", errNotRestorable, res.Device, res.Kind, res.FDs)
		}
		kind, ok := kinds[res.Device]
		if !ok {
			return fmt.Errorf("%w: host resource %q (%s) names no device of the archive", errNotRestorable, res.Device, res.Kind)
		}
		if kind != res.Kind {
			return fmt.Errorf("%w: host resource %q is a %s, but the device is a %s", errNotRestorable, res.Device, res.Kind, kind)
		}
		if seen[res.Device] {
			return fmt.Errorf("%w: host resource %q given twice", errNotRestorable, res.Device)
		}
		seen[res.Device] = true
	}
	return nil
}
