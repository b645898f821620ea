package kvmstate

import "fmt"

// GetIRQChip returns the state of in-kernel interrupt controller chip
// (PICMaster, PICSlave or IOAPIC) with KVM_GET_IRQCHIP.
func (vm *VM) GetIRQChip(chip uint32) (IRQChip, error) {
	if chip > IOAPIC {
		return IRQChip{}, fmt.Errorf("kvm: KVM_GET_IRQCHIP: chip id %d is not 0–2", chip)
	}
	c := &IRQChip{ChipID: chip}
	_, err := ioctlPtr(vm.fd, kvmGetIRQChip, c)
	return *c, err
}

// SetIRQChip loads c into the in-kernel controller c.ChipID
// (KVM_SET_IRQCHIP). Preconditions: all vCPUs paused.
func (vm *VM) SetIRQChip(c *IRQChip) error {
	if c.ChipID > IOAPIC {
		return fmt.Errorf("kvm: KVM_SET_IRQCHIP: chip id %d is not 0–2", c.ChipID)
	}
	cp := new(IRQChip)
	*cp = *c
	_, err := ioctlPtr(vm.fd, kvmSetIRQChip, cp)
	return err
}

// GetPIT2 returns the in-kernel PIT's state (KVM_GET_PIT2).
func (vm *VM) GetPIT2() (PITState2, error) {
	p := new(PITState2)
	_, err := ioctlPtr(vm.fd, kvmGetPIT2, p)
	return *p, err
}

// SetPIT2 loads p into the in-kernel PIT (KVM_SET_PIT2).
// Preconditions: all vCPUs paused.
func (vm *VM) SetPIT2(p *PITState2) error {
	cp := new(PITState2)
	*cp = *p
	_, err := ioctlPtr(vm.fd, kvmSetPIT2, cp)
	return err
}

// GetClock returns the VM's kvmclock (KVM_GET_CLOCK).
func (vm *VM) GetClock() (ClockData, error) {
	c := new(ClockData)
	_, err := ioctlPtr(vm.fd, kvmGetClock, c)
	return *c, err
}

// SetClock sets the VM's kvmclock (KVM_SET_CLOCK). Of the flags only
// ClockRealtime has an effect: KVM then advances the clock by the host
// real time elapsed since c.Realtime. Pass Flags 0 to resume the guest's
// monotonic time exactly where c.Clock left it.
// Preconditions: all vCPUs paused, before they resume.
func (vm *VM) SetClock(c *ClockData) error {
	cp := new(ClockData)
	*cp = *c
	_, err := ioctlPtr(vm.fd, kvmSetClock, cp)
	return err
}
