package vm

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/chsnap/chsnap/devstate"
	"github.com/chsnap/chsnap/formats/disk"
	"github.com/chsnap/chsnap/kvmstate"
)

// The JSON payloads of the archive's state sections (formats/SPEC.md lists
// their fields). encoding/json writes struct fields in declaration order and
// no maps are used, so the same state always gives the same bytes.

// configSection is the KindConfig payload: what is needed to rebuild the
// VM's shape before any state is loaded.
type configSection struct {
	CPUs    int    `json:"cpus"`
	Memory  uint64 `json:"memory"`
	Cmdline string `json:"cmdline"`
	// Kernel names the image the VM was booted from; informational only
	// (the kernel is in guest memory).
	Kernel string `json:"kernel"`
	// Disks are the virtio-blk disks, in device order (format 1.1).
	Disks []diskRecord `json:"disks,omitempty"`
	// Topology is the vCPU topology (format 1.1); absent means the default,
	// one package of cpus cores.
	Topology *Topology `json:"topology,omitempty"`
	// Nets are the virtio-net devices, in device order after the disks
	// (format 1.2).
	Nets []netRecord `json:"nets,omitempty"`
}

// diskRecord is a disk as the config section records it: where it was and
// which image it was, so a restore can tell it is given the same one.
type diskRecord struct {
	ID       string        `json:"id"`
	Path     string        `json:"path"`
	Format   string        `json:"format"`
	ReadOnly bool          `json:"readonly"`
	Identity disk.Identity `json:"identity"`
}

// diskSaved is one disk's saved state.
type diskSaved struct {
	Record diskRecord
	diskDeviceState
	// moved is set at restore when the user pointed the disk at another
	// path (a copy): the device and inode then differ by design.
	moved bool
}

// diskDeviceState is the state field of a disk's KindDevice section.
type diskDeviceState struct {
	Transport devstate.VirtioMMIOState  `json:"transport"`
	Block     devstate.VirtioBlockState `json:"block"`
}

// check refuses a disk image that is not the one the archive was saved
// with: another format, size or header (another image), or, unless the
// user named a copy, another file.
func (d *diskSaved) check(img disk.Disk) error {
	want, got := d.Record.Identity, img.Identity()
	switch {
	case got.Format != want.Format:
		return fmt.Errorf("disk %s: %s is %s, but the archive was saved with a %s image", d.Record.ID, d.Record.Path, got.Format, want.Format)
	case got.Size != want.Size:
		return fmt.Errorf("disk %s: %s has %d bytes, but the archive's disk had %d", d.Record.ID, d.Record.Path, got.Size, want.Size)
	case got.HeaderDigest != want.HeaderDigest:
		return fmt.Errorf("disk %s: %s is not the image the archive was saved with (its header differs)", d.Record.ID, d.Record.Path)
	case !d.moved && (got.Dev != want.Dev || got.Inode != want.Inode):
		return fmt.Errorf("disk %s: %s is another file than the one the archive was saved with (device/inode %d/%d, saved %d/%d); if it is a copy, name it with --disk %s=PATH", d.Record.ID, d.Record.Path, got.Dev, got.Inode, want.Dev, want.Inode, d.Record.ID)
	}
	return nil
}

// hostResource is a placeholder for something of the host's that the VM
// used and that must be supplied again at restore: never an fd number.
type hostResource struct {
	Device string `json:"device"`
	Kind   string `json:"kind"`
	FDs    int    `json:"fds"`
}

// hostResourcesSection is the KindHostResource payload.
type hostResourcesSection struct {
	Resources []hostResource `json:"resources"`
}

// Device ids in the archive: a KindDevice section's id is the index here.
const (
	devSerial = iota
	devI8042
	devCMOS
	devPower
	numDevices
)

// deviceNames are the devices' ids as the archive and messages name them.
var deviceNames = [numDevices]string{"com1", "i8042", "cmos", "acpi-power"}

// deviceSection is the KindDevice payload.
type deviceSection struct {
	ID    string          `json:"id"`
	State json.RawMessage `json:"state"`
}

// savedState is a whole VM's state apart from memory, as it goes into or
// comes out of an archive.
type savedState struct {
	Config    configSection
	Resources hostResourcesSection
	VM        kvmstate.VMState
	VCPUs     []kvmstate.VCPUState
	Serial    devstate.SerialState
	I8042     devstate.I8042State
	CMOS      devstate.CMOSState
	Power     devstate.PowerState
	Disks     []diskSaved
	Nets      []netSaved
}

// sectionEntry is one entry of an archive's device table: a device's id
// and the state its KindDevice section holds (a pointer into savedState).
type sectionEntry struct {
	id    string
	state any
}

// deviceTable lists the devices in device-section order, the one place the
// order is defined: the legacy devices, then the disks, then the nets (a
// KindDevice section's id is the index here). A new device kind is one
// more entry here and one in the VM's runtime table (devices.table).
func (s *savedState) deviceTable() []sectionEntry {
	t := []sectionEntry{
		{deviceNames[devSerial], &s.Serial},
		{deviceNames[devI8042], &s.I8042},
		{deviceNames[devCMOS], &s.CMOS},
		{deviceNames[devPower], &s.Power},
	}
	for i := range s.Disks {
		t = append(t, sectionEntry{s.Disks[i].Record.ID, &s.Disks[i].diskDeviceState})
	}
	for i := range s.Nets {
		t = append(t, sectionEntry{s.Nets[i].Record.ID, &s.Nets[i].netDeviceState})
	}
	return t
}

// encodeDevice returns the KindDevice payload of a device table entry.
func encodeDevice(e sectionEntry) ([]byte, error) {
	st, err := json.Marshal(e.state)
	if err != nil {
		return nil, fmt.Errorf("encode %s state: %w", e.id, err)
	}
	return json.Marshal(deviceSection{ID: e.id, State: st})
}

// deviceIDs lists the devices' ids in device-section order.
func (s *savedState) deviceIDs() []string {
	var ids []string
	for _, e := range s.deviceTable() {
		ids = append(ids, e.id)
	}
	return ids
}

// decodeDevice fills the state of the device table's entry id from a
// KindDevice payload, which must name that device.
func decodeDevice(table []sectionEntry, id uint32, payload []byte) error {
	if uint64(id) >= uint64(len(table)) {
		return fmt.Errorf("device section %d: unknown device (the archive has %d)", id, len(table))
	}
	e := table[id]
	var d deviceSection
	if err := strictUnmarshal(payload, &d); err != nil {
		return fmt.Errorf("device section %d: %w", id, err)
	}
	if d.ID != e.id {
		return fmt.Errorf("device section %d: names %q, want %q", id, d.ID, e.id)
	}
	if err := strictUnmarshal(d.State, e.state); err != nil {
		return fmt.Errorf("device %s: %w", d.ID, err)
	}
	return nil
}

// strictUnmarshal decodes JSON refusing unknown fields: a section written by
// a newer minor with fields this version does not know must not be silently
// half-understood. Keys must also match their field's name exactly
// (encoding/json alone would take "Memory" for "memory"): an archive is
// read as it is written, or not at all.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON value")
	}
	var tree any
	dec = json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&tree); err != nil {
		return err
	}
	return exactKeys(tree, reflect.TypeOf(v), "")
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// exactKeys checks that every object key in tree (a decoded JSON value)
// names a field of t exactly as encoding/json writes it; path says where,
// for the error. Values of types that decode themselves are not looked into.
func exactKeys(tree any, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := tree.(map[string]any)
		if !ok {
			return nil // null, or a type error encoding/json reported already
		}
		fields := jsonFields(t)
		for key, val := range obj {
			ft, ok := fields[key]
			if !ok {
				for name := range fields {
					if strings.EqualFold(name, key) {
						return fmt.Errorf("key %q%s: the field is %q (keys are case-sensitive)", key, where(path), name)
					}
				}
				return fmt.Errorf("unknown key %q%s", key, where(path))
			}
			if err := exactKeys(val, ft, path+"."+key); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		arr, ok := tree.([]any)
		if !ok {
			return nil // e.g. []byte as base64
		}
		for i, val := range arr {
			if err := exactKeys(val, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		obj, ok := tree.(map[string]any)
		if !ok {
			return nil
		}
		for key, val := range obj {
			if err := exactKeys(val, t.Elem(), path+"."+key); err != nil {
				return err
			}
		}
	}
	return nil
}

func where(path string) string {
	if path == "" {
		return ""
	}
	return " in " + strings.TrimPrefix(path, ".")
}

// jsonFields maps the JSON names of t's fields, as encoding/json names them
// (the tag's name, else the Go name; untagged embedded structs flattened),
// to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		ft := f.Type
		if f.Anonymous && name == "" {
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for n, typ := range jsonFields(ft) {
					if _, ok := fields[n]; !ok {
						fields[n] = typ
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = ft
	}
	return fields
}
