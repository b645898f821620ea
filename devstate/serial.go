package devstate

import (
	"fmt"
	"io"
	"sync"
)

// Port and interrupt assignments of the 16550A UART.
const (
	// SerialCOM1Base is the first I/O port of COM1.
	SerialCOM1Base uint16 = 0x3F8
	// SerialPorts is how many consecutive I/O ports a UART claims from its base.
	SerialPorts = 8
	// SerialCOM1IRQ is COM1's interrupt line (ISA IRQ 4, GSI 4).
	SerialCOM1IRQ = 4
	// SerialFIFOSize is the depth of the receive FIFO, in bytes.
	SerialFIFOSize = 64
)

// Register offsets from the base port. With LCR.DLAB set, offsets 0 and 1
// address the divisor latch instead of RBR/THR and IER.
const (
	serialData = 0 // RBR on read, THR on write; DLL with DLAB
	serialIER  = 1 // DLM with DLAB
	serialIIR  = 2 // FCR on write
	serialLCR  = 3
	serialMCR  = 4
	serialLSR  = 5
	serialMSR  = 6
	serialSCR  = 7
)

// Register bits, named as in Linux's include/uapi/linux/serial_reg.h.
const (
	ierRDI  = 0x01 // received data available
	ierTHRI = 0x02 // transmitter holding register empty
	ierRLSI = 0x04 // receiver line status
	ierMSI  = 0x08 // modem status
	ierMask = 0x0F

	iirMSI    = 0x00
	iirNoInt  = 0x01
	iirTHRI   = 0x02
	iirRDI    = 0x04
	iirRLSI   = 0x06
	iirFIFOOn = 0xC0 // both FIFO-enabled bits: a 16550A with working FIFOs

	fcrClearRX = 0x02

	lcrDLAB = 0x80

	mcrDTR  = 0x01
	mcrRTS  = 0x02
	mcrOUT1 = 0x04
	mcrOUT2 = 0x08
	mcrLoop = 0x10
	mcrMask = 0x1F

	lsrDR      = 0x01
	lsrOE      = 0x02
	lsrErrMask = 0x1E // OE, PE, FE, BI: latched until LSR is read
	lsrTHRE    = 0x20
	lsrTEMT    = 0x40

	msrDCTS      = 0x01
	msrDDSR      = 0x02
	msrTERI      = 0x04
	msrDDCD      = 0x08
	msrDeltaMask = 0x0F
	msrCTS       = 0x10
	msrDSR       = 0x20
	msrRI        = 0x40
	msrDCD       = 0x80
)

// Power-on values, as a PC BIOS leaves a 16550A (and as Firecracker's
// vm-superio does): 8N1, 9600 baud, OUT2 set so the interrupt line works even
// for a guest that never touches MCR.
const (
	serialDefaultLCR     = 0x03
	serialDefaultMCR     = mcrOUT2
	serialDefaultDivisor = 12
	serialHostModemLines = msrDCD | msrDSR | msrCTS // a peer is always there
)

// SerialDeps is what a Serial needs from the outside world.
type SerialDeps struct {
	// Base is the first of the SerialPorts ports the UART answers on; zero
	// selects SerialCOM1Base.
	Base uint16
	// IRQ is the UART's interrupt line (ISA IRQ 4 for COM1). Nil means no
	// line: the guest can still poll LSR. Set is called with the device lock
	// held, so it must not call back into the Serial.
	IRQ IRQ
	// Out receives every byte the guest transmits, one Write per byte. Nil
	// discards output. Write is called with the device lock held, so it must
	// not call back into the Serial; a slow Out slows the guest's port I/O on
	// this UART, as a slow line would. Errors do not stop the guest: the byte
	// is dropped and the first error is kept for Err.
	Out io.Writer
}

// SerialState is the saveable state of a Serial. It holds data only; the
// interrupt line level is not saved because it follows from the registers.
type SerialState struct {
	// Divisor is the baud-rate divisor latch (DLM<<8 | DLL).
	Divisor uint16
	// IER is the interrupt enable register; only bits 0–3 exist.
	IER uint8
	// LCR is the line control register.
	LCR uint8
	// MCR is the modem control register; only bits 0–4 exist.
	MCR uint8
	// MSR is the modem status register: the line bits (4–7) must match what
	// MCR implies, the delta bits (0–3) are pending until MSR is read.
	MSR uint8
	// SCR is the scratch register.
	SCR uint8
	// LineErrors holds the latched LSR error bits (OE, PE, FE, BI: 0x1E).
	LineErrors uint8
	// THREPending is set while a transmitter-empty interrupt has not been
	// cleared by an IIR read or a THR write.
	THREPending bool
	// RX is the receive FIFO, oldest byte first, at most SerialFIFOSize bytes.
	RX []byte
}

// Serial is a 16550A-compatible UART (8250 family) on the I/O-port bus.
//
// Guest side: it implements PortIO for the SerialPorts ports from its base.
// Transmit is instantaneous, so THR is always empty and LSR always shows
// THRE|TEMT. The receiver has a SerialFIFOSize-byte FIFO; the RX trigger level
// and the character-timeout interrupt are not modelled: "data available" is
// raised as soon as one byte is queued, which Linux's 8250 driver handles the
// same way. The interrupt line is driven as a level: high while an enabled
// interrupt is pending and MCR.OUT2 is set (OUT2 gates the IRQ on PCs), so
// an edge-triggered IOAPIC pin sees one rising edge per new interrupt.
//
// Host side: Write feeds host bytes to the receiver, blocking while the FIFO
// is full, and Close releases blocked writers. Host bytes are queued even in
// loopback mode (which a real UART would disconnect from its input pin), so
// host input is never lost to a driver's probe; an FCR write that clears the
// RX FIFO does drop them, as on hardware.
//
// Line errors: the host side cannot overrun (Write blocks instead), so OE is
// set only by a loopback transmit into a full FIFO; PE, FE and BI never are.
//
// All methods are safe for concurrent use from vCPU threads and host
// goroutines: one mutex guards the registers, and IRQ.Set and Out.Write are
// called with it held (they keep the line level and the output in order).
type Serial struct {
	base uint16
	irq  IRQ
	out  io.Writer

	// mu guards every field below.
	mu sync.Mutex
	// room is signalled (with mu) when the RX FIFO gains room or the port
	// closes; blocked host writers wait on it.
	room        *sync.Cond
	divisor     uint16               // guarded by mu
	ier         uint8                // guarded by mu
	lcr         uint8                // guarded by mu
	mcr         uint8                // guarded by mu
	msr         uint8                // guarded by mu
	scr         uint8                // guarded by mu
	lineErrors  uint8                // guarded by mu
	threPending bool                 // guarded by mu
	rx          [SerialFIFOSize]byte // guarded by mu; ring buffer
	rxHead      int                  // guarded by mu
	rxLen       int                  // guarded by mu
	level       bool                 // guarded by mu; last level IRQ.Set accepted
	closed      bool                 // guarded by mu
	err         error                // guarded by mu; first output or IRQ error
	txBuf       [1]byte              // guarded by mu; avoids an allocation per byte
}

// NewSerial returns a UART in its power-on state. It does not touch the IRQ
// line (which starts low).
func NewSerial(deps SerialDeps) *Serial {
	s := newSerial(deps)
	s.divisor = serialDefaultDivisor
	s.lcr = serialDefaultLCR
	s.mcr = serialDefaultMCR
	s.msr = modemLines(s.mcr)
	return s
}

func newSerial(deps SerialDeps) *Serial {
	base := deps.Base
	if base == 0 {
		base = SerialCOM1Base
	}
	s := &Serial{base: base, irq: deps.IRQ, out: deps.Out}
	s.room = sync.NewCond(&s.mu)
	return s
}

// RestoreSerial rebuilds a Serial from st, checking every field first; on
// error no device is built. If st has an interrupt pending (and OUT2 set),
// RestoreSerial raises the IRQ line, so the irqchip's view of the line
// matches the registers and the next change is a real edge. Either order
// against the irqchip restore works: before it, the saved irqchip state
// decides what is delivered; after it, the guest may see one extra
// interrupt, which an 8250 driver tolerates (a lost one would stall its
// transmitter). An error from IRQ.Set fails the restore.
func RestoreSerial(st SerialState, deps SerialDeps) (*Serial, error) {
	if err := st.validate(); err != nil {
		return nil, fmt.Errorf("restore serial: %w", err)
	}
	s := newSerial(deps)
	s.divisor = st.Divisor
	s.ier = st.IER
	s.lcr = st.LCR
	s.mcr = st.MCR
	s.msr = st.MSR
	s.scr = st.SCR
	s.lineErrors = st.LineErrors
	s.threPending = st.THREPending
	s.rxLen = copy(s.rx[:], st.RX)
	s.mu.Lock()
	s.updateLine()
	err := s.err
	s.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("restore serial: %w", err)
	}
	return s, nil
}

func (st *SerialState) validate() error {
	switch {
	case len(st.RX) > SerialFIFOSize:
		return fmt.Errorf("%w: rx fifo holds %d bytes, limit %d", ErrInvalidState, len(st.RX), SerialFIFOSize)
	case st.IER&^ierMask != 0:
		return fmt.Errorf("%w: ier %#02x has bits outside %#02x", ErrInvalidState, st.IER, ierMask)
	case st.MCR&^mcrMask != 0:
		return fmt.Errorf("%w: mcr %#02x has bits outside %#02x", ErrInvalidState, st.MCR, mcrMask)
	case st.LineErrors&^lsrErrMask != 0:
		return fmt.Errorf("%w: line errors %#02x have bits outside %#02x", ErrInvalidState, st.LineErrors, lsrErrMask)
	case st.MSR&^msrDeltaMask != modemLines(st.MCR):
		return fmt.Errorf("%w: msr %#02x line bits disagree with mcr %#02x (want %#02x)",
			ErrInvalidState, st.MSR, st.MCR, modemLines(st.MCR))
	}
	return nil
}

// State returns a copy of the UART's registers and RX FIFO. Bytes a blocked
// Write has not yet queued are not part of it.
func (s *Serial) State() SerialState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := SerialState{
		Divisor:     s.divisor,
		IER:         s.ier,
		LCR:         s.lcr,
		MCR:         s.mcr,
		MSR:         s.msr,
		SCR:         s.scr,
		LineErrors:  s.lineErrors,
		THREPending: s.threPending,
		RX:          make([]byte, s.rxLen),
	}
	for i := range st.RX {
		st.RX[i] = s.rx[(s.rxHead+i)%SerialFIFOSize]
	}
	return st
}

// Base returns the first I/O port the UART answers on.
func (s *Serial) Base() uint16 { return s.base }

// Err returns the first error the output writer or the IRQ line returned,
// or nil. Such errors never stop the guest.
func (s *Serial) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Write queues p for the guest to receive, blocking (without holding the
// device lock) while the RX FIFO is full until the guest drains room. It
// returns early, with an error wrapping ErrSerialClosed and the count of
// bytes queued, once the Serial is closed. Write makes Serial an io.Writer
// for host input (for example io.Copy(serial, os.Stdin)).
func (s *Serial) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for {
		if s.closed {
			return n, fmt.Errorf("serial %#x input: %w", s.base, ErrSerialClosed)
		}
		if n == len(p) {
			return n, nil
		}
		if s.rxLen == SerialFIFOSize {
			s.room.Wait()
			continue
		}
		for n < len(p) && s.rxLen < SerialFIFOSize {
			s.pushRX(p[n])
			n++
		}
		s.updateLine()
	}
}

// Close makes pending and future Writes return ErrSerialClosed. The guest's
// port I/O keeps working. Close does not close Out (the Serial does not own
// it) and may be called more than once.
func (s *Serial) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.room.Broadcast()
	return nil
}

// ReadPort implements PortIO. Each byte of a wider access reads the next
// port; ports outside the UART read as 0xFF.
func (s *Serial) ReadPort(port uint16, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range data {
		off := int(port) + i - int(s.base)
		if off < 0 || off >= SerialPorts {
			data[i] = 0xFF
			continue
		}
		data[i] = s.readReg(off)
	}
}

// WritePort implements PortIO. Each byte of a wider access writes the next
// port; writes outside the UART are ignored.
func (s *Serial) WritePort(port uint16, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, b := range data {
		off := int(port) + i - int(s.base)
		if off < 0 || off >= SerialPorts {
			continue
		}
		s.writeReg(off, b)
	}
}

func (s *Serial) readReg(off int) uint8 {
	dlab := s.lcr&lcrDLAB != 0
	switch off {
	case serialData:
		if dlab {
			return uint8(s.divisor)
		}
		return s.popRX()
	case serialIER:
		if dlab {
			return uint8(s.divisor >> 8)
		}
		return s.ier
	case serialIIR:
		id := s.interruptID()
		// Reading IIR while it reports THRE is what clears that interrupt
		// (16550A datasheet, table of interrupt reset controls).
		if id == iirTHRI {
			s.threPending = false
			s.updateLine()
		}
		return id | iirFIFOOn
	case serialLCR:
		return s.lcr
	case serialMCR:
		return s.mcr
	case serialLSR:
		v := s.lineErrors | lsrTHRE | lsrTEMT
		if s.rxLen > 0 {
			v |= lsrDR
		}
		if s.lineErrors != 0 {
			s.lineErrors = 0
			s.updateLine()
		}
		return v
	case serialMSR:
		v := s.msr
		if v&msrDeltaMask != 0 {
			s.msr &^= msrDeltaMask
			s.updateLine()
		}
		return v
	default: // serialSCR
		return s.scr
	}
}

func (s *Serial) writeReg(off int, b uint8) {
	dlab := s.lcr&lcrDLAB != 0
	switch off {
	case serialData:
		if dlab {
			s.divisor = s.divisor&0xFF00 | uint16(b)
			return
		}
		s.transmit(b)
	case serialIER:
		if dlab {
			s.divisor = s.divisor&0x00FF | uint16(b)<<8
			return
		}
		old := s.ier
		s.ier = b & ierMask
		// Enabling THRI with the transmitter empty raises THRE at once; Linux's
		// start_tx and its UART_BUG_THRE probe rely on it.
		if old&ierTHRI == 0 && s.ier&ierTHRI != 0 {
			s.threPending = true
		}
		s.updateLine()
	case serialIIR: // FCR
		if b&fcrClearRX != 0 && s.rxLen > 0 {
			s.rxHead, s.rxLen = 0, 0
			s.room.Broadcast()
			s.updateLine()
		}
	case serialLCR:
		s.lcr = b
	case serialMCR:
		s.mcr = b & mcrMask
		s.setModemLines(modemLines(s.mcr))
		s.updateLine()
	case serialLSR, serialMSR:
		// Read-only (writes are factory test modes on real parts).
	default: // serialSCR
		s.scr = b
	}
}

// transmit sends b. Writing THR clears THRE; the byte leaves at once, so THRE
// is set again right after. Dropping and re-raising the line in between gives
// an edge-triggered pin a fresh interrupt even if the driver did not read IIR.
func (s *Serial) transmit(b uint8) {
	s.threPending = false
	s.updateLine()
	if s.mcr&mcrLoop != 0 {
		// Loopback: the transmitter feeds the receiver, not the line.
		if s.rxLen < SerialFIFOSize {
			s.pushRX(b)
		} else {
			s.lineErrors |= lsrOE
		}
	} else if s.out != nil {
		s.txBuf[0] = b
		if _, err := s.out.Write(s.txBuf[:]); err != nil && s.err == nil {
			s.err = fmt.Errorf("serial %#x output: %w", s.base, err)
		}
	}
	s.threPending = true
	s.updateLine()
}

func (s *Serial) pushRX(b uint8) {
	s.rx[(s.rxHead+s.rxLen)%SerialFIFOSize] = b
	s.rxLen++
}

func (s *Serial) popRX() uint8 {
	if s.rxLen == 0 {
		return 0
	}
	b := s.rx[s.rxHead]
	s.rxHead = (s.rxHead + 1) % SerialFIFOSize
	s.rxLen--
	if s.rxLen == 0 {
		s.rxHead = 0
	}
	s.room.Broadcast()
	s.updateLine()
	return b
}

// modemLines returns the MSR line bits (4–7) for a given MCR. In loopback
// the modem outputs feed the inputs (RTS→CTS, DTR→DSR, OUT1→RI, OUT2→DCD);
// otherwise the host side is a peer that is always ready.
func modemLines(mcr uint8) uint8 {
	if mcr&mcrLoop == 0 {
		return serialHostModemLines
	}
	var v uint8
	if mcr&mcrRTS != 0 {
		v |= msrCTS
	}
	if mcr&mcrDTR != 0 {
		v |= msrDSR
	}
	if mcr&mcrOUT1 != 0 {
		v |= msrRI
	}
	if mcr&mcrOUT2 != 0 {
		v |= msrDCD
	}
	return v
}

// setModemLines moves MSR's line bits to lines and latches the delta bits.
func (s *Serial) setModemLines(lines uint8) {
	old := s.msr
	changed := (old ^ lines) & 0xF0
	delta := old & msrDeltaMask
	if changed&msrCTS != 0 {
		delta |= msrDCTS
	}
	if changed&msrDSR != 0 {
		delta |= msrDDSR
	}
	if old&msrRI != 0 && lines&msrRI == 0 { // trailing edge of RI
		delta |= msrTERI
	}
	if changed&msrDCD != 0 {
		delta |= msrDDCD
	}
	s.msr = lines | delta
}

// interruptID returns IIR bits 0–3 for the highest-priority enabled pending
// interrupt: line status > received data > THR empty > modem status.
func (s *Serial) interruptID() uint8 {
	switch {
	case s.ier&ierRLSI != 0 && s.lineErrors != 0:
		return iirRLSI
	case s.ier&ierRDI != 0 && s.rxLen > 0:
		return iirRDI
	case s.ier&ierTHRI != 0 && s.threPending:
		return iirTHRI
	case s.ier&ierMSI != 0 && s.msr&msrDeltaMask != 0:
		return iirMSI
	}
	return iirNoInt
}

// lineWanted reports the level the IRQ line should have.
func (s *Serial) lineWanted() bool {
	return s.interruptID() != iirNoInt && s.mcr&mcrOUT2 != 0
}

// updateLine drives the IRQ line to the level the registers imply, calling
// IRQ.Set only on a change. If Set fails the old level is kept, so the next
// update retries.
func (s *Serial) updateLine() {
	want := s.lineWanted()
	if want == s.level {
		return
	}
	if s.irq != nil {
		if err := s.irq.Set(want); err != nil {
			if s.err == nil {
				s.err = fmt.Errorf("serial %#x irq: %w", s.base, err)
			}
			return
		}
	}
	s.level = want
}
