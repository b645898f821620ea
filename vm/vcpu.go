package vm

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/chsnap/chsnap/kvmstate"
)

// vcpu is one virtual CPU and the goroutine that owns it.
//
// The goroutine is locked to its OS thread for its whole life (never
// unlocked, so the thread dies with it): the vCPU fd is created, configured
// and run on that thread, as api.rst recommends and kvm_pvm needs (a vCPU
// ioctl from another thread blocks while the vCPU is in KVM_RUN).
//
// Other goroutines reach the vCPU only through do(), which posts a closure to
// the mailbox and kicks the thread: immediate_exit is set in the run page and
// a signal is sent to the thread, so a kick that lands just before KVM_RUN is
// not lost (KVM_RUN then returns EINTR at once) and one that lands inside
// KVM_RUN interrupts it.
type vcpu struct {
	id int
	vm *VM
	mu sync.Mutex
	// cpu is owned by the thread; nil until created and again once closed.
	// Only the thread writes it, always under mu; other goroutines read it
	// under mu (kick), so a kick never touches an unmapped run page.
	cpu     *kvmstate.VCPU
	tid     int      // OS thread id; guarded by mu
	mailbox []func() // guarded by mu

	// work carries closures to the thread while it is parked (paused).
	work   chan func()
	exited chan struct{}
}

// errStop ends a vCPU loop without error.
var errStop = errors.New("vm: vCPU stopped")

// kickSignal interrupts KVM_RUN. The Go runtime already expects stray SIGURG
// (it uses it for preemption) and installs a handler for it, so sending it
// to a vCPU thread is harmless and makes KVM_RUN return EINTR.
const kickSignal = unix.SIGURG

// do runs fn on the vCPU's thread at the next quiet point (between KVM_RUN
// calls, after any pending I/O has been completed by a re-entry).
func (c *vcpu) do(fn func()) {
	c.mu.Lock()
	c.mailbox = append(c.mailbox, fn)
	c.mu.Unlock()
	c.kick()
}

// kick makes the vCPU leave (or not enter) KVM_RUN soon.
func (c *vcpu) kick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cpu == nil {
		return // not created yet (it drains the mailbox before running) or gone
	}
	c.cpu.SetImmediateExit(true)
	// ESRCH means the thread is gone, which is fine for a kick.
	_ = unix.Tgkill(os.Getpid(), c.tid, kickSignal)
}

// parkFunc returns the mailbox closure that pauses the vCPU: it acknowledges
// on acks, tells kvmclock the vCPU stopped, then runs closures sent on work
// until resume is closed or the VM stops.
func (c *vcpu) parkFunc(resume <-chan struct{}, acks chan<- int) func() {
	return func() {
		// EINVAL until the guest enables kvmclock: harmless (api.rst §4.70).
		_ = c.cpu.KVMClockCtrl()
		acks <- c.id
		for {
			select {
			case <-resume:
				return
			case fn := <-c.work:
				fn()
			case <-c.vm.stopping:
				return
			}
		}
	}
}

// onThread runs fn on the parked vCPU's thread and returns its error.
// Preconditions: the vCPU is parked (the VM is paused).
func (c *vcpu) onThread(fn func() error) error {
	done := make(chan error, 1)
	select {
	case c.work <- func() { done <- fn() }:
	case <-c.vm.stopping:
		return ErrClosed
	}
	select {
	case err := <-done:
		return err
	case <-c.vm.stopping:
		return ErrClosed
	}
}

// drain runs every queued closure, including any posted while it runs.
func (c *vcpu) drain() {
	for {
		c.mu.Lock()
		q := c.mailbox
		c.mailbox = nil
		c.mu.Unlock()
		if len(q) == 0 {
			return
		}
		for _, fn := range q {
			fn()
		}
	}
}

// thread is the vCPU goroutine. It creates and configures the vCPU, reports
// on ready, waits for start, then runs until the VM stops.
func (c *vcpu) thread(ready chan<- error, start <-chan struct{}, setup func(id int, cpu *kvmstate.VCPU) error) {
	runtime.LockOSThread() // never unlocked: the thread belongs to this vCPU
	defer close(c.exited)
	// The KVM vCPU id is the topology's APIC id: KVM takes it as the
	// vCPU's initial APIC id, which must match CPUID and the MADT.
	cpu, err := c.vm.kvm.CreateVCPU(int(c.vm.cfg.topology().APICID(c.id)))
	if err != nil {
		ready <- fmt.Errorf("create vCPU %d: %w", c.id, err)
		return
	}
	c.mu.Lock()
	c.cpu, c.tid = cpu, unix.Gettid()
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.cpu = nil
		c.mu.Unlock()
		if err := cpu.Close(); err != nil {
			c.vm.logf("vCPU %d: close: %v", c.id, err)
		}
	}()
	if err := setup(c.id, cpu); err != nil {
		ready <- fmt.Errorf("set up vCPU %d: %w", c.id, err)
		return
	}
	ready <- nil
	select {
	case <-start:
	case <-c.vm.stopping:
		return
	}
	c.drain() // requests posted before the thread could be kicked
	err = c.loop()
	if err != nil && !errors.Is(err, errStop) {
		c.vm.stop(0, fmt.Errorf("vCPU %d: %w", c.id, err))
	}
}

// loop is the KVM_RUN loop. The mailbox is only looked at after KVM_RUN
// returned EINTR: an exit we handled is always followed by another KVM_RUN,
// which completes the pending port or MMIO access before the guest state is
// looked at (api.rst, the note under KVM_EXIT_MMIO), and an immediate_exit
// set by a kick makes that re-entry return without running guest code.
func (c *vcpu) loop() error {
	for {
		err := c.cpu.Run()
		if err != nil {
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
				// Clear before draining, so a kick posted after this point
				// sets it again and is seen by the next KVM_RUN.
				c.cpu.SetImmediateExit(false)
				c.drain()
				if c.vm.isStopping() {
					return errStop
				}
				continue
			}
			return fmt.Errorf("KVM_RUN: %w", err)
		}
		if err := c.vm.handleExit(c); err != nil {
			return err
		}
	}
}

// growFDTable makes room for at least n more file descriptors in this
// process's fd table in one step, before the vCPU fds are created. The
// kernel grows the table by doubling it when it fills, and every growth
// waits for an RCU grace period while other threads run; with many vCPUs
// created in parallel that wait repeats. Cloud Hypervisor does the same at
// start-up (a dup to a high fd). It raises the RLIMIT_NOFILE soft limit
// towards the hard one if needed, duplicates a descriptor to the lowest free
// number at or above the target (never replacing an open one) and closes
// it. It is best effort: the error only explains why it could not.
func growFDTable(n int) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("grow fd table: getrlimit: %w", err)
	}
	want := uint64(n) + 256
	if lim.Cur < want && lim.Max > lim.Cur {
		lim.Cur = min(want, lim.Max)
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("grow fd table: raise RLIMIT_NOFILE to %d: %w", lim.Cur, err)
		}
	}
	target := min(want, lim.Cur) - 1
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("grow fd table: %w", err)
	}
	defer unix.Close(fd)
	high, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, int(target))
	if err != nil {
		return fmt.Errorf("grow fd table to %d entries: %w", target+1, err)
	}
	return unix.Close(high)
}
