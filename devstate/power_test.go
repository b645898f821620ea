package devstate

import (
	"reflect"
	"testing"
)

func TestPower(t *testing.T) {
	for _, tc := range []struct {
		name         string
		port         uint16
		data         []byte
		offs, resets int
	}{
		{"s5 soft off (0x34)", PowerPort, []byte{0x34}, 1, 0},
		{"s5 with other bits", PowerPort, []byte{0x34 | 0x80 | 0x01}, 1, 0},
		{"reset value", PowerPort, []byte{0x01}, 0, 1},
		{"wake status clear (0x80)", PowerPort, []byte{0x80}, 0, 0},
		{"s5 type without SLP_EN", PowerPort, []byte{0x14}, 0, 0},
		{"SLP_EN with s3 type", PowerPort, []byte{0x20 | 3<<2}, 0, 0},
		{"SLP_EN with s0 type", PowerPort, []byte{0x20}, 0, 0},
		{"zero", PowerPort, []byte{0x00}, 0, 0},
		{"reset value plus bit", PowerPort, []byte{0x03}, 0, 0},
		{"other port", PowerPort + 1, []byte{0x34}, 0, 0},
		{"wide write, low byte counts", PowerPort, []byte{0x01, 0x34}, 0, 1},
		{"wide write reaching the port", PowerPort - 1, []byte{0x01, 0x34}, 1, 0},
		{"empty write", PowerPort, nil, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			offs, resets := 0, 0
			p := NewPower(PowerDeps{PowerOff: func() { offs++ }, Reset: func() { resets++ }})
			p.WritePort(tc.port, tc.data)
			if offs != tc.offs || resets != tc.resets {
				t.Errorf("PowerOff %d, Reset %d; want %d, %d", offs, resets, tc.offs, tc.resets)
			}
		})
	}
}

func TestPowerReadAndState(t *testing.T) {
	p := NewPower(PowerDeps{}) // nil callbacks are ignored
	p.WritePort(PowerPort, []byte{0x34})
	p.WritePort(PowerPort, []byte{0x01})
	buf := []byte{0xAA, 0xAA}
	p.ReadPort(PowerPort, buf)
	if buf[0] != 0 || buf[1] != 0xFF {
		t.Errorf("read = %x, want 00ff", buf)
	}
	offs := 0
	r, err := RestorePower(p.State(), PowerDeps{PowerOff: func() { offs++ }})
	if err != nil {
		t.Fatalf("RestorePower: %v", err)
	}
	if !reflect.DeepEqual(r.State(), p.State()) {
		t.Errorf("restored state differs")
	}
	r.WritePort(PowerPort, []byte{0x34})
	if offs != 1 {
		t.Errorf("restored device: PowerOff called %d times, want 1", offs)
	}
}
