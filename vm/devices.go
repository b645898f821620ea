package vm

import (
	"errors"
	"fmt"

	"github.com/chsnap/chsnap/devstate"
	"github.com/chsnap/chsnap/formats/disk"
	"github.com/chsnap/chsnap/kvmstate"
)

// ISA interrupt lines of the legacy devices. With the in-kernel irqchip's
// default routing, GSI n is IOAPIC pin n (and PIC line n below 16).
const (
	serialGSI   = 4
	keyboardGSI = 1
)

// devices is the VM's device set and the buses that route exits to it.
type devices struct {
	ports  portBus
	mmio   mmioBus
	table  []*device // every device, in device-section order
	disks  []*virtioDisk
	nets   []*virtioNet
	bells  doorbells // the nets' queue doorbells (ioeventfds)
	serial *devstate.Serial
	i8042  *devstate.I8042
	power  *devstate.Power
	cmos   *devstate.CMOS
}

// device is one entry of the VM's device table, built once per VM in
// device-section order (the order savedState.deviceTable gives the
// archive): snapshot, restore's interrupt re-assertion and kicks, and
// teardown are driven from it. A new device kind is one entry here, one in
// deviceTable, and its devstate file.
type device struct {
	id string
	// save puts the device's state into st at a quiet point, with its
	// config record and host resource where it has them.
	save func(st *savedState) error
	// transport is a virtio device's transport, whose line is driven again
	// after a restore; nil for a legacy device.
	transport *devstate.VirtioMMIO
	// kick runs when the guest first runs after a restore; nil for none.
	kick func() error
	// close releases the device; nil for nothing to release.
	close func() error
}

// fromState makes a device fresh (saved nil) or from its saved state:
// the one place the choice is made.
func fromState[S, D any](saved *S, fresh func() (D, error), restore func(S) (D, error)) (D, error) {
	if saved == nil {
		return fresh()
	}
	return restore(*saved)
}

// infallible wraps a constructor that cannot fail for fromState.
func infallible[D any](f func() D) func() (D, error) { return func() (D, error) { return f(), nil } }

// irqLine drives one GSI of the in-kernel irqchip.
type irqLine struct {
	vm  *kvmstate.VM
	gsi uint32
}

// Set implements devstate.IRQ with KVM_IRQ_LINE.
func (l irqLine) Set(level bool) error { return l.vm.IRQLine(l.gsi, level) }

// newDevices creates the device table: the legacy devices, then the
// disks, then the nets, fresh (st nil) or from saved state, which each
// Restore… checks as if the guest had written it.
func newDevices(v *VM, st *savedState) (_ *devices, err error) {
	d := &devices{}
	serialDeps := devstate.SerialDeps{IRQ: irqLine{v.kvm, serialGSI}, Out: v.cfg.SerialOut}
	i8042Deps := devstate.I8042Deps{
		Reset:  func() { v.stop(ExitReboot, nil) },
		KbdIRQ: irqLine{v.kvm, keyboardGSI},
	}
	powerDeps := devstate.PowerDeps{
		PowerOff: func() { v.stop(ExitPowerOff, nil) },
		Reset:    func() { v.stop(ExitReboot, nil) },
	}
	cmosDeps := devstate.CMOSDeps{MemoryBytes: v.cfg.Memory}
	var (
		serialSt *devstate.SerialState
		i8042St  *devstate.I8042State
		powerSt  *devstate.PowerState
		cmosSt   *devstate.CMOSState
	)
	if st != nil {
		serialSt, i8042St, powerSt, cmosSt = &st.Serial, &st.I8042, &st.Power, &st.CMOS
	}
	restoring := func(name string, err error) error {
		return fmt.Errorf("restore %s: %w", name, err)
	}
	if d.serial, err = fromState(serialSt, infallible(func() *devstate.Serial { return devstate.NewSerial(serialDeps) }), func(s devstate.SerialState) (*devstate.Serial, error) {
		return devstate.RestoreSerial(s, serialDeps)
	}); err != nil {
		return nil, restoring(deviceNames[devSerial], err)
	}
	if d.i8042, err = fromState(i8042St, infallible(func() *devstate.I8042 { return devstate.NewI8042(i8042Deps) }), func(s devstate.I8042State) (*devstate.I8042, error) {
		return devstate.RestoreI8042(s, i8042Deps)
	}); err != nil {
		return nil, restoring(deviceNames[devI8042], err)
	}
	if d.power, err = fromState(powerSt, infallible(func() *devstate.Power { return devstate.NewPower(powerDeps) }), func(s devstate.PowerState) (*devstate.Power, error) {
		return devstate.RestorePower(s, powerDeps)
	}); err != nil {
		return nil, restoring(deviceNames[devPower], err)
	}
	if d.cmos, err = fromState(cmosSt, infallible(func() *devstate.CMOS { return devstate.NewCMOS(cmosDeps) }), func(s devstate.CMOSState) (*devstate.CMOS, error) {
		return devstate.RestoreCMOS(s, cmosDeps)
	}); err != nil {
		return nil, restoring(deviceNames[devCMOS], err)
	}
	// The legacy entries, in deviceTable's order.
	d.table = append(d.table,
		&device{id: deviceNames[devSerial], close: d.serial.Close, save: func(st *savedState) error {
			st.Serial = d.serial.State()
			st.Resources.Resources = append(st.Resources.Resources, hostResource{Device: deviceNames[devSerial], Kind: "serial-console", FDs: 0})
			return nil
		}},
		&device{id: deviceNames[devI8042], save: func(st *savedState) error { st.I8042 = d.i8042.State(); return nil }},
		&device{id: deviceNames[devCMOS], save: func(st *savedState) error { st.CMOS = d.cmos.State(); return nil }},
		&device{id: deviceNames[devPower], save: func(st *savedState) error { st.Power = d.power.State(); return nil }},
	)
	for _, r := range []struct {
		base, n uint16
		dev     devstate.PortIO
	}{
		{d.serial.Base(), devstate.SerialPorts, d.serial},
		{devstate.I8042DataPort, 1, d.i8042},
		{devstate.I8042CommandPort, 1, d.i8042},
		{devstate.PowerPort, devstate.PowerPorts, d.power},
		{devstate.CMOSIndexPort, devstate.CMOSPorts, d.cmos},
	} {
		if err := d.ports.add(r.base, r.n, r.dev); err != nil {
			d.close()
			return nil, err
		}
	}
	var savedDisks []diskSaved
	var savedNets []netSaved
	if st != nil {
		savedDisks, savedNets = st.Disks, st.Nets
	}
	if err := d.addDisks(v, savedDisks); err != nil {
		d.close()
		return nil, err
	}
	if err := d.addNets(v, savedNets); err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

// mmioRead serves an MMIO read; nothing there reads as all ones, as from an
// empty bus.
func (d *devices) mmioRead(addr uint64, data []byte) {
	if dev, ok := d.mmio.find(addr); ok {
		dev.ReadMMIO(addr, data)
		return
	}
	for i := range data {
		data[i] = 0xFF
	}
}

// mmioWrite serves an MMIO write; writes to nothing are dropped.
func (d *devices) mmioWrite(addr uint64, data []byte) {
	if dev, ok := d.mmio.find(addr); ok {
		dev.WriteMMIO(addr, data)
	}
}

// close releases the devices, in table order, after the doorbells: the
// serial's blocked host writers are woken, the nets stopped (their taps
// are the VM's, closed after this), the disks flushed and closed.
func (d *devices) close() error {
	errs := []error{d.bells.close()}
	for _, dev := range d.table {
		if dev.close == nil {
			continue
		}
		if err := dev.close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", dev.id, err))
		}
	}
	return errors.Join(errs...)
}

// openDisks opens the disk images of cfgs, in order, and for a restore
// (saved non-nil) checks each is the image the archive was saved with. On
// error none is left open.
func openDisks(cfgs []DiskConfig, saved []diskSaved) (_ []disk.Disk, err error) {
	var images []disk.Disk
	defer func() {
		if err != nil {
			closeDisks(images)
		}
	}()
	for i, cfg := range cfgs {
		img, err := disk.Open(cfg.Path, disk.OpenOptions{Format: cfg.Format, ReadOnly: cfg.ReadOnly})
		if err != nil {
			return nil, fmt.Errorf("disk %s: %w", cfg.ID, err)
		}
		images = append(images, img)
		if saved != nil {
			if err := saved[i].check(img); err != nil {
				return nil, err
			}
		}
	}
	return images, nil
}

// closeDisks closes the images not taken (nil) yet.
func closeDisks(images []disk.Disk) error {
	var errs []error
	for i, img := range images {
		if img != nil {
			if err := img.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close disk image %d: %w", i, err))
			}
			images[i] = nil
		}
	}
	return errors.Join(errs...)
}

// addDisks puts a virtio-blk device on a virtio-mmio transport for each
// configured disk, on the image the VM opened (v.images, taken from there),
// fresh or from saved state (saved nil).
func (d *devices) addDisks(v *VM, saved []diskSaved) error {
	for i, cfg := range v.cfg.Disks {
		img := v.images[i]
		v.images[i] = nil
		vd := &virtioDisk{cfg: cfg, disk: img}
		d.disks = append(d.disks, vd)
		d.table = append(d.table, &device{id: cfg.ID, save: vd.save, kick: vd.kick, close: vd.close}) // owned from here: close releases it
		base, gsi := virtioSlot(i)
		deps := devstate.VirtioBlockDeps{Disk: img, ID: cfg.ID}
		tdeps := devstate.VirtioMMIODeps{Base: base, Mem: v.mem, IRQ: irqLine{v.kvm, gsi}}
		var blockSt *devstate.VirtioBlockState
		var transportSt *devstate.VirtioMMIOState
		if saved != nil {
			blockSt, transportSt = &saved[i].Block, &saved[i].Transport
		}
		var err error
		vd.block, err = fromState(blockSt, func() (*devstate.VirtioBlock, error) { return devstate.NewVirtioBlock(deps) },
			func(s devstate.VirtioBlockState) (*devstate.VirtioBlock, error) {
				return devstate.RestoreVirtioBlock(s, deps)
			})
		if err == nil {
			tdeps.Device = vd.block
			vd.transport, err = virtioTransport(transportSt, tdeps)
		}
		if err != nil {
			if saved != nil {
				return fmt.Errorf("restore disk %s: %w", cfg.ID, err)
			}
			return fmt.Errorf("disk %s: %w", cfg.ID, err)
		}
		d.table[len(d.table)-1].transport = vd.transport
		d.mmio.add(base, devstate.VirtioMMIOSize, vd.transport)
	}
	return nil
}

// startNets lets the nets deliver received frames into the guest: called
// whenever the vCPUs start or resume.
func (d *devices) startNets() {
	for _, vn := range d.nets {
		vn.net.Start()
	}
}

// stopNets stops the nets' receive paths: when it returns, no device writes
// guest memory or raises an interrupt until startNets. Called on pause,
// so a snapshot sees devices and memory at rest.
func (d *devices) stopNets() {
	for _, vn := range d.nets {
		vn.net.Stop()
	}
}

// reassertIRQs drives every virtio device's interrupt line again, after the
// irqchip state was restored over whatever the devices raised before.
func (d *devices) reassertIRQs() error {
	for _, dev := range d.table {
		if dev.transport == nil {
			continue
		}
		if err := dev.transport.ReassertIRQ(); err != nil {
			return fmt.Errorf("%s: %w", dev.id, err)
		}
	}
	return nil
}

// kick runs every device's after-restore kick, logging failures: the guest
// runs all the same.
func (d *devices) kick(logf func(string, ...any)) {
	for _, dev := range d.table {
		if dev.kick == nil {
			continue
		}
		if err := dev.kick(); err != nil {
			logf("%s: %v", dev.id, err)
		}
	}
}

// virtioTransport makes a virtio-mmio transport fresh (saved nil) or from
// its saved state.
func virtioTransport(saved *devstate.VirtioMMIOState, deps devstate.VirtioMMIODeps) (*devstate.VirtioMMIO, error) {
	return fromState(saved, func() (*devstate.VirtioMMIO, error) { return devstate.NewVirtioMMIO(deps) },
		func(s devstate.VirtioMMIOState) (*devstate.VirtioMMIO, error) {
			return devstate.RestoreVirtioMMIO(s, deps)
		})
}
