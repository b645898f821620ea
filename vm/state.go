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
	Record    diskRecord
	Transport devstate.VirtioMMIOState
	Block     devstate.VirtioBlockState
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

// deviceStates returns the device sections' payload states in id order.
func (s *savedState) deviceStates() [numDevices]any {
	return [numDevices]any{&s.Serial, &s.I8042, &s.CMOS, &s.Power}
}

// encodeDevice returns the KindDevice payload for device id.
func (s *savedState) encodeDevice(id int) ([]byte, error) {
	st, err := json.Marshal(s.deviceStates()[id])
	if err != nil {
		return nil, fmt.Errorf("encode %s state: %w", deviceNames[id], err)
	}
	return json.Marshal(deviceSection{ID: deviceNames[id], State: st})
}

// encodeDisk returns the KindDevice payload for disk i (device id
// numDevices+i).
func (s *savedState) encodeDisk(i int) ([]byte, error) {
	d := &s.Disks[i]
	st, err := json.Marshal(diskDeviceState{Transport: d.Transport, Block: d.Block})
	if err != nil {
		return nil, fmt.Errorf("encode disk %s state: %w", d.Record.ID, err)
	}
	return json.Marshal(deviceSection{ID: d.Record.ID, State: st})
}

// encodeNet returns the KindDevice payload for net i (device id
// numDevices+len(Disks)+i).
func (s *savedState) encodeNet(i int) ([]byte, error) {
	n := &s.Nets[i]
	st, err := json.Marshal(netDeviceState{Transport: n.Transport, Net: n.Net})
	if err != nil {
		return nil, fmt.Errorf("encode net %s state: %w", n.Record.ID, err)
	}
	return json.Marshal(deviceSection{ID: n.Record.ID, State: st})
}

// deviceIDs lists the devices' ids in device-section order.
func (s *savedState) deviceIDs() []string {
	ids := append([]string(nil), deviceNames[:]...)
	for _, d := range s.Disks {
		ids = append(ids, d.Record.ID)
	}
	for _, n := range s.Nets {
		ids = append(ids, n.Record.ID)
	}
	return ids
}

// deviceName names device section id in messages.
func (s *savedState) deviceName(id int) string {
	switch {
	case id < numDevices:
		return deviceNames[id]
	case id < numDevices+len(s.Disks):
		return s.Disks[id-numDevices].Record.ID
	case id < numDevices+len(s.Disks)+len(s.Nets):
		return s.Nets[id-numDevices-len(s.Disks)].Record.ID
	}
	return fmt.Sprint(id)
}

// decodeDevice fills device id's state from a KindDevice payload.
func (s *savedState) decodeDevice(id uint32, payload []byte) error {
	if int64(id) >= int64(numDevices+len(s.Disks)) {
		i := int(int64(id) - int64(numDevices+len(s.Disks)))
		if i >= len(s.Nets) {
			return fmt.Errorf("device section %d: unknown device", id)
		}
		var d deviceSection
		if err := strictUnmarshal(payload, &d); err != nil {
			return fmt.Errorf("device section %d: %w", id, err)
		}
		if d.ID != s.Nets[i].Record.ID {
			return fmt.Errorf("device section %d: names %q, want net %q", id, d.ID, s.Nets[i].Record.ID)
		}
		var ns netDeviceState
		if err := strictUnmarshal(d.State, &ns); err != nil {
			return fmt.Errorf("net %s: %w", d.ID, err)
		}
		s.Nets[i].Transport, s.Nets[i].Net = ns.Transport, ns.Net
		return nil
	}
	if id >= numDevices {
		i := int(id) - numDevices
		if i >= len(s.Disks) {
			return fmt.Errorf("device section %d: unknown device", id)
		}
		var d deviceSection
		if err := strictUnmarshal(payload, &d); err != nil {
			return fmt.Errorf("device section %d: %w", id, err)
		}
		if d.ID != s.Disks[i].Record.ID {
			return fmt.Errorf("device section %d: names %q, want disk %q", id, d.ID, s.Disks[i].Record.ID)
		}
		var ds diskDeviceState
		if err := strictUnmarshal(d.State, &ds); err != nil {
			return fmt.Errorf("disk %s: %w", d.ID, err)
		}
		s.Disks[i].Transport, s.Disks[i].Block = ds.Transport, ds.Block
		return nil
	}
	var d deviceSection
	if err := strictUnmarshal(payload, &d); err != nil {
		return fmt.Errorf("device section %d: %w", id, err)
	}
	if d.ID != deviceNames[id] {
		return fmt.Errorf("device section %d: names %q, want %q", id, d.ID, deviceNames[id])
	}
	if err := strictUnmarshal(d.State, s.deviceStates()[id]); err != nil {
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
