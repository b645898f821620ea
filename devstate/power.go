package devstate

// Layout of the ACPI hardware-reduced sleep and reset register. The FADT
// points SLEEP_CONTROL_REG, SLEEP_STATUS_REG and RESET_REG at this one 8-bit
// I/O port, with RESET_VALUE PowerResetValue, and the DSDT's _S5_ package is
// {5, 5, 0, 0}, so a power-off writes SLP_TYP 5 with SLP_EN (0x34).
// ACPI 6.5 §4.8.3.7 (sleep control register), §4.8.3.6 (reset register).
const (
	// PowerPort is the I/O port of the sleep control/status and reset register.
	PowerPort uint16 = 0x600
	// PowerPorts is how many ports the power device claims.
	PowerPorts = 1
	// PowerResetValue is the FADT RESET_VALUE: writing it resets the machine.
	PowerResetValue = 0x01
	// PowerS5SleepType is the SLP_TYP of S5 (soft off), as in the DSDT's _S5_.
	PowerS5SleepType = 5

	powerSlpEn       = 0x20 // SLP_EN, bit 5
	powerSlpTypShift = 2    // SLP_TYP, bits 2–4
	powerSlpTypMask  = 0x07
)

// PowerDeps is what a Power device needs from the outside world.
type PowerDeps struct {
	// PowerOff is called when the guest enters S5. Reset is called when it
	// writes the reset value. Both run on the writing vCPU's thread, must not
	// block waiting for that vCPU, and may be called more than once. Nil
	// ignores the request.
	PowerOff func()
	Reset    func()
}

// PowerState is the saveable state of a Power device: the register keeps
// nothing between accesses, so it is empty.
type PowerState struct{}

// Power is the ACPI hardware-reduced sleep control, sleep status and reset
// register at PowerPort. Reads return 0 (no wake status); a write of SLP_EN
// with SLP_TYP 5 calls PowerOff, a write of PowerResetValue calls Reset, and
// any other value (such as the WAK_STS clear Linux writes first) is ignored.
// Power holds no mutable state, so it is safe for concurrent use.
type Power struct {
	powerOff func()
	reset    func()
}

// NewPower returns a Power device.
func NewPower(deps PowerDeps) *Power {
	return &Power{powerOff: deps.PowerOff, reset: deps.Reset}
}

// RestorePower rebuilds a Power device; there is no state to check.
func RestorePower(_ PowerState, deps PowerDeps) (*Power, error) {
	return NewPower(deps), nil
}

// State returns the device's (empty) state.
func (p *Power) State() PowerState { return PowerState{} }

// ReadPort implements PortIO: PowerPort reads 0, other ports 0xFF.
func (p *Power) ReadPort(port uint16, data []byte) {
	for i := range data {
		if port+uint16(i) == PowerPort {
			data[i] = 0
		} else {
			data[i] = 0xFF
		}
	}
}

// WritePort implements PortIO. Only the byte that lands on PowerPort counts.
func (p *Power) WritePort(port uint16, data []byte) {
	for i, v := range data {
		if port+uint16(i) != PowerPort {
			continue
		}
		switch {
		case v&powerSlpEn != 0 && (v>>powerSlpTypShift)&powerSlpTypMask == PowerS5SleepType:
			if p.powerOff != nil {
				p.powerOff()
			}
		case v == PowerResetValue:
			if p.reset != nil {
				p.reset()
			}
		}
	}
}
