package vm

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/chsnap/chsnap/devstate"
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

// decodeDevice fills device id's state from a KindDevice payload.
func (s *savedState) decodeDevice(id uint32, payload []byte) error {
	if id >= numDevices {
		return fmt.Errorf("device section %d: unknown device", id)
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
// half-understood.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}
