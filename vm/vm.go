package vm

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/chsnap/chsnap/formats/disk"
	"github.com/chsnap/chsnap/kvmstate"
	"github.com/chsnap/chsnap/memdump"
)

// Fixed addresses of the KVM-private pages Intel hosts need: three pages for
// the TSS and one for the identity map, just below the BIOS area under
// 4 GiB, in the MMIO hole, so they never overlap a RAM slot.
const (
	tssAddr         = 0xFFFB_D000
	identityMapAddr = 0xFFFB_C000
)

// ErrClosed is returned by methods called on a closed VM.
var ErrClosed = errors.New("vm: closed")

// ExitReason says how a guest ended.
type ExitReason int

// How a guest ended.
const (
	// ExitPowerOff: the guest powered itself off (ACPI S5).
	ExitPowerOff ExitReason = iota + 1
	// ExitReboot: the guest asked for a reset (i8042, ACPI reset register or
	// a KVM system event). chsnap ends the run rather than rebooting.
	ExitReboot
	// ExitStopped: the host stopped the VM (Stop or a signal).
	ExitStopped
	// ExitShutdown: the host asked for an orderly end (vmm.shutdown).
	ExitShutdown
)

// String names the reason for messages.
func (r ExitReason) String() string {
	switch r {
	case ExitPowerOff:
		return "power-off"
	case ExitReboot:
		return "reboot"
	case ExitStopped:
		return "stopped"
	case ExitShutdown:
		return "shutdown"
	}
	return fmt.Sprintf("ExitReason(%d)", int(r))
}

// VM is a running virtual machine: the KVM VM, its guest RAM, devices and
// vCPU threads. VM owns all of them and releases them in Close, once.
type VM struct {
	cfg Config

	sys *kvmstate.System
	kvm *kvmstate.VM
	mem *memdump.Memory
	dev *devices
	// images are the disk images until the devices take them (each then
	// nil here); the VM closes any left.
	images []disk.Disk

	cpuid  []kvmstate.CPUIDEntry // KVM_GET_SUPPORTED_CPUID, read once per VM
	shaped []kvmstate.CPUIDEntry // cpuid shaped for the topology, once per VM; per-vCPU patches only add APIC ids
	entry  bootEntry

	cpus  []*vcpu
	start chan struct{}

	snapMu sync.Mutex // one snapshot at a time
	msrs   []uint32   // MSRs a snapshot saves, chosen at the first one; guarded by pauseMu

	stopping chan struct{} // closed by stop
	stopOnce sync.Once
	reason   ExitReason // written once in stop, before stopping is closed
	err      error      // ditto

	pauseMu sync.Mutex
	paused  bool          // guarded by pauseMu
	resume  chan struct{} // closed to resume; guarded by pauseMu
	// restored is the state a VM was restored from, kept while it has not
	// run since, so that saving it again yields the same archive; guarded
	// by pauseMu.
	restored *savedState
	// kickPending says the devices' queues must be kicked when the guest
	// first runs after a restore: a notification in flight at snapshot
	// time is not in the state; guarded by pauseMu.
	kickPending bool

	closeOnce sync.Once
	closeErr  error
}

// New creates a VM from cfg, ready to Run: KVM objects, guest RAM with the
// kernel, command line, boot structures and ACPI tables in place, devices,
// and one configured vCPU per CPU. Every input is checked first — the
// configuration, the kernel and initrd (loaded into guest RAM before KVM
// knows of it), every disk image — so that a refused one never opens
// /dev/kvm. On error everything created so far is released.
func New(cfg Config) (_ *VM, err error) {
	if err := cfg.Validate(); err != nil {
		closeNetTaps(cfg.Nets)
		return nil, err
	}
	mem, err := memdump.New("chsnap-guest-ram", cfg.Memory)
	if err != nil {
		closeNetTaps(cfg.Nets)
		return nil, err
	}
	entry, err := loadGuest(mem, cfg)
	if err != nil {
		mem.Close()
		closeNetTaps(cfg.Nets)
		return nil, err
	}
	images, err := openDisks(cfg.Disks, nil)
	if err != nil {
		mem.Close()
		closeNetTaps(cfg.Nets)
		return nil, err
	}
	v, err := newMachine(cfg, mem, images)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			v.abort()
		}
	}()
	v.entry = entry
	v.shaped = shapeCPUID(v.cpuid, cfg.topology(), hostCacheLeaves())
	if v.dev, err = newDevices(v, nil); err != nil {
		return nil, err
	}
	if err := v.createVCPUs(v.configureVCPU); err != nil {
		return nil, err
	}
	return v, nil
}

// openKVM opens the KVM device; a variable so that tests can prove a
// refused input never reaches it.
var openKVM = kvmstate.Open

// newMachine creates what every VM has, booted or restored, around guest RAM
// mem (loaded already) and the disk images (opened and checked already):
// /dev/kvm, the KVM VM with its in-kernel irqchip and PIT, and the RAM
// registered with KVM. The VM owns mem, images and cfg's taps from the
// call on; on error it releases them with what it created.
func newMachine(cfg Config, mem *memdump.Memory, images []disk.Disk) (_ *VM, err error) {
	v := &VM{cfg: cfg, mem: mem, images: images, start: make(chan struct{}), stopping: make(chan struct{})}
	if v.cfg.Logger == nil {
		v.cfg.Logger = log.New(os.Stderr, "chsnap: ", 0)
	}
	defer func() {
		if err != nil {
			v.abort()
		}
	}()
	dev := cfg.KVMDevice
	if dev == "" {
		dev = "/dev/kvm"
	}
	if v.sys, err = openKVM(dev); err != nil {
		return nil, err
	}
	if v.cpuid, err = v.sys.SupportedCPUID(); err != nil {
		return nil, fmt.Errorf("read supported CPUID: %w", err)
	}
	if v.kvm, err = v.sys.CreateVM(); err != nil {
		return nil, fmt.Errorf("create VM: %w", err)
	}
	// Both addresses must be set before any vCPU exists (api.rst §4.36, §4.40).
	if err := v.kvm.SetIdentityMapAddr(identityMapAddr); err != nil {
		return nil, err
	}
	if err := v.kvm.SetTSSAddr(tssAddr); err != nil {
		return nil, err
	}
	// The irqchip must precede vCPU creation.
	if err := v.kvm.CreateIRQChip(); err != nil {
		return nil, err
	}
	if err := v.kvm.CreatePIT2(kvmstate.PITSpeakerDummy); err != nil {
		return nil, err
	}
	for i, r := range v.mem.Regions() {
		if err := v.kvm.SetUserMemoryRegion(uint32(i), 0, r.GPA, v.mem.Bytes()[r.Offset:r.Offset+r.Size]); err != nil {
			return nil, fmt.Errorf("register guest RAM slot %d: %w", i, err)
		}
	}
	return v, nil
}

// abort releases a VM that New or Restore could not finish.
func (v *VM) abort() {
	v.stop(ExitStopped, nil)
	if err := v.release(); err != nil {
		v.logf("release: %v", err)
	}
}

// createVCPUs starts one thread per vCPU; each creates its vCPU, sets it up
// with setup (boot configuration or restored state) in parallel with the
// others, and then waits for Run.
func (v *VM) createVCPUs(setup func(id int, cpu *kvmstate.VCPU) error) error {
	// Grow the fd table once for every vCPU fd to come, rather than letting
	// the kernel grow it (and copy it) repeatedly under concurrent creation.
	_ = growFDTable(v.cfg.CPUs)
	ready := make(chan error, v.cfg.CPUs)
	for id := 0; id < v.cfg.CPUs; id++ {
		c := &vcpu{id: id, vm: v, work: make(chan func()), exited: make(chan struct{})}
		v.cpus = append(v.cpus, c)
		go c.thread(ready, v.start, setup)
	}
	var errs []error
	for range v.cfg.CPUs {
		if err := <-ready; err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Run starts the vCPUs and the serial input pump and blocks until the guest
// powers off, asks for a reset, fails, or Stop is called.
func (v *VM) Run() (ExitReason, error) {
	select {
	case <-v.stopping:
		return v.reason, v.err
	default:
	}
	close(v.start)
	v.pauseMu.Lock()
	if !v.paused {
		v.dev.startNets()
		v.kickLocked()
	}
	v.pauseMu.Unlock()
	if v.cfg.SerialIn != nil {
		go v.pumpSerialInput(v.cfg.SerialIn)
	}
	<-v.stopping
	return v.reason, v.err
}

// pumpSerialInput copies host bytes into the UART until the input ends or
// the VM stops. The serial device blocks the copy while its FIFO is full.
func (v *VM) pumpSerialInput(r io.Reader) {
	_, err := io.Copy(v.dev.serial, r)
	if err != nil && !v.isStopping() {
		v.logf("serial input: %v", err)
	}
}

// Config returns the VM's configuration, without the kernel image.
func (v *VM) Config() Config {
	c := v.cfg
	c.Kernel, c.Initrd = nil, nil
	return c
}

// Stop ends the VM from the host side; Run returns ExitStopped.
func (v *VM) Stop() { v.stop(ExitStopped, nil) }

// Shutdown ends the VM at the host's orderly request; Run returns
// ExitShutdown.
func (v *VM) Shutdown() { v.stop(ExitShutdown, nil) }

// stop records the first reason the VM ends and wakes Run and every vCPU.
// It is safe to call from any goroutine, many times.
func (v *VM) stop(reason ExitReason, err error) {
	v.stopOnce.Do(func() {
		v.reason, v.err = reason, err
		close(v.stopping)
		for _, c := range v.cpus {
			c.kick()
		}
	})
}

func (v *VM) isStopping() bool {
	select {
	case <-v.stopping:
		return true
	default:
		return false
	}
}

// Pause stops every vCPU at a quiet point (any pending port or MMIO access
// completed) and returns once all have acknowledged, or fails naming the
// vCPUs that did not answer within timeout. Each paused vCPU thread tells the
// guest's kvmclock that it was stopped (KVM_KVMCLOCK_CTRL), so the guest's
// watchdog does not fire on resume.
func (v *VM) Pause(timeout time.Duration) error {
	v.pauseMu.Lock()
	defer v.pauseMu.Unlock()
	if v.isStopping() {
		return ErrClosed
	}
	if v.paused {
		return nil
	}
	v.resume = make(chan struct{})
	acks := make(chan int, len(v.cpus))
	for _, c := range v.cpus {
		c.do(c.parkFunc(v.resume, acks))
	}
	if err := v.waitAll(acks, timeout, "pause"); err != nil {
		close(v.resume)
		return err
	}
	v.dev.stopNets()
	v.paused = true
	return nil
}

// Resume lets paused vCPUs run again.
func (v *VM) Resume() error {
	v.pauseMu.Lock()
	defer v.pauseMu.Unlock()
	if v.isStopping() {
		return ErrClosed
	}
	if !v.paused {
		return nil
	}
	v.restored = nil // the guest runs again: its state moves on
	v.dev.startNets()
	v.kickLocked()
	close(v.resume)
	v.paused = false
	return nil
}

// kickLocked runs the devices' after-restore kicks once, when the guest
// first runs after a restore: the disks' queues are notified, the nets
// announce themselves.
// Preconditions: pauseMu held.
func (v *VM) kickLocked() {
	if !v.kickPending {
		return
	}
	v.kickPending = false
	v.dev.kick(v.logf)
}

// Paused reports whether the vCPUs are paused.
func (v *VM) Paused() bool {
	v.pauseMu.Lock()
	defer v.pauseMu.Unlock()
	return v.paused
}

// onEachVCPU runs fn on every vCPU's own thread, in parallel, and returns
// the errors joined. Preconditions: the VM is paused (pauseMu held).
func (v *VM) onEachVCPU(fn func(c *vcpu) error) error {
	errs := make([]error, len(v.cpus))
	var wg sync.WaitGroup
	for i, c := range v.cpus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.onThread(func() error { return fn(c) })
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// waitAll collects one acknowledgement per vCPU or names the missing ones.
func (v *VM) waitAll(acks <-chan int, timeout time.Duration, what string) error {
	got := make(map[int]bool)
	deadline := time.After(timeout)
	for len(got) < len(v.cpus) {
		select {
		case id := <-acks:
			got[id] = true
		case <-v.stopping:
			return ErrClosed
		case <-deadline:
			var missing []string
			for _, c := range v.cpus {
				if !got[c.id] {
					missing = append(missing, fmt.Sprint(c.id))
				}
			}
			return fmt.Errorf("vm: %s: vCPU %s did not answer within %v", what, strings.Join(missing, ", "), timeout)
		}
	}
	return nil
}

// Close stops the VM if it runs, waits for the vCPU threads (naming any that
// do not exit within a deadline), then releases devices, the VM, guest RAM
// and /dev/kvm, in reverse order of creation. A second call returns ErrClosed.
func (v *VM) Close() error {
	err := ErrClosed
	v.closeOnce.Do(func() {
		v.stop(ExitStopped, nil)
		v.closeErr = v.release()
		err = v.closeErr
	})
	return err
}

// release tears everything down; used by Close and by a failed New.
func (v *VM) release() error {
	var errs []error
	deadline := time.After(5 * time.Second)
	for _, c := range v.cpus {
		select {
		case <-c.exited:
		case <-deadline:
			errs = append(errs, fmt.Errorf("vm: vCPU %d did not exit within 5s", c.id))
		}
	}
	if len(errs) > 0 {
		// A vCPU thread still holds the VM and guest RAM: freeing them under it
		// would crash. Leave them to process exit.
		return errors.Join(errs...)
	}
	if v.dev != nil {
		errs = append(errs, v.dev.close())
	}
	errs = append(errs, closeDisks(v.images))
	closeNetTaps(v.cfg.Nets) // the VM owns them (NetConfig.Tap)
	if v.kvm != nil {
		errs = append(errs, v.kvm.Close())
	}
	if v.mem != nil {
		errs = append(errs, v.mem.Close())
	}
	if v.sys != nil {
		errs = append(errs, v.sys.Close())
	}
	return errors.Join(errs...)
}

// logf reports a problem that does not stop the VM to the configured
// logger.
func (v *VM) logf(format string, args ...any) {
	v.cfg.Logger.Printf(format, args...)
}
