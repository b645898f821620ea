package devstate

import (
	"errors"
	"reflect"
	"slices"
	"testing"
)

// i8042Command plays Linux's __i8042_command: wait for the input buffer,
// write the command, write its data bytes, then read nRead result bytes,
// each after waiting for the output buffer. It fails the test where Linux
// would time out.
func i8042Command(t *testing.T, d *I8042, cmd uint8, data []uint8, nRead int) []uint8 {
	t.Helper()
	waitIBF := func() {
		for range 100 {
			if portIn(d, I8042CommandPort)&0x02 == 0 {
				return
			}
		}
		t.Fatalf("command %#02x: input buffer stays full", cmd)
	}
	waitIBF()
	portOut(d, I8042CommandPort, cmd)
	for _, b := range data {
		waitIBF()
		portOut(d, I8042DataPort, b)
	}
	var got []uint8
	for range nRead {
		if portIn(d, I8042CommandPort)&i8042StOBF == 0 {
			t.Fatalf("command %#02x: no result byte %d (would time out)", cmd, len(got))
		}
		got = append(got, portIn(d, I8042DataPort))
	}
	return got
}

func TestI8042LinuxProbe(t *testing.T) {
	d := NewI8042(I8042Deps{})
	// i8042_flush: nothing queued.
	if st := portIn(d, I8042CommandPort); st&i8042StOBF != 0 {
		t.Fatalf("status %#02x: output buffer full at power-on", st)
	}
	ctr := i8042Command(t, d, i8042CmdReadCtr, nil, 1)[0]
	if ctr != i8042DefaultCtr {
		t.Errorf("command byte = %#02x, want %#02x", ctr, i8042DefaultCtr)
	}
	if got := i8042Command(t, d, i8042CmdSelfTest, nil, 1); got[0] != 0x55 {
		t.Errorf("self-test = %#02x, want 0x55", got[0])
	}
	i8042Command(t, d, i8042CmdWriteCtr, []uint8{(ctr | i8042CtrKbdDis) &^ i8042CtrKbdInt}, 0)
	if got := i8042Command(t, d, i8042CmdReadCtr, nil, 1); got[0] != (ctr|i8042CtrKbdDis)&^i8042CtrKbdInt {
		t.Errorf("command byte after write = %#02x, want %#02x", got[0], (ctr|i8042CtrKbdDis)&^i8042CtrKbdInt)
	}
	// i8042_check_aux: AUX_LOOP must come back with the aux status bit.
	portOut(d, I8042CommandPort, i8042CmdWriteAuxOut)
	portOut(d, I8042DataPort, 0x5A)
	if st := portIn(d, I8042CommandPort); st&(i8042StOBF|i8042StAuxData) != i8042StOBF|i8042StAuxData {
		t.Errorf("status after aux loop = %#02x, want OBF and AUXDATA", st)
	}
	if got := portIn(d, I8042DataPort); got != 0x5A {
		t.Errorf("aux loop = %#02x, want 0x5a", got)
	}
	if got := i8042Command(t, d, i8042CmdAuxTest, nil, 1); got[0] != 0x00 {
		t.Errorf("aux test = %#02x, want 0", got[0])
	}
	i8042Command(t, d, i8042CmdAuxDisable, nil, 0)
	if got := i8042Command(t, d, i8042CmdReadCtr, nil, 1); got[0]&i8042CtrAuxDis == 0 {
		t.Errorf("command byte after aux disable = %#02x, AUXDIS clear", got[0])
	}
	i8042Command(t, d, i8042CmdAuxEnable, nil, 0)
	if got := i8042Command(t, d, i8042CmdReadCtr, nil, 1); got[0]&i8042CtrAuxDis != 0 {
		t.Errorf("command byte after aux enable = %#02x, AUXDIS set", got[0])
	}
	if got := i8042Command(t, d, i8042CmdKbdTest, nil, 1); got[0] != 0x00 {
		t.Errorf("keyboard test = %#02x, want 0", got[0])
	}
	i8042Command(t, d, i8042CmdKbdEnable, nil, 0)
	if got := i8042Command(t, d, i8042CmdReadCtr, nil, 1); got[0]&i8042CtrKbdDis != 0 {
		t.Errorf("command byte after kbd enable = %#02x, KBDDIS set", got[0])
	}
	i8042Command(t, d, i8042CmdKbdDisable, nil, 0)
	if got := i8042Command(t, d, i8042CmdReadCtr, nil, 1); got[0]&i8042CtrKbdDis == 0 {
		t.Errorf("command byte after kbd disable = %#02x, KBDDIS clear", got[0])
	}
	if got := i8042Command(t, d, i8042CmdWriteKbdOut, []uint8{0x1C}, 1); got[0] != 0x1C {
		t.Errorf("kbd output write = %#02x, want 0x1c", got[0])
	}
	i8042Command(t, d, i8042CmdWriteAux, []uint8{0xF4}, 0) // no mouse: swallowed
	if st := portIn(d, I8042CommandPort); st&i8042StOBF != 0 {
		t.Errorf("status %#02x: a reply from the absent aux device", st)
	}
}

func TestI8042Keyboard(t *testing.T) {
	for _, tc := range []struct {
		name  string
		bytes []uint8
		want  []uint8
	}{
		{"reset", []uint8{0xFF}, []uint8{0xFA, 0xAA}},
		{"identify", []uint8{0xF2}, []uint8{0xFA, 0xAB, 0x83}},
		{"leds", []uint8{0xED, 0x07}, []uint8{0xFA, 0xFA}},
		{"typematic", []uint8{0xF3, 0x20}, []uint8{0xFA, 0xFA}},
		{"get scan set", []uint8{0xF0, 0x00}, []uint8{0xFA, 0xFA, 0x02}},
		{"enable", []uint8{0xF4}, []uint8{0xFA}},
		{"echo", []uint8{0xEE}, []uint8{0xEE}},
		{"unknown", []uint8{0x01}, []uint8{0xFE}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := NewI8042(I8042Deps{})
			for _, b := range tc.bytes {
				portOut(d, I8042DataPort, b)
			}
			var got []uint8
			for portIn(d, I8042CommandPort)&i8042StOBF != 0 && len(got) < 10 {
				if portIn(d, I8042CommandPort)&i8042StAuxData != 0 {
					t.Errorf("keyboard reply marked as aux")
				}
				got = append(got, portIn(d, I8042DataPort))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("replies = %x, want %x", got, tc.want)
			}
		})
	}
}

func TestI8042Reset(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes [][2]uint16 // port, value
		resets int
	}{
		{"pulse reset", [][2]uint16{{I8042CommandPort, 0xFE}}, 1},
		{"linux reboot=k loop", slices.Repeat([][2]uint16{{I8042CommandPort, 0xFE}}, 10), 10},
		{"output port reset bit low", [][2]uint16{{I8042CommandPort, 0xD1}, {I8042DataPort, 0x02}}, 1},
		{"output port reset bit high", [][2]uint16{{I8042CommandPort, 0xD1}, {I8042DataPort, 0x03}}, 0},
		{"other pulse", [][2]uint16{{I8042CommandPort, 0xFF}}, 0},
		{"0xfe on data port", [][2]uint16{{I8042DataPort, 0xFE}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resets := 0
			var d *I8042
			d = NewI8042(I8042Deps{Reset: func() {
				resets++
				d.State() // would deadlock if Reset ran under the device lock
			}})
			for _, w := range tc.writes {
				if st := portIn(d, I8042CommandPort); st&0x02 != 0 {
					t.Fatalf("kb_wait: status %#02x has input buffer full", st)
				}
				portOut(d, w[0], uint8(w[1]))
			}
			if resets != tc.resets {
				t.Errorf("Reset called %d times, want %d", resets, tc.resets)
			}
		})
	}
	// A nil Reset is ignored.
	portOut(NewI8042(I8042Deps{}), I8042CommandPort, 0xFE)
}

func TestI8042IRQ(t *testing.T) {
	kbd, aux := &fakeIRQ{}, &fakeIRQ{}
	d := NewI8042(I8042Deps{KbdIRQ: kbd, AuxIRQ: aux})
	portOut(d, I8042DataPort, kbdCmdReset) // two reply bytes
	if got := kbd.seq(); !slices.Equal(got, []bool{true}) {
		t.Errorf("kbd levels after reset command = %v, want [true]", got)
	}
	portIn(d, I8042DataPort)
	if got := kbd.seq(); !slices.Equal(got, []bool{false, true}) {
		t.Errorf("kbd levels after first read = %v, want [false true]", got)
	}
	portIn(d, I8042DataPort)
	if got := kbd.seq(); !slices.Equal(got, []bool{false}) {
		t.Errorf("kbd levels after second read = %v, want [false]", got)
	}
	// Aux bytes raise IRQ 12 only when the command byte enables it.
	portOut(d, I8042CommandPort, i8042CmdWriteAuxOut)
	portOut(d, I8042DataPort, 0xA5)
	portIn(d, I8042DataPort)
	if got := aux.seq(); len(got) != 0 {
		t.Errorf("aux levels with aux interrupt disabled = %v, want none", got)
	}
	portOut(d, I8042CommandPort, i8042CmdWriteCtr)
	portOut(d, I8042DataPort, i8042DefaultCtr|i8042CtrAuxInt)
	portOut(d, I8042CommandPort, i8042CmdWriteAuxOut)
	portOut(d, I8042DataPort, 0xA5)
	if got := aux.seq(); !slices.Equal(got, []bool{true}) {
		t.Errorf("aux levels after aux loop = %v, want [true]", got)
	}
	if got := kbd.seq(); len(got) != 0 {
		t.Errorf("kbd levels for an aux byte = %v, want none", got)
	}
	portIn(d, I8042DataPort)
	if got := aux.seq(); !slices.Equal(got, []bool{false}) {
		t.Errorf("aux levels after read = %v, want [false]", got)
	}
	kbd.fail = errFake
	portOut(d, I8042DataPort, kbdCmdEcho)
	if err := d.Err(); !errors.Is(err, errFake) {
		t.Errorf("Err() = %v, want %v", err, errFake)
	}
}

func TestI8042OutputOverflowAndPorts(t *testing.T) {
	d := NewI8042(I8042Deps{})
	for range I8042OutputSize + 5 {
		portOut(d, I8042CommandPort, i8042CmdReadCtr)
	}
	if got := len(d.State().Output); got != I8042OutputSize {
		t.Errorf("output queue = %d bytes, want %d", got, I8042OutputSize)
	}
	if got := portIn(d, 0x61); got != 0xFF {
		t.Errorf("port 0x61 = %#02x, want 0xff", got)
	}
	buf := []byte{0, 0}
	d.ReadPort(I8042CommandPort-1, buf)
	if buf[0] != 0xFF || buf[1]&i8042StOBF == 0 {
		t.Errorf("2-byte read at 0x63 = %x, want ff then status with OBF", buf)
	}
	if st := portIn(d, I8042CommandPort); st&i8042StCmd == 0 {
		t.Errorf("status %#02x: command flag clear after a command write", st)
	}
	portOut(d, I8042DataPort, kbdCmdEcho)
	if st := portIn(d, I8042CommandPort); st&i8042StCmd != 0 {
		t.Errorf("status %#02x: command flag set after a data write", st)
	}
}

func TestI8042StateRoundTrip(t *testing.T) {
	d := NewI8042(I8042Deps{})
	portOut(d, I8042CommandPort, i8042CmdWriteCtr)
	portOut(d, I8042DataPort, 0x47)
	portOut(d, I8042CommandPort, i8042CmdWriteAuxOut)
	portOut(d, I8042DataPort, 0x33)
	portOut(d, I8042DataPort, kbdCmdSetLEDs) // leaves the keyboard waiting
	portOut(d, I8042CommandPort, i8042CmdWriteKbdOut)
	st := d.State()
	aux := &fakeIRQ{}
	r, err := RestoreI8042(st, I8042Deps{AuxIRQ: aux})
	if err != nil {
		t.Fatalf("RestoreI8042: %v", err)
	}
	if got := r.State(); !reflect.DeepEqual(got, st) {
		t.Fatalf("restored state = %+v, want %+v", got, st)
	}
	if got := aux.seq(); !slices.Equal(got, []bool{true}) {
		t.Errorf("restore drove aux levels %v, want [true]", got)
	}
	for _, dev := range []*I8042{d, r} {
		portOut(dev, I8042DataPort, 0x77) // data for the pending 0xD2
		portOut(dev, I8042DataPort, 0x01) // parameter for the pending 0xED
	}
	for range 5 {
		if a, b := portIn(d, I8042DataPort), portIn(r, I8042DataPort); a != b {
			t.Errorf("restored read %#02x, original %#02x", b, a)
		}
	}
}

func TestRestoreI8042Rejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   I8042State
	}{
		{"pending command without data", I8042State{PendingCommand: 0x20}},
		{"pending keyboard command without parameter", I8042State{KbdPendingCommand: 0xFF}},
		{"output too long", I8042State{Output: make([]I8042Byte, I8042OutputSize+1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := RestoreI8042(tc.st, I8042Deps{})
			if !errors.Is(err, ErrInvalidState) || d != nil {
				t.Errorf("RestoreI8042 = %v, %v; want nil, %v", d, err, ErrInvalidState)
			}
		})
	}
}

// FuzzRestoreI8042 restores arbitrary states and drives the result with
// arbitrary port writes: no panic, and every state reached restores.
func FuzzRestoreI8042(f *testing.F) {
	f.Add(uint8(0x47), uint8(0x03), uint8(0xD3), uint8(0), []byte{0x60, 0x60, 0x64, 0xFE})
	f.Add(uint8(0x00), uint8(0x00), uint8(0x20), uint8(0xED), []byte{0x60, 0xFF})
	f.Fuzz(func(t *testing.T, ctr, outPort, pending, kbdPending uint8, ops []byte) {
		st := I8042State{CommandByte: ctr, OutputPort: outPort, PendingCommand: pending, KbdPendingCommand: kbdPending}
		for _, b := range ops {
			st.Output = append(st.Output, I8042Byte{Value: b, Aux: b&1 != 0})
		}
		d, err := RestoreI8042(st, I8042Deps{KbdIRQ: &fakeIRQ{}, AuxIRQ: &fakeIRQ{}})
		if err != nil {
			if d != nil || !errors.Is(err, ErrInvalidState) {
				t.Fatalf("RestoreI8042 = %v, %v; want nil device and ErrInvalidState", d, err)
			}
			return
		}
		for i := 0; i+1 < len(ops); i += 2 {
			if ops[i]&1 == 0 {
				portOut(d, I8042DataPort, ops[i+1])
			} else {
				portOut(d, I8042CommandPort, ops[i+1])
			}
			portIn(d, I8042DataPort&^uint16(ops[i]&4)|uint16(ops[i]&4)) // 0x60 or 0x64
		}
		if got := d.State(); len(got.Output) > I8042OutputSize {
			t.Fatalf("output queue %d bytes, limit %d", len(got.Output), I8042OutputSize)
		} else if _, err := RestoreI8042(got, I8042Deps{}); err != nil {
			t.Fatalf("state reached by driving does not restore: %v", err)
		}
	})
}
