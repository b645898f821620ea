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

// Restore rebuilds a VM from an archive read from r, ready to Run. Every
// section is verified and every piece of state checked before any vCPU is
// created, so a refused archive starts no guest; on error everything created
// so far is released.
func Restore(r io.Reader, opt RestoreOptions) (_ *VM, err error) {
	var v *VM
	defer func() {
		if err != nil && v != nil {
			v.abort()
		}
	}()
	set := opt.NetFDs
	if set == nil {
		set = &fdmap.Set{}
	}
	defer set.Close() // closes nothing once Bind has run
	st, _, err := readArchive(r, opt.Progress, opt.DiskPaths, func(cfg Config, nets []netRecord) (*memdump.Memory, error) {
		cfg.KVMDevice, cfg.SerialOut, cfg.SerialIn, cfg.Logger = opt.KVMDevice, opt.SerialOut, opt.SerialIn, opt.Logger
		// Every tap is bound and checked before /dev/kvm is touched: a
		// refused descriptor starts nothing.
		if err := bindNets(&cfg, nets, set, opt.NetNS); err != nil {
			return nil, err
		}
		var err error
		if v, err = newMachine(cfg); err != nil {
			return nil, err
		}
		return v.mem, nil
	})
	if err != nil {
		return nil, err
	}
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
	var tscWarn sync.Once
	err = v.createVCPUs(func(id int, cpu *kvmstate.VCPU) error {
		state := st.VCPUs[id]
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
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := v.kvm.RestoreState(&st.VM, false); err != nil {
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
// scratch memory and every chunk's hash compared — without KVM.
func VerifyArchive(r io.Reader) (*ArchiveReport, error) {
	var mem *memdump.Memory
	defer func() {
		if mem != nil {
			mem.Close()
		}
	}()
	st, stats, err := readArchive(r, nil, nil, func(cfg Config, _ []netRecord) (*memdump.Memory, error) {
		var err error
		mem, err = memdump.New("chsnap-verify", cfg.Memory)
		return mem, err
	})
	if err != nil {
		return nil, err
	}
	rep := &ArchiveReport{
		CPUs: st.Config.CPUs, Memory: st.Config.Memory, Cmdline: st.Config.Cmdline, Kernel: st.Config.Kernel,
		Devices: deviceNames[:], Memstat: stats, Hosts: st.Resources.Resources,
	}
	return rep, nil
}

// readArchive reads and checks every section of an archive. When the config
// section arrives it calls newMem to get guest memory of the right size (a
// VM's, or a scratch one) and loads the memory sections into it.
func readArchive(r io.Reader, progress func(done, total uint64), diskPaths map[string]string, newMem func(Config, []netRecord) (*memdump.Memory, error)) (_ *savedState, _ memdump.DumpStats, err error) {
	var stats memdump.DumpStats
	ar, err := formats.NewReader(r)
	if err != nil {
		return nil, stats, err
	}
	st := &savedState{}
	var (
		loader     *memdump.Loader
		haveConfig bool
		haveVM     bool
		haveRes    bool
		haveVCPU   []bool
		haveDevice []bool
	)
	defer func() {
		if loader != nil {
			loader.Finish() // stop its workers before the memory goes
		}
	}()
	for {
		sec, err := ar.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, stats, err
		}
		if !haveConfig && sec.Kind != formats.KindConfig {
			return nil, stats, fmt.Errorf("%w: the first section is %s, not the config", errNotRestorable, sec.Kind)
		}
		switch sec.Kind {
		case formats.KindConfig:
			if haveConfig {
				return nil, stats, fmt.Errorf("%w: two config sections", errNotRestorable)
			}
			haveConfig = true
			if err := strictUnmarshal(sec.Payload, &st.Config); err != nil {
				return nil, stats, fmt.Errorf("config section: %w", err)
			}
			cfg := Config{
				Kernel: []byte{0}, KernelPath: st.Config.Kernel, Cmdline: st.Config.Cmdline,
				CPUs: st.Config.CPUs, Memory: st.Config.Memory,
			}
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
					return nil, stats, fmt.Errorf("%w: --disk %s: the archive has no disk %s", errNotRestorable, id, id)
				}
			}
			for _, n := range st.Config.Nets {
				mac, err := net.ParseMAC(n.MAC)
				if err != nil {
					return nil, stats, fmt.Errorf("config section: net %s: %w", n.ID, err)
				}
				if n.FDs != 1 {
					return nil, stats, fmt.Errorf("%w: net %s needs %d tap fds; this chsnap supports 1", errNotRestorable, n.ID, n.FDs)
				}
				st.Nets = append(st.Nets, netSaved{Record: n})
				cfg.Nets = append(cfg.Nets, NetConfig{ID: n.ID, MAC: mac, TapName: n.Tap})
			}
			if err := cfg.Validate(); err != nil {
				return nil, stats, fmt.Errorf("config section: %w", err)
			}
			haveDevice = make([]bool, numDevices+len(st.Disks)+len(st.Nets))
			cfg.Kernel = nil
			mem, err := newMem(cfg, st.Config.Nets)
			if err != nil {
				return nil, stats, err
			}
			st.VCPUs = make([]kvmstate.VCPUState, cfg.CPUs)
			haveVCPU = make([]bool, cfg.CPUs)
			loader = memdump.NewLoader(mem, memdump.LoadOptions{Progress: progress})
		case formats.KindHostResource:
			if haveRes {
				return nil, stats, fmt.Errorf("%w: two host-resource sections", errNotRestorable)
			}
			haveRes = true
			if err := strictUnmarshal(sec.Payload, &st.Resources); err != nil {
				return nil, stats, fmt.Errorf("host-resource section: %w", err)
			}
			if err := checkResources(st.Resources); err != nil {
				return nil, stats, err
			}
		case formats.KindVCPU:
			if int(sec.ID) >= len(haveVCPU) || haveVCPU[sec.ID] {
				return nil, stats, fmt.Errorf("%w: vCPU section %d is out of range or repeated (the VM has %d vCPUs)", errNotRestorable, sec.ID, len(haveVCPU))
			}
			haveVCPU[sec.ID] = true
			if err := strictUnmarshal(sec.Payload, &st.VCPUs[sec.ID]); err != nil {
				return nil, stats, fmt.Errorf("vCPU %d section: %w", sec.ID, err)
			}
		case formats.KindVM:
			if haveVM {
				return nil, stats, fmt.Errorf("%w: two VM sections", errNotRestorable)
			}
			haveVM = true
			if err := strictUnmarshal(sec.Payload, &st.VM); err != nil {
				return nil, stats, fmt.Errorf("VM section: %w", err)
			}
		case formats.KindDevice:
			if int(sec.ID) < len(haveDevice) && haveDevice[sec.ID] {
				return nil, stats, fmt.Errorf("%w: device section %d repeated", errNotRestorable, sec.ID)
			}
			if err := st.decodeDevice(sec.ID, sec.Payload); err != nil {
				return nil, stats, fmt.Errorf("%w: %w", errNotRestorable, err)
			}
			haveDevice[sec.ID] = true
		case formats.KindMemoryChunk, formats.KindMemoryIndex:
			if err := loader.Add(sec); err != nil {
				return nil, stats, err
			}
		default:
			// A kind this version does not know, from a newer minor of the
			// same major: skipped, as formats/SPEC.md allows.
		}
	}
	if !haveConfig {
		return nil, stats, fmt.Errorf("%w: no config section", errNotRestorable)
	}
	if !haveRes || !haveVM {
		return nil, stats, fmt.Errorf("%w: missing host-resource or VM section", errNotRestorable)
	}
	for i, ok := range haveVCPU {
		if !ok {
			return nil, stats, fmt.Errorf("%w: no state for vCPU %d", errNotRestorable, i)
		}
	}
	for i, ok := range haveDevice {
		if !ok {
			return nil, stats, fmt.Errorf("%w: no state for device %s", errNotRestorable, st.deviceName(i))
		}
	}
	stats, err = loader.Finish()
	loader = nil
	if err != nil {
		return nil, stats, fmt.Errorf("guest memory: %w", err)
	}
	return st, stats, nil
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

// checkResources refuses host resources this chsnap cannot supply again.
func checkResources(r hostResourcesSection) error {
	for _, res := range r.Resources {
		switch {
		case res.Kind == "serial-console" && res.FDs == 0:
		case res.Kind == "disk" && res.FDs == 0:
		case res.Kind == "net" && res.FDs == 1:
		default:
			return fmt.Errorf("%w: host resource %q of kind %q with %d fds is not supported", errNotRestorable, res.Device, res.Kind, res.FDs)
		}
	}
	return nil
}
