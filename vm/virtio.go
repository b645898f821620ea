package vm

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/chsnap/chsnap/devstate"
	"github.com/chsnap/chsnap/fdmap"
	"github.com/chsnap/chsnap/formats/disk"
	"github.com/chsnap/chsnap/vm/acpi"
)

// Where virtio-mmio devices live: device i has the 4 KiB window at
// virtioMMIOBase + i*VirtioMMIOSize, in the 32-bit MMIO hole, and GSI
// virtioFirstGSI + i, an IOAPIC pin of its own (pins 0-4 are the legacy
// devices'; the IOAPIC has 24).
const (
	virtioMMIOBase   = 0xD000_0000
	virtioFirstGSI   = 5
	maxVirtioDevices = 24 - virtioFirstGSI
)

// DiskConfig is one virtio-blk disk.
type DiskConfig struct {
	// ID names the disk in the archive, in errors and to the guest
	// (virtio-blk GET_ID): 1 to 20 of [A-Za-z0-9_-].
	ID string
	// Path is the image file.
	Path string
	// Format is "raw", "qcow2", or "" to detect it.
	Format string
	// ReadOnly refuses the guest's writes.
	ReadOnly bool
}

// checkDeviceID is the one rule for the ids of configured devices: 1 to
// fdmap.MaxIDLen of [A-Za-z0-9_-] (the form --net-fd and --disk ID=PATH
// parse), unique among all the VM's devices, legacy ones included, since
// each names a device section of the archive. seen holds the ids so far.
func checkDeviceID(kind, id string, seen map[string]bool) error {
	if !fdmap.ValidID(id) {
		return fmt.Errorf("%w: %s id %q: use 1 to %d letters, digits, - or _", ErrConfig, kind, id, fdmap.MaxIDLen)
	}
	if seen[id] {
		return fmt.Errorf("%w: %s id %q is already the id of another device", ErrConfig, kind, id)
	}
	seen[id] = true
	return nil
}

// validateDevices checks the virtio devices: how many there are, their
// ids, and each kind's own fields.
func validateDevices(disks []DiskConfig, nets []NetConfig) error {
	if len(nets)+len(disks) > maxVirtioDevices {
		return fmt.Errorf("%w: %d disks and %d nets, at most %d virtio devices in all", ErrConfig, len(disks), len(nets), maxVirtioDevices)
	}
	seen := map[string]bool{}
	for _, name := range deviceNames {
		seen[name] = true
	}
	for _, d := range disks {
		if err := checkDeviceID("disk", d.ID, seen); err != nil {
			return err
		}
		if err := d.validate(); err != nil {
			return err
		}
	}
	for _, n := range nets {
		if err := checkDeviceID("net", n.ID, seen); err != nil {
			return err
		}
		if err := n.validate(); err != nil {
			return err
		}
	}
	return nil
}

// validate checks a disk's path and format.
func (d *DiskConfig) validate() error {
	if d.Path == "" {
		return fmt.Errorf("%w: disk %s: no path", ErrConfig, d.ID)
	}
	switch d.Format {
	case "", disk.FormatRaw, disk.FormatQcow2:
	default:
		return fmt.Errorf("%w: disk %s: format %q is not raw or qcow2", ErrConfig, d.ID, d.Format)
	}
	return nil
}

// virtioSlot is where device i sits.
func virtioSlot(i int) (base uint64, gsi uint32) {
	return virtioMMIOBase + uint64(i)*devstate.VirtioMMIOSize, virtioFirstGSI + uint32(i)
}

// virtioACPI returns the DSDT entries for n virtio-mmio devices.
func virtioACPI(n int) ([]acpi.Term, error) {
	var terms []acpi.Term
	for i := range n {
		base, gsi := virtioSlot(i)
		d, err := acpi.VirtioMMIO(i, base, devstate.VirtioMMIOSize, gsi)
		if err != nil {
			return nil, err
		}
		terms = append(terms, d)
	}
	return terms, nil
}

// virtioCmdline appends the virtio_mmio.device= words for n devices, for
// guests that discover devices from the command line (ours; Linux with
// CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES) rather than from the DSDT.
func virtioCmdline(cmdline string, n int) string {
	words := []string{}
	if cmdline != "" {
		words = append(words, cmdline)
	}
	for i := range n {
		words = append(words, devstate.VirtioMMIOCmdline(virtioSlot(i)))
	}
	return strings.Join(words, " ")
}

// virtioDisk is one virtio-blk disk and its transport.
type virtioDisk struct {
	cfg       DiskConfig
	disk      disk.Disk // owned: closed by devices.close
	block     *devstate.VirtioBlock
	transport *devstate.VirtioMMIO
}

// mmioRange is an MMIO window served by one device.
type mmioRange struct {
	base, size uint64
	dev        devstate.MMIO
}

// mmioBus routes MMIO exits; built before any vCPU runs, read-only after.
type mmioBus struct {
	ranges []mmioRange // sorted by base, non-overlapping
}

func (b *mmioBus) add(base, size uint64, dev devstate.MMIO) {
	b.ranges = append(b.ranges, mmioRange{base, size, dev})
	sort.Slice(b.ranges, func(i, j int) bool { return b.ranges[i].base < b.ranges[j].base })
}

func (b *mmioBus) find(addr uint64) (devstate.MMIO, bool) {
	i := sort.Search(len(b.ranges), func(i int) bool { return b.ranges[i].base+b.ranges[i].size > addr })
	if i < len(b.ranges) && b.ranges[i].base <= addr {
		return b.ranges[i].dev, true
	}
	return nil, false
}

// save records the disk in st: flushed first, so every write the guest
// completed is in the image the archive names.
func (vd *virtioDisk) save(st *savedState) error {
	if err := vd.block.Flush(); err != nil {
		return fmt.Errorf("flush disk %s: %w", vd.cfg.ID, err)
	}
	id := vd.disk.Identity()
	rec := diskRecord{ID: vd.cfg.ID, Path: vd.cfg.Path, Format: id.Format, ReadOnly: vd.cfg.ReadOnly, Identity: id}
	st.Config.Disks = append(st.Config.Disks, rec)
	st.Disks = append(st.Disks, diskSaved{Record: rec, diskDeviceState: diskDeviceState{Transport: vd.transport.State(), Block: vd.block.State()}})
	st.Resources.Resources = append(st.Resources.Resources, hostResource{Device: vd.cfg.ID, Kind: "disk", FDs: 0})
	return nil
}

// kick notifies every queue once after a restore: a notification in
// flight at snapshot time is not in the state.
func (vd *virtioDisk) kick() error {
	if vd.transport == nil {
		return nil
	}
	for q := range vd.transport.NumQueues() {
		vd.transport.Notify(q)
	}
	return nil
}

// close flushes and closes the image.
func (vd *virtioDisk) close() error {
	if vd.disk == nil {
		return nil
	}
	return errors.Join(vd.disk.Flush(), vd.disk.Close())
}
