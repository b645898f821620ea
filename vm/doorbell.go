package vm

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/chsnap/chsnap/devstate"
	"github.com/chsnap/chsnap/kvmstate"
	"golang.org/x/sys/unix"
)

// doorbells catch a virtio-mmio device's QueueNotify writes with one
// KVM_IOEVENTFD per queue, so the guest's kick costs no exit to chsnap (on
// kvm_pvm, 3 µs instead of 26–27 µs: shared/reference/pvm-notes.md) and
// the vCPU goes on while a goroutine hands the kick to the transport.
//
// Used for nets, whose devices serve Notify from any goroutine and do
// nothing while stopped (a kick then waits for Start), so a kick that
// arrives during a pause or a snapshot is safe. Disks keep serving requests
// on the vCPU thread at the exit: there the exit is the cheaper path.
type doorbells struct {
	kvm   *kvmstate.VM
	files []*os.File
	evs   []kvmstate.IOEvent
	wg    sync.WaitGroup
}

// add registers a doorbell for every queue of t. On error the ones
// registered so far stay in d, for close.
func (d *doorbells) add(kvm *kvmstate.VM, t *devstate.VirtioMMIO) error {
	d.kvm = kvm
	for q := range t.NumQueues() {
		efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			return fmt.Errorf("eventfd for queue %d: %w", q, err)
		}
		// Non-blocking, so reads go through Go's poller and Close wakes
		// the reader.
		f := os.NewFile(uintptr(efd), fmt.Sprintf("doorbell %#x/%d", t.Base(), q))
		ev := kvmstate.IOEvent{FD: efd, Addr: t.NotifyAddr(), Len: 4, Match: true, DataMatch: uint64(q)}
		if err := kvm.IOEventFD(ev, false); err != nil {
			f.Close()
			return fmt.Errorf("KVM_IOEVENTFD for queue %d at %#x: %w", q, ev.Addr, err)
		}
		d.files = append(d.files, f)
		d.evs = append(d.evs, ev)
		d.wg.Add(1)
		go d.ring(f, t, q)
	}
	return nil
}

// ring hands each kick of f to queue q of t until f is closed.
func (d *doorbells) ring(f *os.File, t *devstate.VirtioMMIO, q int) {
	defer d.wg.Done()
	var buf [8]byte
	for {
		if _, err := f.Read(buf[:]); err != nil {
			return // closed (os.ErrClosed), or the eventfd failed
		}
		t.Notify(q)
	}
}

// close unregisters every doorbell, stops the goroutines and closes the
// eventfds. After it returns no kick reaches a transport.
func (d *doorbells) close() error {
	var errs []error
	for i, ev := range d.evs {
		if err := d.kvm.IOEventFD(ev, true); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unregister doorbell %s: %w", d.files[i].Name(), err))
		}
	}
	for _, f := range d.files {
		f.Close()
	}
	d.wg.Wait()
	d.files, d.evs = nil, nil
	return errors.Join(errs...)
}
