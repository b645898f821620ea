package devstate

import (
	"fmt"
	"sync"
	"time"
)

// Ports and size of the CMOS RAM and real-time clock (MC146818 compatible).
const (
	// CMOSIndexPort selects a CMOS register; bit 7 is the NMI mask, which is
	// accepted and ignored.
	CMOSIndexPort uint16 = 0x70
	// CMOSDataPort reads and writes the selected register.
	CMOSDataPort uint16 = 0x71
	// CMOSPorts is how many consecutive ports the CMOS claims from CMOSIndexPort.
	CMOSPorts = 2
	// CMOSSize is the number of CMOS registers (RTC registers included).
	CMOSSize = 128
	// CMOSLowMemoryLimit is where RAM below 4 GiB stops in chsnap's memory
	// map (the 32-bit MMIO hole starts there); RAM beyond it is reported as
	// memory above 4 GiB.
	CMOSLowMemoryLimit = 3 << 30
)

// RTC register indexes (MC146818 datasheet; Linux include/linux/mc146818rtc.h).
const (
	rtcSeconds  = 0x00
	rtcMinutes  = 0x02
	rtcHours    = 0x04
	rtcWeekday  = 0x06
	rtcMonthDay = 0x07
	rtcMonth    = 0x08
	rtcYear     = 0x09
	rtcStatusA  = 0x0A
	rtcStatusB  = 0x0B
	rtcStatusC  = 0x0C
	rtcStatusD  = 0x0D
	rtcCentury  = 0x32 // the register ACPI FADT.CENTURY conventionally names

	rtcAUIP     = 0x80 // status A: update in progress
	rtcBSet     = 0x80 // status B: SET, clock frozen for writing
	rtcBBinary  = 0x04 // status B: DM, binary rather than BCD
	rtcB24Hour  = 0x02 // status B: 24-hour mode
	rtcDVRT     = 0x80 // status D: valid RAM and time
	rtcHourPM   = 0x80 // hour register bit 7 in 12-hour mode
	rtcDefaultA = 0x26 // 32.768 kHz time base, 1024 Hz periodic rate
	rtcDefaultB = rtcB24Hour

	// maxClockOffset bounds the guest clock's distance from the host's,
	// in seconds (about 34,000 years), so time arithmetic cannot overflow.
	maxClockOffset = 1 << 40
)

// Memory-size registers, as PC BIOSes and QEMU fill them.
const (
	cmosBaseMemLow  = 0x15 // base memory in KiB (640)
	cmosExtMemLow   = 0x17 // memory from 1 MiB in KiB, capped at 0xFFFF
	cmosExtMem2Low  = 0x30 // same again (POST copy)
	cmosMem16MLow   = 0x34 // memory from 16 MiB to the hole in 64 KiB units
	cmosMemAbove4G0 = 0x5B // memory above 4 GiB in 64 KiB units, 3 bytes
)

// rtcTimeRegs are the registers that show the clock.
var rtcTimeRegs = [...]uint8{rtcSeconds, rtcMinutes, rtcHours, rtcWeekday, rtcMonthDay, rtcMonth, rtcYear, rtcCentury}

// CMOSDeps is what a CMOS needs from the outside world.
type CMOSDeps struct {
	// Now returns the host's wall-clock time; nil means time.Now. The RTC
	// shows Now plus the offset the guest set, in UTC.
	Now func() time.Time
	// MemoryBytes is the guest RAM size reported in the memory-size
	// registers. Only NewCMOS uses it: after a restore the registers come
	// from the saved RAM.
	MemoryBytes uint64
}

// CMOSState is the saveable state of a CMOS.
type CMOSState struct {
	// Index is the selected register, 0–127 (the NMI mask bit is not kept).
	Index uint8
	// RAM holds all registers. The clock registers are meaningful only while
	// status B's SET bit freezes the clock; status A's UIP bit must be clear,
	// C must be 0 and D must be 0x80.
	RAM [CMOSSize]byte
	// ClockOffset is how many seconds the guest's clock is ahead of the host's.
	ClockOffset int64
}

// CMOS is the PC CMOS RAM with an MC146818-style real-time clock.
//
// The clock registers read the host clock (through deps) plus an offset.
// The guest may set the clock the usual way (SET in status B, write the
// registers, clear SET) or by writing a register directly; either moves the
// offset, never the host clock. Status B selects BCD or binary and 12- or
// 24-hour format. The update-in-progress bit always reads clear, since the
// registers are computed at read time and never tear. Alarms, periodic and
// update interrupts are not generated (IRQ 8 is not wired): status C always
// reads 0. Memory-size registers report deps.MemoryBytes as a BIOS would.
//
// All methods are safe for concurrent use.
type CMOS struct {
	now func() time.Time

	// mu guards every field below.
	mu     sync.Mutex
	index  uint8           // guarded by mu
	ram    [CMOSSize]uint8 // guarded by mu
	offset int64           // guarded by mu; seconds
}

// NewCMOS returns a CMOS with the RTC in 24-hour BCD mode showing the host
// clock, and the memory-size registers filled in from deps.MemoryBytes.
func NewCMOS(deps CMOSDeps) *CMOS {
	c := newCMOS(deps)
	c.ram[rtcStatusA] = rtcDefaultA
	c.ram[rtcStatusB] = rtcDefaultB
	c.ram[rtcStatusD] = rtcDVRT
	fillMemorySize(&c.ram, deps.MemoryBytes)
	return c
}

func newCMOS(deps CMOSDeps) *CMOS {
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	return &CMOS{now: now}
}

// fillMemorySize writes the BIOS memory-size registers for mem bytes of RAM
// laid out with a hole at CMOSLowMemoryLimit.
func fillMemorySize(ram *[CMOSSize]uint8, mem uint64) {
	put16 := func(i int, v uint64) {
		v = min(v, 0xFFFF)
		ram[i], ram[i+1] = uint8(v), uint8(v>>8)
	}
	low := min(mem, CMOSLowMemoryLimit)
	put16(cmosBaseMemLow, 640)
	if low > 1<<20 {
		put16(cmosExtMemLow, (low-1<<20)>>10)
		put16(cmosExtMem2Low, (low-1<<20)>>10)
	}
	if low > 16<<20 {
		put16(cmosMem16MLow, (low-16<<20)>>16)
	}
	if mem > CMOSLowMemoryLimit {
		high := min((mem-CMOSLowMemoryLimit)>>16, 0xFFFFFF)
		ram[cmosMemAbove4G0] = uint8(high)
		ram[cmosMemAbove4G0+1] = uint8(high >> 8)
		ram[cmosMemAbove4G0+2] = uint8(high >> 16)
	}
}

// RestoreCMOS rebuilds a CMOS from st, checking every field first; on error
// no device is built. deps.MemoryBytes is not used.
func RestoreCMOS(st CMOSState, deps CMOSDeps) (*CMOS, error) {
	switch {
	case st.Index >= CMOSSize:
		return nil, fmt.Errorf("restore cmos: %w: index %#02x, limit %#02x", ErrInvalidState, st.Index, CMOSSize-1)
	case st.RAM[rtcStatusA]&rtcAUIP != 0:
		return nil, fmt.Errorf("restore cmos: %w: status a %#02x has update-in-progress set", ErrInvalidState, st.RAM[rtcStatusA])
	case st.RAM[rtcStatusC] != 0:
		return nil, fmt.Errorf("restore cmos: %w: status c %#02x, want 0", ErrInvalidState, st.RAM[rtcStatusC])
	case st.RAM[rtcStatusD] != rtcDVRT:
		return nil, fmt.Errorf("restore cmos: %w: status d %#02x, want %#02x", ErrInvalidState, st.RAM[rtcStatusD], rtcDVRT)
	case st.ClockOffset > maxClockOffset || st.ClockOffset < -maxClockOffset:
		return nil, fmt.Errorf("restore cmos: %w: clock offset %d s, limit ±%d s", ErrInvalidState, st.ClockOffset, int64(maxClockOffset))
	}
	c := newCMOS(deps)
	c.index = st.Index
	c.ram = st.RAM
	c.offset = st.ClockOffset
	return c, nil
}

// State returns a copy of the CMOS registers and clock offset.
func (c *CMOS) State() CMOSState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CMOSState{Index: c.index, RAM: c.ram, ClockOffset: c.offset}
}

// ReadPort implements PortIO. Each byte of a wider access reads the next
// port. The index port reads back the selected index; other ports read 0xFF.
func (c *CMOS) ReadPort(port uint16, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range data {
		switch port + uint16(i) {
		case CMOSIndexPort:
			data[i] = c.index
		case CMOSDataPort:
			data[i] = c.read(c.index)
		default:
			data[i] = 0xFF
		}
	}
}

// WritePort implements PortIO. Each byte of a wider access writes the next
// port; other ports are ignored.
func (c *CMOS) WritePort(port uint16, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, v := range data {
		switch port + uint16(i) {
		case CMOSIndexPort:
			c.index = v & (CMOSSize - 1) // bit 7 masks NMIs: ignored
		case CMOSDataPort:
			c.write(c.index, v)
		}
	}
}

func (c *CMOS) frozen() bool { return c.ram[rtcStatusB]&rtcBSet != 0 }

func (c *CMOS) guestNow() time.Time {
	return time.Unix(c.now().Unix()+c.offset, 0).UTC()
}

func isTimeReg(r uint8) bool {
	for _, t := range rtcTimeRegs {
		if r == t {
			return true
		}
	}
	return false
}

func (c *CMOS) read(r uint8) uint8 {
	switch {
	case isTimeReg(r) && !c.frozen():
		var regs [CMOSSize]uint8
		renderTime(&regs, c.guestNow(), c.ram[rtcStatusB])
		return regs[r]
	case r == rtcStatusA:
		return c.ram[r] &^ rtcAUIP
	case r == rtcStatusC:
		return 0 // no interrupt flags are ever raised
	case r == rtcStatusD:
		return rtcDVRT
	}
	return c.ram[r]
}

func (c *CMOS) write(r, v uint8) {
	switch {
	case isTimeReg(r):
		if c.frozen() {
			c.ram[r] = v // takes effect when SET is cleared
			return
		}
		renderTime(&c.ram, c.guestNow(), c.ram[rtcStatusB])
		c.ram[r] = v
		c.setOffsetFromRAM()
	case r == rtcStatusA:
		c.ram[r] = v &^ rtcAUIP
	case r == rtcStatusB:
		wasFrozen := c.frozen()
		if !wasFrozen && v&rtcBSet != 0 {
			// Freeze: the clock registers keep the time SET was written at.
			renderTime(&c.ram, c.guestNow(), v)
		}
		c.ram[r] = v
		if wasFrozen && v&rtcBSet == 0 {
			c.setOffsetFromRAM()
		}
	case r == rtcStatusC || r == rtcStatusD:
		// Read-only.
	default:
		c.ram[r] = v
	}
}

// setOffsetFromRAM makes the clock continue from the time in the clock
// registers. An invalid time (bad BCD, out-of-range field, a date such as
// February 30) leaves the clock unchanged, as if the update were skipped.
func (c *CMOS) setOffsetFromRAM() {
	t, ok := parseTime(&c.ram, c.ram[rtcStatusB])
	if !ok {
		return
	}
	off := t.Unix() - c.now().Unix()
	if off > maxClockOffset || off < -maxClockOffset {
		return
	}
	c.offset = off
}

// renderTime writes t into the clock registers of regs in the format status
// register b selects.
func renderTime(regs *[CMOSSize]uint8, t time.Time, b uint8) {
	enc := func(v int) uint8 {
		if b&rtcBBinary != 0 {
			return uint8(v)
		}
		v %= 100
		return uint8(v/10<<4 | v%10)
	}
	regs[rtcSeconds] = enc(t.Second())
	regs[rtcMinutes] = enc(t.Minute())
	if b&rtcB24Hour != 0 {
		regs[rtcHours] = enc(t.Hour())
	} else {
		h := t.Hour() % 12
		if h == 0 {
			h = 12
		}
		regs[rtcHours] = enc(h)
		if t.Hour() >= 12 {
			regs[rtcHours] |= rtcHourPM
		}
	}
	regs[rtcWeekday] = enc(int(t.Weekday()) + 1) // Sunday is 1
	regs[rtcMonthDay] = enc(t.Day())
	regs[rtcMonth] = enc(int(t.Month()))
	regs[rtcYear] = enc(t.Year() % 100)
	regs[rtcCentury] = enc(t.Year() / 100 % 100)
}

// parseTime reads the clock registers of regs in the format status register
// b selects. The weekday register is not checked: the date determines it.
func parseTime(regs *[CMOSSize]uint8, b uint8) (time.Time, bool) {
	ok := true
	dec := func(v uint8, lo, hi int) int {
		n := int(v)
		if b&rtcBBinary == 0 {
			if v>>4 > 9 || v&0x0F > 9 {
				ok = false
			}
			n = int(v>>4)*10 + int(v&0x0F)
		}
		if n < lo || n > hi {
			ok = false
		}
		return n
	}
	sec := dec(regs[rtcSeconds], 0, 59)
	minute := dec(regs[rtcMinutes], 0, 59)
	var hour int
	if b&rtcB24Hour != 0 {
		hour = dec(regs[rtcHours], 0, 23)
	} else {
		hour = dec(regs[rtcHours]&^rtcHourPM, 1, 12) % 12
		if regs[rtcHours]&rtcHourPM != 0 {
			hour += 12
		}
	}
	day := dec(regs[rtcMonthDay], 1, 31)
	month := dec(regs[rtcMonth], 1, 12)
	year := dec(regs[rtcCentury], 0, 99)*100 + dec(regs[rtcYear], 0, 99)
	if !ok {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, 0, time.UTC)
	if t.Day() != day { // normalised: no such day in that month
		return time.Time{}, false
	}
	return t, true
}
