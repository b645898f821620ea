// Package kvmstate is the only code in chsnap that issues KVM ioctls.
//
// It exposes typed handles — System (/dev/kvm), VM and VCPU — with one method
// per ioctl, and Go mirrors of the kernel's UAPI structs (struct kvm_regs as
// Regs, struct kvm_sregs as Sregs, …). Request numbers are computed from the
// Go struct sizes, so a mirror that drifts from the kernel's layout makes the
// kernel reject the call rather than write past it; layout_test.go checks
// every size and number against /usr/include/linux/kvm.h.
//
// It does not know about devices, guest memory layout or the archive format.
package kvmstate
