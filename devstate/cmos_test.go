package devstate

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

// fakeClock is a settable clock for the RTC.
type fakeClock struct{ t time.Time }

func (f *fakeClock) now() time.Time { return f.t }

func cmosRead(c *CMOS, reg uint8) uint8 {
	portOut(c, CMOSIndexPort, reg)
	return portIn(c, CMOSDataPort)
}

func cmosWrite(c *CMOS, reg, v uint8) {
	portOut(c, CMOSIndexPort, reg)
	portOut(c, CMOSDataPort, v)
}

// A Friday afternoon.
var cmosTestTime = time.Date(2026, time.November, 27, 13, 45, 59, 0, time.UTC)

func TestCMOSClockFormats(t *testing.T) {
	regs := []uint8{rtcSeconds, rtcMinutes, rtcHours, rtcWeekday, rtcMonthDay, rtcMonth, rtcYear, rtcCentury}
	for _, tc := range []struct {
		name string
		b    uint8
		at   time.Time
		want []uint8
	}{
		{"bcd 24h", 0x02, cmosTestTime, []uint8{0x59, 0x45, 0x13, 0x06, 0x27, 0x11, 0x26, 0x20}},
		{"binary 24h", 0x06, cmosTestTime, []uint8{59, 45, 13, 6, 27, 11, 26, 20}},
		{"bcd 12h pm", 0x00, cmosTestTime, []uint8{0x59, 0x45, 0x81, 0x06, 0x27, 0x11, 0x26, 0x20}},
		{"binary 12h pm", 0x04, cmosTestTime, []uint8{59, 45, 0x81, 6, 27, 11, 26, 20}},
		{"bcd 12h midnight", 0x00, time.Date(1999, 12, 31, 0, 0, 0, 0, time.UTC), []uint8{0, 0, 0x12, 0x06, 0x31, 0x12, 0x99, 0x19}},
		{"bcd 12h noon sunday", 0x00, time.Date(2000, 1, 2, 12, 30, 0, 0, time.UTC), []uint8{0, 0x30, 0x92, 0x01, 0x02, 0x01, 0x00, 0x20}},
		{"non-utc clock shown in utc", 0x02, cmosTestTime.In(time.FixedZone("x", 5*3600)), []uint8{0x59, 0x45, 0x13, 0x06, 0x27, 0x11, 0x26, 0x20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &fakeClock{tc.at}
			c := NewCMOS(CMOSDeps{Now: clk.now})
			cmosWrite(c, rtcStatusB, tc.b)
			for i, r := range regs {
				if got := cmosRead(c, r); got != tc.want[i] {
					t.Errorf("register %#02x = %#02x, want %#02x", r, got, tc.want[i])
				}
			}
		})
	}
}

func TestCMOSStatusRegisters(t *testing.T) {
	c := NewCMOS(CMOSDeps{Now: (&fakeClock{cmosTestTime}).now})
	for _, tc := range []struct {
		reg, want uint8
	}{
		{rtcStatusA, 0x26}, {rtcStatusB, 0x02}, {rtcStatusC, 0x00}, {rtcStatusD, 0x80},
	} {
		if got := cmosRead(c, tc.reg); got != tc.want {
			t.Errorf("status %#02x = %#02x, want %#02x", tc.reg, got, tc.want)
		}
	}
	cmosWrite(c, rtcStatusA, 0xA6) // UIP is read-only
	cmosWrite(c, rtcStatusC, 0xFF)
	cmosWrite(c, rtcStatusD, 0x00)
	if got := cmosRead(c, rtcStatusA); got != 0x26 {
		t.Errorf("status A after writing 0xa6 = %#02x, want 0x26", got)
	}
	if got := cmosRead(c, rtcStatusC); got != 0 {
		t.Errorf("status C after write = %#02x, want 0", got)
	}
	if got := cmosRead(c, rtcStatusD); got != 0x80 {
		t.Errorf("status D after write = %#02x, want 0x80", got)
	}
	// The NMI-mask bit of the index is ignored.
	portOut(c, CMOSIndexPort, 0x80|rtcStatusB)
	if got := portIn(c, CMOSDataPort); got != 0x02 {
		t.Errorf("status B via index 0x8b = %#02x, want 0x02", got)
	}
	if got := portIn(c, CMOSIndexPort); got != rtcStatusB {
		t.Errorf("index reads back %#02x, want %#02x", got, rtcStatusB)
	}
	cmosWrite(c, 0x40, 0xA5)
	cmosWrite(c, 0x7F, 0x5A)
	if got := cmosRead(c, 0x40); got != 0xA5 {
		t.Errorf("RAM 0x40 = %#02x, want 0xa5", got)
	}
	if got := cmosRead(c, 0x7F); got != 0x5A {
		t.Errorf("RAM 0x7f = %#02x, want 0x5a", got)
	}
	if got := portIn(c, CMOSDataPort+1); got != 0xFF {
		t.Errorf("port 0x72 = %#02x, want 0xff", got)
	}
	buf := []byte{0, 0}
	portOut(c, CMOSIndexPort, 0x40)
	c.ReadPort(CMOSIndexPort, buf)
	if buf[0] != 0x40 || buf[1] != 0xA5 {
		t.Errorf("2-byte read = %x, want 40a5", buf)
	}
}

func TestCMOSSetClock(t *testing.T) {
	clk := &fakeClock{cmosTestTime}
	c := NewCMOS(CMOSDeps{Now: clk.now})

	// Linux's mc146818_set_time: SET, write the fields, clear SET.
	cmosWrite(c, rtcStatusB, 0x82)
	clk.t = clk.t.Add(5 * time.Second)
	if got := cmosRead(c, rtcSeconds); got != 0x59 {
		t.Errorf("seconds while frozen = %#02x, want 0x59", got)
	}
	for _, w := range [][2]uint8{{rtcSeconds, 0x05}, {rtcMinutes, 0x04}, {rtcHours, 0x03}, {rtcMonthDay, 0x02},
		{rtcMonth, 0x01}, {rtcYear, 0x30}, {rtcCentury, 0x20}} {
		cmosWrite(c, w[0], w[1])
	}
	cmosWrite(c, rtcStatusB, 0x02)
	clk.t = clk.t.Add(10 * time.Second)
	want := time.Date(2030, 1, 2, 3, 4, 15, 0, time.UTC)
	if got := c.State().ClockOffset; got != want.Unix()-clk.t.Unix() {
		t.Errorf("offset = %d, want %d", got, want.Unix()-clk.t.Unix())
	}
	for _, tc := range []struct{ reg, want uint8 }{
		{rtcSeconds, 0x15}, {rtcMinutes, 0x04}, {rtcHours, 0x03}, {rtcWeekday, 0x04}, {rtcYear, 0x30},
	} {
		if got := cmosRead(c, tc.reg); got != tc.want {
			t.Errorf("register %#02x after set = %#02x, want %#02x", tc.reg, got, tc.want)
		}
	}

	// A direct write without SET moves just that field.
	cmosWrite(c, rtcMinutes, 0x30)
	if got := cmosRead(c, rtcMinutes); got != 0x30 {
		t.Errorf("minutes after direct write = %#02x, want 0x30", got)
	}
	if got := cmosRead(c, rtcSeconds); got != 0x15 {
		t.Errorf("seconds after minute write = %#02x, want 0x15", got)
	}

	// Invalid times leave the clock alone.
	before := c.State().ClockOffset
	for _, tc := range []struct {
		name string
		reg  uint8
		v    uint8
	}{
		{"bad bcd", rtcSeconds, 0x5A},
		{"february 30", rtcMonthDay, 0x30}, // with month set to 2 below
		{"hour 24", rtcHours, 0x24},
	} {
		cmosWrite(c, rtcStatusB, 0x82)
		cmosWrite(c, rtcMonth, 0x02)
		cmosWrite(c, tc.reg, tc.v)
		if tc.reg != rtcMonthDay {
			cmosWrite(c, rtcMonth, 0x13) // invalid month as well
		}
		cmosWrite(c, rtcStatusB, 0x02)
		if got := c.State().ClockOffset; got != before {
			t.Errorf("%s: offset moved from %d to %d", tc.name, before, got)
		}
	}

	// 12-hour sets, read back in 24-hour mode.
	for _, tc := range []struct {
		name       string
		b          uint8
		hour, want uint8
	}{
		{"binary 11 pm", rtcBBinary, 0x80 | 11, 23},
		{"binary 12 am", rtcBBinary, 12, 0},
		{"bcd 12 pm", 0, 0x80 | 0x12, 0x12},
		{"bcd 1 am", 0, 0x01, 0x01},
	} {
		cmosWrite(c, rtcStatusB, rtcBSet|tc.b)
		cmosWrite(c, rtcHours, tc.hour)
		cmosWrite(c, rtcStatusB, tc.b) // clear SET in the same format
		cmosWrite(c, rtcStatusB, tc.b|rtcB24Hour)
		if got := cmosRead(c, rtcHours); got != tc.want {
			t.Errorf("%s: hour in 24h mode = %#02x, want %#02x", tc.name, got, tc.want)
		}
	}
}

func TestCMOSMemorySize(t *testing.T) {
	for _, tc := range []struct {
		name string
		mem  uint64
		want map[uint8]uint8
	}{
		{"256 MiB", 256 << 20, map[uint8]uint8{
			0x15: 0x80, 0x16: 0x02, 0x17: 0xFF, 0x18: 0xFF, 0x30: 0xFF, 0x31: 0xFF,
			0x34: 0x00, 0x35: 0x0F, 0x5B: 0, 0x5C: 0, 0x5D: 0}},
		{"6 GiB", 6 << 30, map[uint8]uint8{
			0x34: 0x00, 0x35: 0xBF, 0x5B: 0x00, 0x5C: 0xC0, 0x5D: 0x00}},
		{"3 GiB exactly", 3 << 30, map[uint8]uint8{
			0x34: 0x00, 0x35: 0xBF, 0x5B: 0, 0x5C: 0, 0x5D: 0}},
		{"15 MiB", 15 << 20, map[uint8]uint8{
			0x17: 0x00, 0x18: 0x38, 0x34: 0, 0x35: 0}},
		{"2 TiB caps above 4G", 2 << 40, map[uint8]uint8{
			0x5B: 0xFF, 0x5C: 0xFF, 0x5D: 0xFF}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCMOS(CMOSDeps{MemoryBytes: tc.mem})
			for reg, want := range tc.want {
				if got := cmosRead(c, reg); got != want {
					t.Errorf("register %#02x = %#02x, want %#02x", reg, got, want)
				}
			}
		})
	}
}

func TestCMOSStateRoundTrip(t *testing.T) {
	clk := &fakeClock{cmosTestTime}
	c := NewCMOS(CMOSDeps{Now: clk.now, MemoryBytes: 6 << 30})
	cmosWrite(c, rtcYear, 0x31) // clock five years ahead
	cmosWrite(c, rtcStatusB, rtcBBinary|rtcB24Hour)
	cmosWrite(c, 0x50, 0x77)
	portOut(c, CMOSIndexPort, 0x8F)
	st := c.State()
	if st.ClockOffset == 0 || st.Index != 0x0F {
		t.Fatalf("state %+v: offset or index not driven", st)
	}
	r, err := RestoreCMOS(st, CMOSDeps{Now: clk.now, MemoryBytes: 1 << 20})
	if err != nil {
		t.Fatalf("RestoreCMOS: %v", err)
	}
	if got := r.State(); !reflect.DeepEqual(got, st) {
		t.Fatalf("restored state differs:\n got %+v\nwant %+v", got, st)
	}
	clk.t = clk.t.Add(90 * time.Second)
	for reg := range uint8(CMOSSize) {
		if a, b := cmosRead(c, reg), cmosRead(r, reg); a != b {
			t.Errorf("register %#02x: restored %#02x, original %#02x", reg, b, a)
		}
	}
	if got := cmosRead(r, rtcYear); got != 31 {
		t.Errorf("restored year = %d, want 31", got)
	}
	if got := cmosRead(r, 0x35); got != 0xBF {
		t.Errorf("restored memory byte 0x35 = %#02x, want 0xbf (from state, not deps)", got)
	}
}

func TestRestoreCMOSRejects(t *testing.T) {
	good := NewCMOS(CMOSDeps{}).State()
	for _, tc := range []struct {
		name   string
		mutate func(st *CMOSState)
	}{
		{"index past end", func(st *CMOSState) { st.Index = CMOSSize }},
		{"update in progress", func(st *CMOSState) { st.RAM[rtcStatusA] |= rtcAUIP }},
		{"status c flags", func(st *CMOSState) { st.RAM[rtcStatusC] = 0x10 }},
		{"status d invalid", func(st *CMOSState) { st.RAM[rtcStatusD] = 0 }},
		{"offset too far ahead", func(st *CMOSState) { st.ClockOffset = maxClockOffset + 1 }},
		{"offset too far behind", func(st *CMOSState) { st.ClockOffset = -maxClockOffset - 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := good
			tc.mutate(&st)
			c, err := RestoreCMOS(st, CMOSDeps{})
			if !errors.Is(err, ErrInvalidState) || c != nil {
				t.Errorf("RestoreCMOS = %v, %v; want nil, %v", c, err, ErrInvalidState)
			}
		})
	}
	if _, err := RestoreCMOS(good, CMOSDeps{}); err != nil {
		t.Errorf("RestoreCMOS(good) = %v", err)
	}
}

// FuzzRestoreCMOS restores arbitrary states and drives the result: no panic,
// and an accepted state round-trips.
func FuzzRestoreCMOS(f *testing.F) {
	f.Add(uint8(0x0B), int64(0), []byte{0x02, 0x80, 0x06})
	f.Add(uint8(0x7F), int64(-1<<39), []byte{0x82, 0x99, 0x99})
	f.Fuzz(func(t *testing.T, index uint8, offset int64, ops []byte) {
		st := NewCMOS(CMOSDeps{}).State()
		st.Index = index
		st.ClockOffset = offset
		c, err := RestoreCMOS(st, CMOSDeps{Now: (&fakeClock{cmosTestTime}).now})
		if err != nil {
			return
		}
		for i := 0; i+1 < len(ops); i += 2 {
			if ops[i]&1 == 0 {
				cmosWrite(c, ops[i]>>1, ops[i+1])
			} else {
				cmosRead(c, ops[i]>>1)
			}
		}
		got := c.State()
		if _, err := RestoreCMOS(got, CMOSDeps{}); err != nil {
			t.Fatalf("state after driving does not restore: %v", err)
		}
	})
}
