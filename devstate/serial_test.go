package devstate

import (
	"errors"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
)

const com1 = SerialCOM1Base

func newTestSerial() (*Serial, *fakeIRQ, *fakeOut) {
	irq := &fakeIRQ{}
	out := &fakeOut{}
	return NewSerial(SerialDeps{IRQ: irq, Out: out}), irq, out
}

func TestSerialPowerOnRegisters(t *testing.T) {
	s, irq, _ := newTestSerial()
	for _, tc := range []struct {
		name string
		off  uint16
		want uint8
	}{
		{"IER", serialIER, 0x00},
		{"IIR", serialIIR, iirFIFOOn | iirNoInt},
		{"LCR", serialLCR, 0x03},
		{"MCR", serialMCR, mcrOUT2},
		{"LSR", serialLSR, lsrTHRE | lsrTEMT},
		{"MSR", serialMSR, msrDCD | msrDSR | msrCTS},
		{"SCR", serialSCR, 0x00},
	} {
		if got := portIn(s, com1+tc.off); got != tc.want {
			t.Errorf("%s = %#02x, want %#02x", tc.name, got, tc.want)
		}
	}
	if got := irq.seq(); len(got) != 0 {
		t.Errorf("irq levels after power-on reads = %v, want none", got)
	}
}

func TestSerialDivisorLatch(t *testing.T) {
	s, _, out := newTestSerial()
	portOut(s, com1+serialLCR, lcrDLAB|0x03)
	portOut(s, com1+serialData, 0x01) // DLL
	portOut(s, com1+serialIER, 0x02)  // DLM
	if got := portIn(s, com1+serialData); got != 0x01 {
		t.Errorf("DLL = %#02x, want 0x01", got)
	}
	if got := portIn(s, com1+serialIER); got != 0x02 {
		t.Errorf("DLM = %#02x, want 0x02", got)
	}
	if got := s.State().Divisor; got != 0x0201 {
		t.Errorf("divisor = %#04x, want 0x0201", got)
	}
	if out.String() != "" {
		t.Errorf("DLL write reached output: %q", out.String())
	}
	if got := s.State().IER; got != 0 {
		t.Errorf("IER after DLM write = %#02x, want 0", got)
	}
	portOut(s, com1+serialLCR, 0x03)
	if got := portIn(s, com1+serialIER); got != 0 {
		t.Errorf("IER with DLAB clear = %#02x, want 0", got)
	}
	portOut(s, com1+serialData, 'x')
	if out.String() != "x" {
		t.Errorf("output = %q, want %q", out.String(), "x")
	}
}

func TestSerialIIRPriorities(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ier   uint8
		setup func(s *Serial)
		want  uint8
	}{
		{"nothing pending", ierRDI | ierRLSI | ierMSI, func(s *Serial) {}, iirNoInt},
		{"thre only", ierMask, func(s *Serial) {}, iirTHRI}, // IER enable raises THRE
		{"rda beats thre", ierMask, func(s *Serial) { s.Write([]byte("a")) }, iirRDI},
		{"rls beats rda", ierMask, func(s *Serial) {
			s.Write([]byte("a"))
			s.mu.Lock()
			s.lineErrors = lsrOE
			s.mu.Unlock()
		}, iirRLSI},
		{"msr lowest", ierMSI, func(s *Serial) { portOut(s, com1+serialMCR, mcrLoop|mcrOUT2) }, iirMSI},
		{"thre beats msr", ierMSI | ierTHRI, func(s *Serial) { portOut(s, com1+serialMCR, mcrLoop|mcrOUT2) }, iirTHRI},
		{"rda masked", ierTHRI, func(s *Serial) { s.Write([]byte("a")) }, iirTHRI},
		{"rda alone", ierRDI, func(s *Serial) { s.Write([]byte("a")) }, iirRDI},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, irq, _ := newTestSerial()
			portOut(s, com1+serialIER, tc.ier)
			tc.setup(s)
			if wantLine := tc.want != iirNoInt; irq.level() != wantLine {
				t.Errorf("line = %v, want %v", irq.level(), wantLine)
			}
			if got := portIn(s, com1+serialIIR); got != iirFIFOOn|tc.want {
				t.Errorf("IIR = %#02x, want %#02x", got, iirFIFOOn|tc.want)
			}
		})
	}
}

func TestSerialTHRE(t *testing.T) {
	s, irq, out := newTestSerial()

	// Enabling THRI with the transmitter empty raises THRE at once.
	portOut(s, com1+serialIER, ierTHRI)
	if got := irq.seq(); !slices.Equal(got, []bool{true}) {
		t.Fatalf("levels after IER=THRI = %v, want [true]", got)
	}
	// Reading IIR reports THRE once and clears it.
	if got := portIn(s, com1+serialIIR); got != iirFIFOOn|iirTHRI {
		t.Errorf("first IIR = %#02x, want %#02x", got, iirFIFOOn|iirTHRI)
	}
	if got := portIn(s, com1+serialIIR); got != iirFIFOOn|iirNoInt {
		t.Errorf("second IIR = %#02x, want %#02x", got, iirFIFOOn|iirNoInt)
	}
	if got := irq.seq(); !slices.Equal(got, []bool{false}) {
		t.Fatalf("levels after IIR read = %v, want [false]", got)
	}
	// A THR write emits the byte and raises THRE again.
	portOut(s, com1+serialData, 'h')
	if got := irq.seq(); !slices.Equal(got, []bool{true}) {
		t.Errorf("levels after THR write = %v, want [true]", got)
	}
	// A second write without an IIR read still gives a fresh rising edge.
	portOut(s, com1+serialData, 'i')
	if got := irq.seq(); !slices.Equal(got, []bool{false, true}) {
		t.Errorf("levels after second THR write = %v, want [false true]", got)
	}
	if out.String() != "hi" {
		t.Errorf("output = %q, want %q", out.String(), "hi")
	}
	// Linux's UART_BUG_THRE probe: IER off and on again re-asserts THRE.
	portIn(s, com1+serialIIR)
	portOut(s, com1+serialIER, 0)
	portOut(s, com1+serialIER, ierTHRI)
	if got := portIn(s, com1+serialIIR); got != iirFIFOOn|iirTHRI {
		t.Errorf("IIR after IER re-enable = %#02x, want %#02x", got, iirFIFOOn|iirTHRI)
	}
	// With THRI disabled, transmitting never touches the line.
	portOut(s, com1+serialIER, 0)
	irq.seq()
	portOut(s, com1+serialData, '!')
	if got := irq.seq(); len(got) != 0 {
		t.Errorf("levels for polled transmit = %v, want none", got)
	}
}

func TestSerialReceive(t *testing.T) {
	s, irq, _ := newTestSerial()
	portOut(s, com1+serialIER, ierRDI)
	if got := portIn(s, com1+serialLSR); got&lsrDR != 0 {
		t.Errorf("LSR with empty fifo = %#02x, DR set", got)
	}
	if n, err := s.Write([]byte("abc")); n != 3 || err != nil {
		t.Fatalf("Write = %d, %v; want 3, nil", n, err)
	}
	if got := irq.seq(); !slices.Equal(got, []bool{true}) {
		t.Errorf("levels after host write = %v, want [true]", got)
	}
	if got := portIn(s, com1+serialIIR); got != iirFIFOOn|iirRDI {
		t.Errorf("IIR = %#02x, want %#02x", got, iirFIFOOn|iirRDI)
	}
	var got []byte
	for portIn(s, com1+serialLSR)&lsrDR != 0 {
		got = append(got, portIn(s, com1+serialData))
		if len(got) > 3 {
			break
		}
	}
	if string(got) != "abc" {
		t.Errorf("received %q, want %q", got, "abc")
	}
	if lv := irq.seq(); !slices.Equal(lv, []bool{false}) {
		t.Errorf("levels after drain = %v, want [false]", lv)
	}
	if got := portIn(s, com1+serialIIR); got != iirFIFOOn|iirNoInt {
		t.Errorf("IIR after drain = %#02x, want %#02x", got, iirFIFOOn|iirNoInt)
	}
}

func TestSerialFIFOFillAndClear(t *testing.T) {
	s, _, _ := newTestSerial()
	data := make([]byte, SerialFIFOSize)
	for i := range data {
		data[i] = byte(i)
	}
	if n, err := s.Write(data); n != len(data) || err != nil {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(data))
	}
	if got := len(s.State().RX); got != SerialFIFOSize {
		t.Fatalf("fifo length = %d, want %d", got, SerialFIFOSize)
	}
	for i := range 10 {
		if got := portIn(s, com1+serialData); got != byte(i) {
			t.Fatalf("byte %d = %#02x, want %#02x", i, got, i)
		}
	}
	s.Write([]byte{0xAA, 0xBB}) // wraps the ring
	st := s.State()
	want := append(slices.Clone(data[10:]), 0xAA, 0xBB)
	if !slices.Equal(st.RX, want) {
		t.Errorf("fifo = %x, want %x", st.RX, want)
	}
	portOut(s, com1+serialIIR, 0x01|fcrClearRX) // FCR: enable + clear RX
	if got := portIn(s, com1+serialLSR); got&lsrDR != 0 {
		t.Errorf("LSR after FCR clear = %#02x, DR set", got)
	}
	if got := portIn(s, com1+serialData); got != 0 {
		t.Errorf("RBR of empty fifo = %#02x, want 0", got)
	}
}

func TestSerialOUT2GatesLine(t *testing.T) {
	s, irq, _ := newTestSerial()
	portOut(s, com1+serialMCR, 0) // OUT2 clear
	portOut(s, com1+serialIER, ierRDI)
	s.Write([]byte("x"))
	if got := irq.seq(); len(got) != 0 {
		t.Fatalf("levels with OUT2 clear = %v, want none", got)
	}
	if got := portIn(s, com1+serialIIR); got != iirFIFOOn|iirRDI {
		t.Errorf("IIR with OUT2 clear = %#02x, want %#02x (pending, only gated)", got, iirFIFOOn|iirRDI)
	}
	portOut(s, com1+serialMCR, mcrOUT2|mcrDTR|mcrRTS)
	portOut(s, com1+serialMCR, mcrDTR|mcrRTS)
	if got := irq.seq(); !slices.Equal(got, []bool{true, false}) {
		t.Errorf("levels toggling OUT2 = %v, want [true false]", got)
	}
}

func TestSerialLoopback(t *testing.T) {
	s, _, out := newTestSerial()
	// Linux's autoconfig loopback check: MCR = LOOP|OUT2|RTS reads MSR 0x90.
	portOut(s, com1+serialMCR, mcrLoop|0x0A)
	if got := portIn(s, com1+serialMSR) & 0xF0; got != 0x90 {
		t.Errorf("MSR in loopback = %#02x, want 0x90", got)
	}
	portOut(s, com1+serialData, 'L')
	if out.String() != "" {
		t.Errorf("loopback byte reached output: %q", out.String())
	}
	if got := portIn(s, com1+serialData); got != 'L' {
		t.Errorf("loopback RBR = %q, want 'L'", got)
	}
	// Overrun: fill the FIFO by loopback, then one more byte sets OE.
	for range SerialFIFOSize + 1 {
		portOut(s, com1+serialData, 'x')
	}
	if got := portIn(s, com1+serialLSR); got&lsrOE == 0 {
		t.Errorf("LSR after loopback overrun = %#02x, OE clear", got)
	}
	if got := portIn(s, com1+serialLSR); got&lsrOE != 0 {
		t.Errorf("LSR second read = %#02x, OE not cleared by the first read", got)
	}
	portOut(s, com1+serialMCR, mcrOUT2)
	if got := portIn(s, com1+serialMSR); got&0xF0 != msrDCD|msrDSR|msrCTS || got&msrDDSR == 0 {
		t.Errorf("MSR after leaving loopback = %#02x, want lines 0xb0 and DDSR", got)
	}
	if got := portIn(s, com1+serialMSR); got&msrDeltaMask != 0 {
		t.Errorf("MSR deltas not cleared by read: %#02x", got)
	}
}

// TestSerialLinuxAutoconfig plays the register sequence of Linux's
// drivers/tty/serial/8250/8250_port.c autoconfig and checks it finds a 16550A.
func TestSerialLinuxAutoconfig(t *testing.T) {
	s, _, _ := newTestSerial()
	in := func(off uint16) uint8 { return portIn(s, com1+off) }
	outb := func(off uint16, v uint8) { portOut(s, com1+off, v) }

	scratch := in(serialIER)
	outb(serialIER, 0)
	scratch2 := in(serialIER) & 0x0F
	outb(serialIER, 0x0F)
	scratch3 := in(serialIER) & 0x0F
	outb(serialIER, scratch)
	if scratch2 != 0 || scratch3 != 0x0F {
		t.Fatalf("IER test: %#x %#x, want 0 0xf", scratch2, scratch3)
	}
	saveMCR := in(serialMCR)
	outb(serialMCR, mcrLoop|0x0A)
	status1 := in(serialMSR) & 0xF0
	outb(serialMCR, saveMCR)
	if status1 != 0x90 {
		t.Fatalf("loopback test: MSR %#x, want 0x90", status1)
	}
	outb(serialLCR, 0xBF)
	outb(serialIIR, 0) // EFR on a 16650, FCR here
	outb(serialLCR, 0)
	outb(serialIIR, 0x01) // FCR enable FIFO
	if got := in(serialIIR) >> 6; got != 3 {
		t.Fatalf("IIR>>6 = %d, want 3 (16550A)", got)
	}
	// autoconfig_16550a: EFR probes read IIR with LCR 0x80 / 0xBF and must
	// see non-zero; the 16750 probe must not see IIR bit 5.
	for _, lcr := range []uint8{0x80, 0xBF} {
		outb(serialLCR, lcr)
		if got := in(serialIIR); got == 0 {
			t.Errorf("EFR probe with LCR %#x read 0 (would detect a 16650)", lcr)
		}
	}
	outb(serialLCR, 0)
	outb(serialIIR, 0x21)
	if got := in(serialIIR); got&0x20 != 0 {
		t.Errorf("IIR %#x has bit 5 (would detect a 16750)", got)
	}
	outb(serialIER, 0x40)
	if got := in(serialIER); got&0x40 != 0 {
		t.Errorf("IER kept UUE bit 6: %#x (would detect an XScale)", got)
	}
}

func TestSerialOutputError(t *testing.T) {
	s, _, out := newTestSerial()
	out.fail = errFake
	portOut(s, com1+serialData, 'a')
	portOut(s, com1+serialData, 'b')
	if err := s.Err(); !errors.Is(err, errFake) {
		t.Fatalf("Err() = %v, want %v", err, errFake)
	}
	if got := portIn(s, com1+serialLSR); got&(lsrTHRE|lsrTEMT) != lsrTHRE|lsrTEMT {
		t.Errorf("LSR after output error = %#02x, transmitter not empty", got)
	}
	out.fail = nil
	portOut(s, com1+serialData, 'c')
	if out.String() != "c" {
		t.Errorf("output after recovery = %q, want %q", out.String(), "c")
	}
}

func TestSerialIRQError(t *testing.T) {
	irq := &fakeIRQ{fail: errFake}
	s := NewSerial(SerialDeps{IRQ: irq})
	portOut(s, com1+serialIER, ierTHRI)
	if err := s.Err(); !errors.Is(err, errFake) {
		t.Fatalf("Err() = %v, want %v", err, errFake)
	}
	irq.fail = nil
	s.Write([]byte("x")) // any update retries the line
	portOut(s, com1+serialIER, ierTHRI|ierRDI)
	if got := irq.seq(); !slices.Equal(got, []bool{true}) {
		t.Errorf("levels after recovery = %v, want [true]", got)
	}
}

func TestSerialWriteBlocksUntilDrained(t *testing.T) {
	s, _, _ := newTestSerial()
	data := make([]byte, SerialFIFOSize+3)
	for i := range data {
		data[i] = byte(i)
	}
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := s.Write(data)
		done <- result{n, err}
	}()
	waitFor(t, "fifo full", func() bool { return len(s.State().RX) == SerialFIFOSize })
	select {
	case r := <-done:
		t.Fatalf("Write returned %d, %v with a full fifo", r.n, r.err)
	case <-time.After(20 * time.Millisecond):
	}
	var got []byte
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < len(data) {
		if portIn(s, com1+serialLSR)&lsrDR != 0 {
			got = append(got, portIn(s, com1+serialData))
		} else if time.Now().After(deadline) {
			t.Fatalf("guest got %d of %d bytes; Write not woken by reads", len(got), len(data))
		} else {
			time.Sleep(time.Millisecond)
		}
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Write still blocked after the guest read everything")
	}
	if r.n != len(data) || r.err != nil {
		t.Errorf("Write = %d, %v; want %d, nil", r.n, r.err, len(data))
	}
	if !slices.Equal(got, data) {
		t.Errorf("guest read %x, want %x", got, data)
	}
}

func TestSerialCloseUnblocksWrite(t *testing.T) {
	s, _, _ := newTestSerial()
	done := make(chan error, 1)
	var n int
	go func() {
		var err error
		n, err = s.Write(make([]byte, SerialFIFOSize+1))
		done <- err
	}()
	waitFor(t, "fifo full", func() bool { return len(s.State().RX) == SerialFIFOSize })
	s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrSerialClosed) {
			t.Errorf("Write error = %v, want %v", err, ErrSerialClosed)
		}
		if n != SerialFIFOSize {
			t.Errorf("Write n = %d, want %d", n, SerialFIFOSize)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Write still blocked 5s after Close")
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, ErrSerialClosed) {
		t.Errorf("Write after Close = %v, want %v", err, ErrSerialClosed)
	}
	// The guest side keeps working.
	if got := portIn(s, com1+serialData); got != 0 {
		t.Errorf("RBR after Close = %#02x, want 0", got)
	}
}

func TestSerialConcurrentWriteAndRead(t *testing.T) {
	s, irq, out := newTestSerial()
	portOut(s, com1+serialIER, ierRDI|ierTHRI)
	const total = 5000
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 7)
		for i := 0; i < total; i += len(buf) {
			for j := range buf {
				buf[j] = byte(i + j)
			}
			if _, err := s.Write(buf[:min(len(buf), total-i)]); err != nil {
				t.Errorf("Write: %v", err)
				return
			}
		}
	}()
	var got []byte
	go func() { // a second "vCPU" transmitting at the same time
		defer wg.Done()
		for range 1000 {
			portOut(s, com1+serialData, 'o')
			portIn(s, com1+serialIIR)
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for len(got) < total && time.Now().Before(deadline) {
		if portIn(s, com1+serialLSR)&lsrDR != 0 {
			got = append(got, portIn(s, com1+serialData))
		}
	}
	s.Close() // releases the writer if the guest side stalled
	wg.Wait()
	if len(got) != total {
		t.Fatalf("guest read %d bytes, want %d", len(got), total)
	}
	for i, b := range got {
		if b != byte(i) {
			t.Fatalf("byte %d = %#02x, want %#02x", i, b, byte(i))
		}
	}
	if len(out.String()) != 1000 {
		t.Errorf("output length = %d, want 1000", len(out.String()))
	}
	s.mu.Lock()
	want := s.lineWanted()
	s.mu.Unlock()
	if irq.level() != want {
		t.Errorf("final line %v, want %v", irq.level(), want)
	}
}

func TestSerialPortRange(t *testing.T) {
	s, _, out := newTestSerial()
	if got := portIn(s, com1-1); got != 0xFF {
		t.Errorf("read below base = %#02x, want 0xff", got)
	}
	if got := portIn(s, com1+SerialPorts); got != 0xFF {
		t.Errorf("read past end = %#02x, want 0xff", got)
	}
	portOut(s, com1+SerialPorts, 'z')
	buf := []byte{0, 0}
	s.ReadPort(com1+serialSCR, buf) // SCR, then one port past the end
	if buf[0] != 0 || buf[1] != 0xFF {
		t.Errorf("2-byte read at SCR = %x, want 00ff", buf)
	}
	s.WritePort(com1+serialLCR, []byte{0x03, mcrOUT2 | mcrRTS}) // LCR and MCR
	if got := portIn(s, com1+serialMCR); got != mcrOUT2|mcrRTS {
		t.Errorf("MCR after 2-byte write = %#02x, want %#02x", got, mcrOUT2|mcrRTS)
	}
	s.ReadPort(com1, nil)
	if out.String() != "" {
		t.Errorf("stray output %q", out.String())
	}
	other := NewSerial(SerialDeps{Base: 0x2F8})
	if other.Base() != 0x2F8 || portIn(other, 0x2F8+serialLCR) != 0x03 {
		t.Errorf("serial at 0x2f8 does not answer there")
	}
}

// driveSerial puts s into a state with every field off its default.
func driveSerial(s *Serial) {
	portOut(s, com1+serialLCR, lcrDLAB|0x1B)
	portOut(s, com1+serialData, 0x34)
	portOut(s, com1+serialIER, 0x12)
	portOut(s, com1+serialLCR, 0x1B)
	portOut(s, com1+serialSCR, 0x5A)
	portOut(s, com1+serialIER, ierRDI|ierTHRI|ierMSI)
	portOut(s, com1+serialMCR, mcrLoop|mcrOUT2|mcrDTR)
	portOut(s, com1+serialData, 'L')
	portOut(s, com1+serialMCR, mcrOUT2|mcrRTS)
	s.Write([]byte("hello"))
}

func TestSerialStateRoundTrip(t *testing.T) {
	s, _, _ := newTestSerial()
	driveSerial(s)
	st := s.State()
	irq2 := &fakeIRQ{}
	out2 := &fakeOut{}
	r, err := RestoreSerial(st, SerialDeps{IRQ: irq2, Out: out2})
	if err != nil {
		t.Fatalf("RestoreSerial: %v", err)
	}
	if got := r.State(); !reflect.DeepEqual(got, st) {
		t.Fatalf("restored state = %+v, want %+v", got, st)
	}
	if got := irq2.seq(); !slices.Equal(got, []bool{true}) {
		t.Errorf("restore drove levels %v, want [true] (interrupt pending)", got)
	}
	// Same behaviour: both devices answer the same reads the same way.
	for _, off := range []uint16{serialIIR, serialLSR, serialMSR, serialData, serialData, serialIIR, serialLCR, serialSCR} {
		a, b := portIn(s, com1+off), portIn(r, com1+off)
		if a != b {
			t.Errorf("read offset %d: restored %#02x, original %#02x", off, b, a)
		}
	}
	portOut(r, com1+serialData, 'z')
	if out2.String() != "z" {
		t.Errorf("restored output = %q, want %q", out2.String(), "z")
	}
	// Power-on state round trips too, without touching the line.
	irq3 := &fakeIRQ{}
	if _, err := RestoreSerial(NewSerial(SerialDeps{}).State(), SerialDeps{IRQ: irq3}); err != nil {
		t.Fatalf("RestoreSerial(power-on): %v", err)
	}
	if got := irq3.seq(); len(got) != 0 {
		t.Errorf("restore of idle state drove %v, want nothing", got)
	}
}

func TestRestoreSerialRejects(t *testing.T) {
	good := NewSerial(SerialDeps{}).State()
	for _, tc := range []struct {
		name   string
		mutate func(st *SerialState)
	}{
		{"fifo too long", func(st *SerialState) { st.RX = make([]byte, SerialFIFOSize+1) }},
		{"ier reserved bits", func(st *SerialState) { st.IER = 0x10 }},
		{"mcr reserved bits", func(st *SerialState) { st.MCR = 0x20 | mcrOUT2 }},
		{"line errors outside mask", func(st *SerialState) { st.LineErrors = lsrDR }},
		{"msr lines disagree", func(st *SerialState) { st.MSR = msrCTS }},
		{"msr lines in loopback", func(st *SerialState) { st.MCR = mcrLoop | mcrRTS }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := good
			st.RX = nil
			tc.mutate(&st)
			s, err := RestoreSerial(st, SerialDeps{})
			if !errors.Is(err, ErrInvalidState) {
				t.Errorf("RestoreSerial error = %v, want %v", err, ErrInvalidState)
			}
			if s != nil {
				t.Errorf("RestoreSerial returned a device with an error")
			}
		})
	}
	if _, err := RestoreSerial(good, SerialDeps{}); err != nil {
		t.Errorf("RestoreSerial(good) = %v", err)
	}
}

// waitFor polls cond for up to five seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// FuzzSerial drives a UART with arbitrary port accesses and host input and
// checks that it never panics, the FIFO never exceeds its size, the line
// level always matches the pending state, and State round-trips.
func FuzzSerial(f *testing.F) {
	f.Add([]byte{0x81, 0x02, 0x00, 0x41, 0x02, 0x03, 0x01})
	f.Add([]byte{0x84, 0x1F, 0x80, 0x41, 0x41, 0x05, 0x06, 0x02, 0x40, 0x00})
	f.Add([]byte{0x83, 0x80, 0x80, 0x0C, 0x81, 0x00, 0x83, 0x03, 0x50, 0xFF})
	f.Fuzz(func(t *testing.T, ops []byte) {
		irq := &fakeIRQ{}
		out := &fakeOut{}
		s := NewSerial(SerialDeps{IRQ: irq, Out: out})
		for i := 0; i < len(ops); i++ {
			op := ops[i]
			arg := byte(0)
			if i+1 < len(ops) {
				arg = ops[i+1]
			}
			switch op >> 6 {
			case 0: // read
				portIn(s, com1+uint16(op&0x0F)-4)
			case 1: // host input of up to the free room
				room := SerialFIFOSize - len(s.State().RX)
				n := min(int(op&0x3F), room)
				if _, err := s.Write(make([]byte, n)); err != nil {
					t.Fatalf("Write(%d) with %d free: %v", n, room, err)
				}
			default: // write
				portOut(s, com1+uint16(op&0x0F)-4, arg)
				i++
			}
			s.mu.Lock()
			fifo, want, level := s.rxLen, s.lineWanted(), s.level
			s.mu.Unlock()
			if fifo > SerialFIFOSize {
				t.Fatalf("fifo holds %d bytes, limit %d", fifo, SerialFIFOSize)
			}
			if level != want || irq.level() != want {
				t.Fatalf("line %v (irq saw %v), pending state wants %v", level, irq.level(), want)
			}
		}
		if err := s.Err(); err != nil {
			t.Fatalf("Err() = %v with working fakes", err)
		}
		st := s.State()
		r, err := RestoreSerial(st, SerialDeps{})
		if err != nil {
			t.Fatalf("RestoreSerial(State()) = %v", err)
		}
		if got := r.State(); !reflect.DeepEqual(got, st) {
			t.Fatalf("round trip: %+v, want %+v", got, st)
		}
	})
}

// FuzzRestoreSerial restores arbitrary states: a rejected state must not
// yield a device, an accepted one must round-trip and drive the line to the
// level its pending state implies.
func FuzzRestoreSerial(f *testing.F) {
	f.Add(uint16(12), uint8(0x0F), uint8(0x03), uint8(0x08), uint8(0xB1), uint8(0), uint8(0x02), true, []byte("ab"))
	f.Add(uint16(1), uint8(0x01), uint8(0x83), uint8(0x1F), uint8(0xD0), uint8(0x5A), uint8(0), false, make([]byte, 65))
	f.Fuzz(func(t *testing.T, div uint16, ier, lcr, mcr, msr, scr, lerr uint8, thre bool, rx []byte) {
		st := SerialState{Divisor: div, IER: ier, LCR: lcr, MCR: mcr, MSR: msr, SCR: scr,
			LineErrors: lerr, THREPending: thre, RX: rx}
		irq := &fakeIRQ{}
		s, err := RestoreSerial(st, SerialDeps{IRQ: irq})
		if err != nil {
			if s != nil || !errors.Is(err, ErrInvalidState) {
				t.Fatalf("RestoreSerial = %v, %v; want nil device and ErrInvalidState", s, err)
			}
			return
		}
		if len(st.RX) == 0 {
			st.RX = []byte{} // State never returns a nil FIFO
		}
		if got := s.State(); !reflect.DeepEqual(got, st) {
			t.Fatalf("round trip: %+v, want %+v", got, st)
		}
		s.mu.Lock()
		want := s.lineWanted()
		s.mu.Unlock()
		if irq.level() != want {
			t.Fatalf("line after restore %v, pending state wants %v", irq.level(), want)
		}
		for off := range uint16(SerialPorts) {
			portIn(s, com1+off)
		}
	})
}

// edgeIRQ models an edge-triggered IOAPIC pin: a rising edge latches one
// interrupt; edges while one is latched coalesce.
type edgeIRQ struct {
	mu    sync.Mutex
	level bool
	edges chan struct{}
}

func (e *edgeIRQ) Set(level bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if level && !e.level {
		select {
		case e.edges <- struct{}{}:
		default:
		}
	}
	e.level = level
	return nil
}

// TestSerialInterruptDrivenDriver plays a Linux-like 8250 driver that only
// touches the UART when an edge arrives on an edge-triggered pin, and checks
// that interrupt-driven transmit and receive both run to completion while the
// host writes concurrently: no edge is ever lost.
func TestSerialInterruptDrivenDriver(t *testing.T) {
	irq := &edgeIRQ{edges: make(chan struct{}, 1)}
	out := &fakeOut{}
	s := NewSerial(SerialDeps{IRQ: irq, Out: out})
	in := func(off uint16) uint8 { return portIn(s, com1+off) }
	outb := func(off uint16, v uint8) { portOut(s, com1+off, v) }

	// Startup as serial8250_do_startup leaves it: FIFO on, RX interrupts on.
	outb(serialIIR, 0x01|fcrClearRX)
	outb(serialMCR, mcrOUT2|mcrDTR|mcrRTS)
	ier := uint8(ierRDI | ierRLSI)
	outb(serialIER, ier)

	var tx []byte
	for i := range 3000 {
		tx = append(tx, 'a'+byte(i%26))
	}
	want := make([]byte, 4000)
	for i := range want {
		want[i] = byte(i * 7)
	}
	hostDone := make(chan error, 1)
	go func() {
		for i := 0; i < len(want); i += 13 {
			if _, err := s.Write(want[i:min(i+13, len(want))]); err != nil {
				hostDone <- err
				return
			}
		}
		hostDone <- nil
	}()

	// start_tx: enable THRI; the THRE interrupt does the rest.
	ier |= ierTHRI
	outb(serialIER, ier)

	var rx []byte
	isr := func() {
		for range 256 { // PASS_LIMIT-style bound
			iir := in(serialIIR)
			if iir&iirNoInt != 0 {
				return
			}
			lsr := in(serialLSR)
			for lsr&lsrDR != 0 {
				rx = append(rx, in(serialData))
				lsr = in(serialLSR)
			}
			if lsr&lsrTHRE != 0 && ier&ierTHRI != 0 {
				n := min(16, len(tx))
				for _, b := range tx[:n] {
					outb(serialData, b)
				}
				tx = tx[n:]
				if len(tx) == 0 { // __stop_tx
					ier &^= ierTHRI
					outb(serialIER, ier)
				}
			}
		}
		t.Errorf("isr: interrupt still pending after 256 passes")
	}
	timeout := time.After(20 * time.Second)
	for len(rx) < len(want) || len(tx) > 0 {
		select {
		case <-irq.edges:
			isr()
		case <-timeout:
			t.Fatalf("stalled: %d of %d bytes received, %d bytes left to send", len(rx), len(want), len(tx))
		}
	}
	if err := <-hostDone; err != nil {
		t.Fatalf("host Write: %v", err)
	}
	if !slices.Equal(rx, want) {
		t.Errorf("received bytes differ from what the host wrote")
	}
	if got := out.String(); len(got) != 3000 || got[:26] != "abcdefghijklmnopqrstuvwxyz" {
		t.Errorf("transmitted %d bytes starting %.26q, want 3000 starting with the alphabet", len(got), got)
	}
}
