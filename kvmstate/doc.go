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
//
// Conventions:
//   - Every error from an ioctl is an *IoctlError naming the request
//     ("kvm: KVM_SET_SREGS: invalid argument") and wrapping the errno.
//     Ioctls are retried on EINTR, except KVM_RUN, whose EINTR is the kick
//     the vm package waits for; KVM_CREATE_VM gives up after 5 retries.
//   - Getters return values (Regs() (Regs, error)); setters take pointers
//     (SetRegs(*Regs)) and copy the argument to the heap before the ioctl.
//   - Each handle owns its fd (a VCPU also its run page) and releases it once
//     in Close; a second Close returns ErrClosed. Close VCPUs, then the VM.
//   - A VCPU is created on, and used only from, the OS thread that runs it
//     (the vm package locks one goroutine per vCPU); SetImmediateExit is the
//     one method meant for other threads.
//   - The package is x86-64 only: the state mirrors are those of
//     arch/x86/include/uapi/asm/kvm.h.
//
// Sources: Documentation/virt/kvm/api.rst, include/uapi/linux/kvm.h,
// arch/x86/include/uapi/asm/kvm.h; the save/restore ordering notes follow
// Firecracker (src/vmm/src/arch/x86_64/vcpu.rs) and Cloud Hypervisor.
package kvmstate
