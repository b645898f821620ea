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
	disks  []*virtioDisk
	nets   []*virtioNet
	bells  doorbells // the nets' queue doorbells (ioeventfds)
	serial *devstate.Serial
	i8042  *devstate.I8042
	power  *devstate.Power
	cmos   *devstate.CMOS
}

// irqLine drives one GSI of the in-kernel irqchip.
type irqLine struct {
	vm  *kvmstate.VM
	gsi uint32
}

// Set implements devstate.IRQ with KVM_IRQ_LINE.
func (l irqLine) Set(level bool) error { return l.vm.IRQLine(l.gsi, level) }

// newDevices creates the legacy devices, fresh (st nil) or from saved
// state, which each Restore… checks as if the guest had written it.
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
	if st == nil {
		d.serial = devstate.NewSerial(serialDeps)
		d.i8042 = devstate.NewI8042(i8042Deps)
		d.power = devstate.NewPower(powerDeps)
		d.cmos = devstate.NewCMOS(cmosDeps)
	} else {
		if d.serial, err = devstate.RestoreSerial(st.Serial, serialDeps); err != nil {
			return nil, fmt.Errorf("restore %s: %w", deviceNames[devSerial], err)
		}
		if d.i8042, err = devstate.RestoreI8042(st.I8042, i8042Deps); err != nil {
			return nil, fmt.Errorf("restore %s: %w", deviceNames[devI8042], err)
		}
		if d.power, err = devstate.RestorePower(st.Power, powerDeps); err != nil {
			return nil, fmt.Errorf("restore %s: %w", deviceNames[devPower], err)
		}
		if d.cmos, err = devstate.RestoreCMOS(st.CMOS, cmosDeps); err != nil {
			return nil, fmt.Errorf("restore %s: %w", deviceNames[devCMOS], err)
		}
	}
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
			return nil, err
		}
	}
	var savedDisks []diskSaved
	if st != nil {
		savedDisks = st.Disks
	}
	if err := d.addDisks(v, savedDisks); err != nil {
		d.close()
		return nil, err
	}
	var savedNets []netSaved
	if st != nil {
		savedNets = st.Nets
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

// close releases the devices: the serial's blocked host writers are woken
// and the disks flushed and closed.
func (d *devices) close() error {
	var errs []error
	if d.serial != nil {
		if err := d.serial.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close serial: %w", err))
		}
	}
	if err := d.bells.close(); err != nil {
		errs = append(errs, err)
	}
	for _, vn := range d.nets {
		vn.net.Close() // the taps are the VM's, closed after this
	}
	for _, vd := range d.disks {
		if vd.disk == nil {
			continue
		}
		if err := vd.disk.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("flush disk %s: %w", vd.cfg.ID, err))
		}
		if err := vd.disk.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close disk %s: %w", vd.cfg.ID, err))
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
		d.disks = append(d.disks, vd) // owned from here: close releases it
		base, gsi := virtioSlot(i)
		deps := devstate.VirtioBlockDeps{Disk: img, ID: cfg.ID}
		tdeps := devstate.VirtioMMIODeps{Base: base, Mem: v.mem, IRQ: irqLine{v.kvm, gsi}}
		var err error
		if saved == nil {
			if vd.block, err = devstate.NewVirtioBlock(deps); err != nil {
				return fmt.Errorf("disk %s: %w", cfg.ID, err)
			}
			tdeps.Device = vd.block
			if vd.transport, err = devstate.NewVirtioMMIO(tdeps); err != nil {
				return fmt.Errorf("disk %s: %w", cfg.ID, err)
			}
		} else {
			if vd.block, err = devstate.RestoreVirtioBlock(saved[i].Block, deps); err != nil {
				return fmt.Errorf("restore disk %s: %w", cfg.ID, err)
			}
			tdeps.Device = vd.block
			if vd.transport, err = devstate.RestoreVirtioMMIO(saved[i].Transport, tdeps); err != nil {
				return fmt.Errorf("restore disk %s: %w", cfg.ID, err)
			}
		}
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
	for _, vd := range d.disks {
		if err := vd.transport.ReassertIRQ(); err != nil {
			return fmt.Errorf("disk %s: %w", vd.cfg.ID, err)
		}
	}
	for _, vn := range d.nets {
		if err := vn.transport.ReassertIRQ(); err != nil {
			return fmt.Errorf("net %s: %w", vn.cfg.ID, err)
		}
	}
	return nil
}
