package vm

import (
	"bytes"
	"testing"
)

type fakePort struct {
	name    string
	lastOut []byte
}

func (f *fakePort) ReadPort(port uint16, data []byte) {
	for i := range data {
		data[i] = byte(port) + byte(i)
	}
}
func (f *fakePort) WritePort(port uint16, data []byte) { f.lastOut = append([]byte(nil), data...) }

func TestPortBus(t *testing.T) {
	var b portBus
	com1, kbd := &fakePort{name: "com1"}, &fakePort{name: "kbd"}
	if err := b.add(0x3f8, 8, com1); err != nil {
		t.Fatal(err)
	}
	if err := b.add(0x60, 5, kbd); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ base, n uint16 }{{0x3fc, 8}, {0x3f0, 9}, {0x60, 1}, {0xfffe, 4}, {0x10, 0}} {
		if err := b.add(bad.base, bad.n, &fakePort{}); err == nil {
			t.Errorf("add(%#x, %d) overlapping or invalid range accepted", bad.base, bad.n)
		}
	}
	for port, want := range map[uint16]*fakePort{0x3f8: com1, 0x3ff: com1, 0x60: kbd, 0x64: kbd, 0x3f7: nil, 0x400: nil, 0x65: nil, 0: nil} {
		got := b.find(port)
		if (want == nil) != (got == nil) || (want != nil && got.(*fakePort) != want) {
			t.Errorf("find(%#x) = %v, want %v", port, got, want)
		}
	}
	data := make([]byte, 2)
	b.read(0x999, data)
	if !bytes.Equal(data, []byte{0xff, 0xff}) {
		t.Errorf("unclaimed port read %x, want ffff", data)
	}
	b.write(0x64, []byte{0xfe})
	if !bytes.Equal(kbd.lastOut, []byte{0xfe}) {
		t.Errorf("write to 0x64 reached %x", kbd.lastOut)
	}
}
