package vm

import (
	"fmt"

	"github.com/chsnap/chsnap/kvmstate"
	"github.com/chsnap/chsnap/memdump"
	"github.com/chsnap/chsnap/vm/acpi"
	"github.com/chsnap/chsnap/vm/boot"
)

// LAPIC local vector table registers and delivery modes set at boot, as a
// PC's firmware leaves them: LINT0 as ExtINT (the 8259 path), LINT1 as NMI.
const (
	lapicLVT0           = 0x350
	lapicLVT1           = 0x360
	lapicDeliveryMask   = 0x700
	lapicDeliveryExtINT = 0x700
	lapicDeliveryNMI    = 0x400
)

// bootEntry is where the boot vCPU starts.
type bootEntry = *boot.Entry

// loadGuest writes the ACPI tables, the kernel, initrd, command line and boot
// structures into guest RAM.
func loadGuest(mem *memdump.Memory, cfg Config) (bootEntry, error) {
	virtio, err := virtioACPI(len(cfg.Disks) + len(cfg.Nets))
	if err != nil {
		return nil, fmt.Errorf("virtio ACPI entries: %w", err)
	}
	tables, err := acpi.Build(acpi.Config{APICIDs: cfg.topology().APICIDs(), Devices: virtio})
	if err != nil {
		return nil, fmt.Errorf("build ACPI tables: %w", err)
	}
	if _, err := mem.WriteAt(tables.Blob, int64(tables.Base)); err != nil {
		return nil, fmt.Errorf("write ACPI tables: %w", err)
	}
	entry, err := boot.Setup(mem, boot.Config{
		Kernel:  cfg.Kernel,
		Initrd:  cfg.Initrd,
		Cmdline: virtioCmdline(cfg.Cmdline, len(cfg.Disks)+len(cfg.Nets)),
		MemSize: cfg.Memory,
		RSDP:    tables.RSDP,
	})
	if err != nil {
		name := cfg.KernelPath
		if name == "" {
			name = "image"
		}
		return nil, fmt.Errorf("load kernel %s: %w", name, err)
	}
	return entry, nil
}

// configureVCPU sets a new vCPU's boot state, on its own thread. The order
// follows what KVM needs: CPUID first (MSR and LAPIC behaviour depend on it),
// then MSRs, registers, FPU, special registers, and the LAPIC. Only vCPU 0
// gets the entry state; the others wait in KVM for INIT/SIPI.
func (v *VM) configureVCPU(id int, cpu *kvmstate.VCPU) error {
	if err := cpu.SetCPUID2(vcpuCPUID(v.shaped, v.cfg.topology(), id)); err != nil {
		return err
	}
	if xcr0 := bootXCR0(v.shaped); xcr0 != xfeatureX87 {
		xcrs := kvmstate.XCRS{NrXCRS: 1}
		xcrs.XCRS[0].Value = xcr0
		if err := cpu.SetXCRS(&xcrs); err != nil {
			return fmt.Errorf("set xcr0 %#x: %w", xcr0, err)
		}
	}
	var msrs []kvmstate.MSREntry
	for _, m := range boot.BootMSRs() {
		msrs = append(msrs, kvmstate.MSREntry{Index: m.Index, Data: m.Value})
	}
	if err := cpu.SetMSRs(msrs); err != nil {
		return err
	}
	if id == 0 {
		regs := v.entry.Regs
		if err := cpu.SetRegs(&regs); err != nil {
			return err
		}
		fpu := kvmstate.FPU{FCW: boot.FPUControlWord, MXCSR: boot.MXCSR}
		if err := cpu.SetFPU(&fpu); err != nil {
			return err
		}
		sregs, err := cpu.Sregs()
		if err != nil {
			return err
		}
		v.entry.ApplySregs(&sregs)
		if err := cpu.SetSregs(&sregs); err != nil {
			return err
		}
	}
	lapic, err := cpu.LAPIC()
	if err != nil {
		return err
	}
	lapic.Set32(lapicLVT0, lapic.Get32(lapicLVT0)&^lapicDeliveryMask|lapicDeliveryExtINT)
	lapic.Set32(lapicLVT1, lapic.Get32(lapicLVT1)&^lapicDeliveryMask|lapicDeliveryNMI)
	return cpu.SetLAPIC(&lapic)
}
