package vm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/chsnap/chsnap/formats"
	"github.com/chsnap/chsnap/kvmstate"
	"github.com/chsnap/chsnap/memdump"
)

// pauseTimeout bounds how long a pause for a snapshot waits for the vCPUs.
const pauseTimeout = 5 * time.Second

// excludedMSRs are in KVM_GET_MSR_INDEX_LIST on some hosts but must not be
// saved: Hyper-V's reference counter and TSC-frequency MSRs are read-only
// and change with time, so restoring them fails or means nothing.
var excludedMSRs = map[uint32]bool{0x4000_0020: true, 0x4000_0022: true, 0x4000_0023: true, 0x4000_0010: true}

// mtrrMSRs are the MTRR MSRs, which KVM's index list omits: a guest that
// changed them would be restored with wrong memory types (Cloud Hypervisor
// PR #7944).
func mtrrMSRs() []uint32 {
	l := []uint32{0x250, 0x258, 0x259, 0x277, 0x2FF}
	for i := uint32(0x200); i <= 0x20F; i++ {
		l = append(l, i)
	}
	for i := uint32(0x268); i <= 0x26F; i++ {
		l = append(l, i)
	}
	return l
}

// SnapshotOptions tunes a snapshot.
type SnapshotOptions struct {
	// LeavePaused keeps the VM paused after the archive is written.
	LeavePaused bool
	// Progress, if set, is called with bytes of guest RAM written so far.
	Progress func(done, total uint64)
}

// Snapshot pauses the VM (if it runs), writes a complete archive of it to w,
// and resumes it unless opt.LeavePaused. On error the VM is resumed all the
// same (if it was running before) and w holds an incomplete archive that no
// reader accepts.
func (v *VM) Snapshot(w io.Writer, opt SnapshotOptions) (err error) {
	v.snapMu.Lock()
	defer v.snapMu.Unlock()
	wasPaused := v.Paused()
	if err := v.Pause(pauseTimeout); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if !wasPaused && !opt.LeavePaused {
		defer func() {
			if rerr := v.Resume(); rerr != nil && err == nil {
				err = fmt.Errorf("snapshot: resume: %w", rerr)
			}
		}()
	}
	v.pauseMu.Lock()
	st, err := v.captureLocked()
	v.pauseMu.Unlock()
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if err := writeArchive(w, st, v.mem, opt.Progress); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

// SnapshotToFile writes the archive to path atomically: to a temporary file
// beside it, synced, then renamed over path, and the directory synced. A
// failed or interrupted snapshot leaves any earlier file at path intact.
func (v *VM) SnapshotToFile(path string, opt SnapshotOptions) error {
	return WriteFileAtomic(path, func(w io.Writer) error { return v.Snapshot(w, opt) })
}

// topologyRecord is the topology the config section records: nil for the
// default, so archives of default VMs stay as they were.
func topologyRecord(cfg Config) *Topology {
	if cfg.Topology.IsZero() || cfg.Topology == DefaultTopology(cfg.CPUs) {
		return nil
	}
	t := cfg.Topology
	return &t
}

// WriteFileAtomic creates path with the bytes write produces, atomically:
// the data goes to a temporary file in path's directory, is synced, and is
// renamed over path only if write and the sync succeed.
func WriteFileAtomic(path string, write func(io.Writer) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temporary file beside %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := write(tmp); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp.Name(), path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// captureLocked gathers the whole VM state but memory, in the order the
// kernel and the devices need: devices first (so an interrupt a device
// raises while being saved is in the KVM state saved after it), then every
// vCPU on its own thread, then the VM-wide irqchip, PIT and clock.
// Preconditions: paused, pauseMu held.
func (v *VM) captureLocked() (*savedState, error) {
	if v.restored != nil {
		// Restored paused and not run since: the archive's state is still
		// the VM's state exactly (reading it back from KVM would not be:
		// the TSC and kvmclock advance with host time even while paused).
		return v.restored, nil
	}
	st := &savedState{
		Config: configSection{CPUs: v.cfg.CPUs, Memory: v.cfg.Memory, Cmdline: v.cfg.Cmdline, Kernel: v.cfg.KernelPath, Topology: topologyRecord(v.cfg)},
	}
	// Every device in table order; the disks flush first, so every write
	// the guest completed reaches the image before the archive says it
	// happened. The vCPUs are paused, so no request runs (virtio-blk
	// requests run on the vCPU threads).
	for _, d := range v.dev.table {
		if err := d.save(st); err != nil {
			return nil, err
		}
	}
	for i, e := range st.deviceTable() {
		if i >= len(v.dev.table) || v.dev.table[i].id != e.id {
			return nil, fmt.Errorf("vm: device table out of step with the archive's at section %d (%s)", i, e.id)
		}
	}
	if err := v.pickMSRsLocked(); err != nil {
		return nil, err
	}
	st.VCPUs = make([]kvmstate.VCPUState, len(v.cpus))
	err := v.onEachVCPU(func(c *vcpu) error {
		s, err := c.cpu.SaveState(v.msrs)
		if err != nil {
			return fmt.Errorf("save vCPU %d: %w", c.id, err)
		}
		st.VCPUs[c.id] = s
		return nil
	})
	if err != nil {
		return nil, err
	}
	if st.VM, err = v.kvm.SaveState(); err != nil {
		return nil, fmt.Errorf("save VM state: %w", err)
	}
	if err := v.alignSavedTSCs(st); err != nil {
		return nil, fmt.Errorf("save tsc: %w", err)
	}
	return st, nil
}

// pickMSRsLocked chooses, once per VM, the MSRs every snapshot saves: KVM's
// index list plus the MTRRs, less the excluded ones and those this host's
// KVM ignores on write (msrsKVMIgnores), less any this vCPU model cannot
// read.
func (v *VM) pickMSRsLocked() error {
	if v.msrs != nil {
		return nil
	}
	list, err := v.sys.MSRIndexList()
	if err != nil {
		return fmt.Errorf("read MSR index list: %w", err)
	}
	seen := map[uint32]bool{}
	var want []uint32
	for _, m := range append(list, mtrrMSRs()...) {
		if !seen[m] && !excludedMSRs[m] && !msrsKVMIgnores()[m] {
			seen[m] = true
			want = append(want, m)
		}
	}
	var readable []uint32
	err = v.cpus[0].onThread(func() error {
		var err error
		readable, err = v.cpus[0].cpu.ReadableMSRs(want)
		return err
	})
	if err != nil {
		return fmt.Errorf("probe MSRs: %w", err)
	}
	v.msrs = readable
	return nil
}

// writeArchive writes st and guest memory as one archive: config first (a
// streaming restore needs the VM's shape before anything else), then host
// resources, vCPUs, VM state, devices, and memory last.
func writeArchive(w io.Writer, st *savedState, mem *memdump.Memory, progress func(done, total uint64)) error {
	aw, err := formats.NewWriter(w)
	if err != nil {
		return err
	}
	put := func(kind formats.SectionKind, id uint32, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode %s section %d: %w", kind, id, err)
		}
		return aw.WriteSection(kind, id, b)
	}
	if err := put(formats.KindConfig, 0, st.Config); err != nil {
		return err
	}
	if err := put(formats.KindHostResource, 0, st.Resources); err != nil {
		return err
	}
	for i := range st.VCPUs {
		if err := put(formats.KindVCPU, uint32(i), &st.VCPUs[i]); err != nil {
			return err
		}
	}
	if err := put(formats.KindVM, 0, &st.VM); err != nil {
		return err
	}
	for id, e := range st.deviceTable() {
		b, err := encodeDevice(e)
		if err != nil {
			return err
		}
		if err := aw.WriteSection(formats.KindDevice, uint32(id), b); err != nil {
			return err
		}
	}
	if _, err := memdump.Dump(mem, aw, memdump.DumpOptions{Progress: progress}); err != nil {
		return fmt.Errorf("write guest memory: %w", err)
	}
	if err := aw.Close(); err != nil {
		return err
	}
	return nil
}

// errNotRestorable marks archive content that is well-formed but cannot
// describe a VM this chsnap can build.
var errNotRestorable = errors.New("vm: archive cannot be restored")
