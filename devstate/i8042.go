package devstate

import (
	"fmt"
	"sync"
)

// Ports and interrupt lines of the i8042 keyboard controller.
const (
	// I8042DataPort is the data port (output buffer on read, input buffer on write).
	I8042DataPort uint16 = 0x60
	// I8042CommandPort is the status register on read and the command
	// register on write.
	I8042CommandPort uint16 = 0x64
	// I8042KbdIRQ is the keyboard interrupt line (ISA IRQ 1).
	I8042KbdIRQ = 1
	// I8042AuxIRQ is the auxiliary (mouse) interrupt line (ISA IRQ 12).
	I8042AuxIRQ = 12
	// I8042OutputSize is how many bytes the output queue holds; bytes queued
	// beyond it are dropped.
	I8042OutputSize = 16
)

// Status register bits.
const (
	i8042StOBF      = 0x01 // output buffer full
	i8042StSys      = 0x04 // system flag (mirrors the command byte)
	i8042StCmd      = 0x08 // last write was to the command port
	i8042StUnlocked = 0x10 // keyboard not inhibited
	i8042StAuxData  = 0x20 // output buffer holds aux data
)

// Command byte ("CTR" in Linux) bits.
const (
	i8042CtrKbdInt = 0x01
	i8042CtrAuxInt = 0x02
	i8042CtrSys    = 0x04
	i8042CtrKbdDis = 0x10
	i8042CtrAuxDis = 0x20
	i8042CtrXlate  = 0x40

	// i8042DefaultCtr is what a BIOS leaves: keyboard interrupt on, system
	// flag set, scan-code translation on.
	i8042DefaultCtr = i8042CtrKbdInt | i8042CtrSys | i8042CtrXlate
	// i8042DefaultOutPort has the reset line deasserted (bit 0) and A20 on (bit 1).
	i8042DefaultOutPort = 0x03
)

// Controller commands written to I8042CommandPort.
const (
	i8042CmdReadCtr      = 0x20
	i8042CmdWriteCtr     = 0x60
	i8042CmdAuxDisable   = 0xA7
	i8042CmdAuxEnable    = 0xA8
	i8042CmdAuxTest      = 0xA9
	i8042CmdSelfTest     = 0xAA
	i8042CmdKbdTest      = 0xAB
	i8042CmdKbdDisable   = 0xAD
	i8042CmdKbdEnable    = 0xAE
	i8042CmdReadInput    = 0xC0
	i8042CmdReadOutPort  = 0xD0
	i8042CmdWriteOutPort = 0xD1
	i8042CmdWriteKbdOut  = 0xD2
	i8042CmdWriteAuxOut  = 0xD3 // Linux's I8042_CMD_AUX_LOOP
	i8042CmdWriteAux     = 0xD4
	i8042CmdPulseReset   = 0xFE
)

// Keyboard commands and replies on the keyboard port.
const (
	kbdCmdSetLEDs    = 0xED
	kbdCmdEcho       = 0xEE
	kbdCmdScanSet    = 0xF0
	kbdCmdIdentify   = 0xF2
	kbdCmdTypematic  = 0xF3
	kbdCmdReset      = 0xFF
	kbdReplyAck      = 0xFA
	kbdReplyResend   = 0xFE
	kbdReplyTestPass = 0xAA
)

// I8042Deps is what an I8042 needs from the outside world.
type I8042Deps struct {
	// Reset is called when the guest asks for a CPU reset (command 0xFE, or
	// an output-port write with bit 0 clear). It runs on the writing vCPU's
	// thread without the device lock held, must not block waiting for that
	// vCPU, and may be called repeatedly (Linux's reboot=k path writes 0xFE
	// up to ten times). Nil ignores resets.
	Reset func()
	// KbdIRQ and AuxIRQ are the keyboard (IRQ 1) and aux (IRQ 12) lines.
	// Either may be nil: the controller then only works polled, which is all
	// the reboot path and a probe with i8042.noaux need. A line is high while
	// the output buffer holds a byte for it and the command byte enables its
	// interrupt. Set is called with the device lock held.
	KbdIRQ IRQ
	AuxIRQ IRQ
}

// I8042Byte is one byte waiting in the controller's output buffer.
type I8042Byte struct {
	// Value is the byte the guest will read from I8042DataPort.
	Value uint8
	// Aux marks a byte from the aux port (status bit 5, IRQ 12).
	Aux bool
}

// I8042State is the saveable state of an I8042.
type I8042State struct {
	// CommandByte is the controller command byte (read with 0x20, written with 0x60).
	CommandByte uint8
	// OutputPort is the controller output port (read with 0xD0, written with 0xD1).
	OutputPort uint8
	// LastWasCommand is status bit 3: the last write went to the command port.
	LastWasCommand bool
	// PendingCommand is the controller command waiting for its data byte
	// (0x60, 0xD1, 0xD2, 0xD3 or 0xD4), or 0.
	PendingCommand uint8
	// KbdPendingCommand is the keyboard command waiting for its parameter
	// (0xED, 0xF0 or 0xF3), or 0.
	KbdPendingCommand uint8
	// Output is the output queue, oldest first, at most I8042OutputSize bytes.
	Output []I8042Byte
}

// I8042 is an i8042 PS/2 keyboard controller with a minimal keyboard behind
// it and no mouse.
//
// It exists for two reasons: the reboot path (command 0xFE on the command
// port calls Reset; status bit 1, input buffer full, always reads clear so
// Linux's kb_wait never waits), and so that Linux's i8042 probe completes
// quickly. The controller answers the probe commands (command byte read and
// write, self-test, interface tests, port enable and disable, 0xD2/0xD3
// output-buffer writes); the keyboard acknowledges commands (reset, identify,
// LEDs, typematic, scan set, enable/disable) but never sends key codes.
// Bytes for the absent aux device are swallowed.
//
// All methods are safe for concurrent use.
type I8042 struct {
	reset  func()
	kbdIRQ IRQ
	auxIRQ IRQ

	// mu guards every field below.
	mu         sync.Mutex
	ctr        uint8       // guarded by mu
	outPort    uint8       // guarded by mu
	lastCmd    bool        // guarded by mu
	pending    uint8       // guarded by mu
	kbdPending uint8       // guarded by mu
	out        []I8042Byte // guarded by mu; at most I8042OutputSize
	kbdLevel   bool        // guarded by mu; last level KbdIRQ accepted
	auxLevel   bool        // guarded by mu; last level AuxIRQ accepted
	err        error       // guarded by mu; first IRQ error
}

// NewI8042 returns a controller in the state a BIOS leaves it, with an empty
// output buffer and both IRQ lines low.
func NewI8042(deps I8042Deps) *I8042 {
	d := newI8042(deps)
	d.ctr = i8042DefaultCtr
	d.outPort = i8042DefaultOutPort
	return d
}

func newI8042(deps I8042Deps) *I8042 {
	return &I8042{reset: deps.Reset, kbdIRQ: deps.KbdIRQ, auxIRQ: deps.AuxIRQ}
}

// RestoreI8042 rebuilds an I8042 from st, checking every field first; on
// error no device is built. It raises an IRQ line whose interrupt is pending
// in st (see RestoreSerial on ordering against the irqchip restore); an
// error from IRQ.Set fails the restore.
func RestoreI8042(st I8042State, deps I8042Deps) (*I8042, error) {
	if err := st.validate(); err != nil {
		return nil, fmt.Errorf("restore i8042: %w", err)
	}
	d := newI8042(deps)
	d.ctr = st.CommandByte
	d.outPort = st.OutputPort
	d.lastCmd = st.LastWasCommand
	d.pending = st.PendingCommand
	d.kbdPending = st.KbdPendingCommand
	d.out = append(make([]I8042Byte, 0, I8042OutputSize), st.Output...)
	d.mu.Lock()
	d.updateLines()
	err := d.err
	d.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("restore i8042: %w", err)
	}
	return d, nil
}

func (st *I8042State) validate() error {
	switch st.PendingCommand {
	case 0, i8042CmdWriteCtr, i8042CmdWriteOutPort, i8042CmdWriteKbdOut, i8042CmdWriteAuxOut, i8042CmdWriteAux:
	default:
		return fmt.Errorf("%w: pending controller command %#02x takes no data byte", ErrInvalidState, st.PendingCommand)
	}
	switch st.KbdPendingCommand {
	case 0, kbdCmdSetLEDs, kbdCmdScanSet, kbdCmdTypematic:
	default:
		return fmt.Errorf("%w: pending keyboard command %#02x takes no parameter", ErrInvalidState, st.KbdPendingCommand)
	}
	if len(st.Output) > I8042OutputSize {
		return fmt.Errorf("%w: output queue holds %d bytes, limit %d", ErrInvalidState, len(st.Output), I8042OutputSize)
	}
	return nil
}

// State returns a copy of the controller's state.
func (d *I8042) State() I8042State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return I8042State{
		CommandByte:       d.ctr,
		OutputPort:        d.outPort,
		LastWasCommand:    d.lastCmd,
		PendingCommand:    d.pending,
		KbdPendingCommand: d.kbdPending,
		Output:            append([]I8042Byte{}, d.out...),
	}
}

// Err returns the first error an IRQ line returned, or nil.
func (d *I8042) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// ReadPort implements PortIO. Each byte of a wider access reads the next
// port; ports other than I8042DataPort and I8042CommandPort read as 0xFF.
func (d *I8042) ReadPort(port uint16, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range data {
		switch port + uint16(i) {
		case I8042DataPort:
			data[i] = d.readData()
		case I8042CommandPort:
			data[i] = d.status()
		default:
			data[i] = 0xFF
		}
	}
}

// WritePort implements PortIO. Each byte of a wider access writes the next
// port; other ports are ignored. A reset request calls Reset after the
// device lock is released.
func (d *I8042) WritePort(port uint16, data []byte) {
	reset := false
	d.mu.Lock()
	for i, b := range data {
		switch port + uint16(i) {
		case I8042DataPort:
			d.lastCmd = false
			reset = d.writeData(b) || reset
		case I8042CommandPort:
			d.lastCmd = true
			reset = d.writeCommand(b) || reset
		}
	}
	d.mu.Unlock()
	if reset && d.reset != nil {
		d.reset()
	}
}

func (d *I8042) status() uint8 {
	v := uint8(i8042StUnlocked)
	if d.ctr&i8042CtrSys != 0 {
		v |= i8042StSys
	}
	if d.lastCmd {
		v |= i8042StCmd
	}
	if len(d.out) > 0 {
		v |= i8042StOBF
		if d.out[0].Aux {
			v |= i8042StAuxData
		}
	}
	return v // input buffer full (bit 1) never set: writes complete at once
}

func (d *I8042) readData() uint8 {
	if len(d.out) == 0 {
		return 0
	}
	b := d.out[0]
	d.out = append(d.out[:0], d.out[1:]...)
	// The output buffer empties before the next byte is loaded, so each byte
	// is a fresh rising edge.
	d.setLines(false, false)
	d.updateLines()
	return b.Value
}

// writeCommand handles a controller command; it reports a reset request.
func (d *I8042) writeCommand(c uint8) bool {
	d.pending = 0
	switch c {
	case i8042CmdReadCtr:
		d.push(d.ctr, false)
	case i8042CmdWriteCtr, i8042CmdWriteOutPort, i8042CmdWriteKbdOut, i8042CmdWriteAuxOut, i8042CmdWriteAux:
		d.pending = c
	case i8042CmdAuxDisable:
		d.ctr |= i8042CtrAuxDis
	case i8042CmdAuxEnable:
		d.ctr &^= i8042CtrAuxDis
	case i8042CmdAuxTest, i8042CmdKbdTest:
		d.push(0x00, false) // interface OK
	case i8042CmdSelfTest:
		d.ctr |= i8042CtrSys
		d.push(0x55, false)
	case i8042CmdKbdDisable:
		d.ctr |= i8042CtrKbdDis
	case i8042CmdKbdEnable:
		d.ctr &^= i8042CtrKbdDis
	case i8042CmdReadInput:
		d.push(0x00, false)
	case i8042CmdReadOutPort:
		d.push(d.outPort, false)
	case i8042CmdPulseReset:
		return true
	}
	// Other commands (including the other 0xF0–0xFF pulses) are ignored.
	d.updateLines()
	return false
}

// writeData handles a byte written to the data port; it reports a reset request.
func (d *I8042) writeData(b uint8) bool {
	cmd := d.pending
	d.pending = 0
	switch cmd {
	case i8042CmdWriteCtr:
		d.ctr = b
	case i8042CmdWriteOutPort:
		d.outPort = b
		if b&0x01 == 0 { // bit 0 drives the CPU reset line, active low
			d.updateLines()
			return true
		}
	case i8042CmdWriteKbdOut:
		d.push(b, false)
	case i8042CmdWriteAuxOut:
		d.push(b, true)
	case i8042CmdWriteAux:
		// No aux device: the byte goes nowhere.
	default:
		d.keyboard(b)
	}
	d.updateLines()
	return false
}

// keyboard plays a keyboard that acknowledges its commands.
func (d *I8042) keyboard(b uint8) {
	if p := d.kbdPending; p != 0 {
		d.kbdPending = 0
		d.push(kbdReplyAck, false)
		if p == kbdCmdScanSet && b == 0 {
			d.push(0x02, false) // the current scan code set
		}
		return
	}
	switch {
	case b == kbdCmdReset:
		d.push(kbdReplyAck, false)
		d.push(kbdReplyTestPass, false)
	case b == kbdCmdIdentify:
		d.push(kbdReplyAck, false)
		d.push(0xAB, false) // MF2 keyboard
		d.push(0x83, false)
	case b == kbdCmdEcho:
		d.push(kbdCmdEcho, false)
	case b == kbdCmdSetLEDs || b == kbdCmdScanSet || b == kbdCmdTypematic:
		d.kbdPending = b
		d.push(kbdReplyAck, false)
	case b > kbdCmdEcho: // 0xF4 enable, 0xF5 disable, 0xF6 defaults, ...
		d.push(kbdReplyAck, false)
	default:
		d.push(kbdReplyResend, false)
	}
}

// push queues a byte for the guest, dropping it if the queue is full.
func (d *I8042) push(v uint8, aux bool) {
	if len(d.out) < I8042OutputSize {
		d.out = append(d.out, I8042Byte{Value: v, Aux: aux})
	}
}

// updateLines drives both IRQ lines to the level the state implies.
func (d *I8042) updateLines() {
	kbd, aux := false, false
	if len(d.out) > 0 {
		if d.out[0].Aux {
			aux = d.ctr&i8042CtrAuxInt != 0
		} else {
			kbd = d.ctr&i8042CtrKbdInt != 0
		}
	}
	d.setLines(kbd, aux)
}

func (d *I8042) setLines(kbd, aux bool) {
	setLevel(d.kbdIRQ, &d.kbdLevel, kbd, &d.err, "i8042 keyboard irq")
	setLevel(d.auxIRQ, &d.auxLevel, aux, &d.err, "i8042 aux irq")
}

// setLevel drives irq to want if *cur differs, recording the new level only
// when Set succeeds and keeping the first error in *firstErr. A nil irq
// just records the level.
func setLevel(irq IRQ, cur *bool, want bool, firstErr *error, what string) {
	if *cur == want {
		return
	}
	if irq != nil {
		if err := irq.Set(want); err != nil {
			if *firstErr == nil {
				*firstErr = fmt.Errorf("%s: %w", what, err)
			}
			return
		}
	}
	*cur = want
}
