package kvmstate

import (
	"runtime"
	"unsafe"
)

// deviceAttr mirrors struct kvm_device_attr. addr holds the address of the
// attribute's value as an integer, which the GC cannot see: callers point it
// at a heap value and keep that alive across the call.
type deviceAttr struct {
	flags uint32
	group uint32
	attr  uint64
	addr  uint64
}

// The vCPU TSC attribute (Documentation/virt/kvm/devices/vcpu.rst §4).
const (
	vcpuTSCCtrl   = 0 // KVM_VCPU_TSC_CTRL group
	vcpuTSCOffset = 0 // KVM_VCPU_TSC_OFFSET attribute
)

// HasTSCOffset reports whether the kernel exposes the vCPU TSC offset
// attribute (KVM_HAS_DEVICE_ATTR; Linux 5.16 and later).
func (v *VCPU) HasTSCOffset() bool {
	a := &deviceAttr{group: vcpuTSCCtrl, attr: vcpuTSCOffset}
	_, err := ioctlPtr(v.fd, kvmHasDeviceAttr, a)
	return err == nil
}

// TSCOffset returns the vCPU's TSC offset: guest TSC = host TSC + offset
// (KVM_GET_DEVICE_ATTR, group KVM_VCPU_TSC_CTRL). After restoring MSR_IA32_TSC
// vCPU by vCPU the offsets differ slightly; copying vCPU 0's to all lets KVM
// use its masterclock again.
func (v *VCPU) TSCOffset() (int64, error) {
	val := new(int64)
	a := &deviceAttr{group: vcpuTSCCtrl, attr: vcpuTSCOffset, addr: uint64(uintptr(unsafe.Pointer(val)))}
	_, err := ioctlPtr(v.fd, kvmGetDeviceAttr, a)
	runtime.KeepAlive(val)
	return *val, err
}

// SetTSCOffset sets the vCPU's TSC offset (KVM_SET_DEVICE_ATTR, group
// KVM_VCPU_TSC_CTRL). Preconditions: all vCPUs paused.
func (v *VCPU) SetTSCOffset(off int64) error {
	val := new(int64)
	*val = off
	a := &deviceAttr{group: vcpuTSCCtrl, attr: vcpuTSCOffset, addr: uint64(uintptr(unsafe.Pointer(val)))}
	_, err := ioctlPtr(v.fd, kvmSetDeviceAttr, a)
	runtime.KeepAlive(val)
	return err
}
