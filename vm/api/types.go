package api

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Controller is the VM as the API server sees it. Package vm implements it;
// every method must be safe for concurrent use.
type Controller interface {
	// Info describes the VM.
	Info() (VMInfo, error)
	// Pause stops every vCPU. Pausing a paused VM returns an error that Is
	// ErrState.
	Pause() error
	// Resume restarts the vCPUs. Resuming a running VM returns an error
	// that Is ErrState.
	Resume() error
	// Snapshot writes a whole archive to w: it pauses the VM if it runs and
	// resumes it afterwards unless opt.LeavePaused. An error from w must
	// end the snapshot (the client went away) and still resume the VM.
	Snapshot(w io.Writer, opt SnapshotOptions) error
	// SnapshotToFile writes an archive to path atomically: a temporary
	// file beside path, fsync, rename.
	SnapshotToFile(path string, opt SnapshotOptions) error
	// Shutdown stops the VM. It must return before the process exits so
	// the server can send its reply; the process then exits 0.
	Shutdown() error
}

// Restorer is implemented by a Controller that can restore a VM into an empty
// VMM (one started without a VM), serving vm.restore. A restore into a VMM
// that already has a VM fails with an error that Is ErrState.
type Restorer interface {
	// Restore rebuilds the VM from the archive at path; it resumes it only
	// if cfg.Resume (Cloud Hypervisor's semantics: a restored VM is paused).
	// files are the descriptors that came with the request (SCM_RIGHTS), to
	// be split among cfg.NetFDs in order; Restore owns them and closes every
	// one it does not bind, whatever happens.
	Restore(path string, cfg RestoreConfig, files []*os.File) error
}

// SnapshotOptions tunes a snapshot.
type SnapshotOptions struct {
	// LeavePaused keeps the VM paused after the snapshot.
	LeavePaused bool
	// Progress, if not nil, is called with guest RAM bytes done and total.
	Progress func(done, total uint64)
}

// VM states reported in VMInfo.State, Cloud Hypervisor's VmState names.
const (
	StateRunning  = "Running"
	StatePaused   = "Paused"
	StateShutdown = "Shutdown"
)

// VMInfo is vm.info's answer, Cloud Hypervisor's VmInfo (without
// device_tree).
type VMInfo struct {
	// State is StateRunning, StatePaused or StateShutdown.
	State string `json:"state"`
	// Config is the configuration the VM was booted with.
	Config VMConfigInfo `json:"config"`
	// MemoryActualSize is guest RAM in bytes.
	MemoryActualSize uint64 `json:"memory_actual_size"`
}

// VMConfigInfo is the part of Cloud Hypervisor's VmConfig that chsnap has.
type VMConfigInfo struct {
	// CPUs is the vCPU count.
	CPUs CPUsConfig `json:"cpus"`
	// Memory is the guest RAM.
	Memory MemoryConfig `json:"memory"`
	// Payload is what was booted.
	Payload PayloadConfig `json:"payload"`
	// Disks are the virtio-blk disks.
	Disks []DiskConfig `json:"disks,omitempty"`
	// Net are the virtio-net devices.
	Net []NetConfig `json:"net,omitempty"`
}

// DiskConfig is the part of Cloud Hypervisor's DiskConfig that chsnap has.
type DiskConfig struct {
	// Path is the image file.
	Path string `json:"path"`
	// ReadOnly says the guest cannot write the disk.
	ReadOnly bool `json:"readonly,omitempty"`
	// ID names the disk.
	ID string `json:"id,omitempty"`
}

// NetConfig is the part of Cloud Hypervisor's NetConfig that chsnap has.
type NetConfig struct {
	// ID names the device (as in --net-fd ID=FD).
	ID string `json:"id"`
	// Tap is the tap's name when chsnap opened it by name.
	Tap string `json:"tap,omitempty"`
	// MAC is the guest's address.
	MAC string `json:"mac"`
	// NumQueues counts the device's rx and tx queues.
	NumQueues int `json:"num_queues,omitempty"`
}

// CPUsConfig is Cloud Hypervisor's CpusConfig (boot and max only).
type CPUsConfig struct {
	// BootVCPUs is the number of vCPUs.
	BootVCPUs int `json:"boot_vcpus"`
	// MaxVCPUs equals BootVCPUs: chsnap has no CPU hotplug.
	MaxVCPUs int `json:"max_vcpus"`
}

// MemoryConfig is Cloud Hypervisor's MemoryConfig (size only).
type MemoryConfig struct {
	// Size is guest RAM in bytes.
	Size uint64 `json:"size"`
}

// PayloadConfig is Cloud Hypervisor's PayloadConfig (kernel, cmdline,
// initramfs).
type PayloadConfig struct {
	// Kernel is the kernel's path, empty for the bundled guest.
	Kernel string `json:"kernel,omitempty"`
	// Cmdline is the kernel command line.
	Cmdline string `json:"cmdline,omitempty"`
	// Initramfs is the initrd's path, if any.
	Initramfs string `json:"initramfs,omitempty"`
}

// PingResponse is vmm.ping's answer, Cloud Hypervisor's VmmPingResponse.
type PingResponse struct {
	// BuildVersion identifies the build (e.g. a VCS revision).
	BuildVersion string `json:"build_version"`
	// Version is chsnap's release version.
	Version string `json:"version"`
	// PID is the VMM's process id.
	PID int64 `json:"pid"`
	// Features lists chsnap's extensions, e.g. "vm.snapshot.stream".
	Features []string `json:"features"`
}

// SnapshotConfig is vm.snapshot's body, Cloud Hypervisor's VmSnapshotConfig.
type SnapshotConfig struct {
	// DestinationURL is file:///absolute/path of the archive to write.
	DestinationURL string `json:"destination_url"`
}

// StreamConfig is vm.snapshot.stream's body (optional: empty means defaults).
type StreamConfig struct {
	// LeavePaused keeps the VM paused after the snapshot.
	LeavePaused bool `json:"leave_paused"`
}

// RestoreConfig is vm.restore's body, the part of Cloud Hypervisor's
// RestoreConfig chsnap understands. The route answers 501 for now.
type RestoreConfig struct {
	// SourceURL is file:///absolute/path of the archive.
	SourceURL string `json:"source_url"`
	// Prefault asks for all guest RAM to be loaded before the VM resumes.
	Prefault bool `json:"prefault"`
	// Resume starts the vCPUs after the restore.
	Resume bool `json:"resume"`
	// NetFDs binds fds sent with the request to network devices.
	NetFDs []RestoredNetConfig `json:"net_fds,omitempty"`
}

// RestoredNetConfig is Cloud Hypervisor's RestoredNetConfig.
type RestoredNetConfig struct {
	// ID is the network device's id.
	ID string `json:"id"`
	// NumFDs is how many fds of the request belong to it.
	NumFDs int `json:"num_fds"`
}

// ErrorResponse is the body of every error response.
type ErrorResponse struct {
	// Error is a one-line, user-facing message.
	Error string `json:"error"`
}

// Sentinel errors a Controller returns to choose the status code, and that
// Client errors match with errors.Is.
var (
	// ErrState: the VM is in the wrong state for the call (409).
	ErrState = errors.New("api: wrong VM state")
	// ErrNotImplemented: the call is not implemented (501).
	ErrNotImplemented = errors.New("api: not implemented")
)

// stateError is an ErrState whose message is only its own text.
type stateError struct{ msg string }

func (e *stateError) Error() string        { return e.msg }
func (e *stateError) Is(target error) bool { return target == ErrState }

// StateErrorf returns an error that Is ErrState and reads as the formatted
// message alone, e.g. StateErrorf("the VM is already paused").
func StateErrorf(format string, args ...any) error {
	return &stateError{fmt.Sprintf(format, args...)}
}
