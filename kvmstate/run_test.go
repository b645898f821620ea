package kvmstate

import (
	"bytes"
	"encoding/binary"
	"strings"
	"sync"
	"testing"
)

// fakeVCPU returns a VCPU whose run page is ordinary memory of the usual
// three-page mapping size, for testing the exit decoders without KVM.
func fakeVCPU() *VCPU {
	return &VCPU{fd: -1, run: make([]byte, 3*4096)}
}

func putIO(run []byte, dir, size uint8, port uint16, count uint32, off uint64) {
	binary.LittleEndian.PutUint32(run[runExitReason:], ExitIO)
	run[runIODirection] = dir
	run[runIOSize] = size
	binary.LittleEndian.PutUint16(run[runIOPort:], port)
	binary.LittleEndian.PutUint32(run[runIOCount:], count)
	binary.LittleEndian.PutUint64(run[runIODataOffset:], off)
}

func TestIOExit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		dir     uint8
		size    uint8
		count   uint32
		off     uint64
		wantErr string // empty: valid
	}{
		{name: "out byte", dir: ioOut, size: 1, count: 1, off: 4096},
		{name: "in dword rep", dir: ioIn, size: 4, count: 16, off: 4096},
		{name: "ends at mapping end", dir: ioOut, size: 2, count: 2048, off: 8192},
		{name: "size 3", dir: ioOut, size: 3, count: 1, off: 4096, wantErr: "access size 3"},
		{name: "size 8", dir: ioOut, size: 8, count: 1, off: 4096, wantErr: "access size 8"},
		{name: "bad direction", dir: 7, size: 1, count: 1, off: 4096, wantErr: "direction 7"},
		{name: "count 0", dir: ioOut, size: 1, count: 0, off: 4096, wantErr: "do not fit"},
		{name: "one past end", dir: ioOut, size: 2, count: 2049, off: 8192, wantErr: "do not fit"},
		{name: "offset past end", dir: ioOut, size: 1, count: 1, off: 3 * 4096, wantErr: "do not fit"},
		{name: "offset overflows", dir: ioOut, size: 4, count: 4, off: ^uint64(0) - 3, wantErr: "do not fit"},
		{name: "huge count", dir: ioOut, size: 4, count: ^uint32(0), off: 4096, wantErr: "do not fit"},
		{name: "inside kvm_run", dir: ioOut, size: 1, count: 1, off: 40, wantErr: "do not fit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := fakeVCPU()
			putIO(v.run, tc.dir, tc.size, 0x3f8, tc.count, tc.off)
			if got := v.ExitReason(); got != ExitIO {
				t.Fatalf("ExitReason() = %d, want %d", got, ExitIO)
			}
			e, err := v.IO()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("IO() error = %v, want one containing %q", err, tc.wantErr)
				}
				if e.Data != nil {
					t.Errorf("IO() returned data %d bytes with an error", len(e.Data))
				}
				return
			}
			if err != nil {
				t.Fatalf("IO() error = %v", err)
			}
			if e.Out != (tc.dir == ioOut) || e.Size != tc.size || e.Port != 0x3f8 || e.Count != tc.count {
				t.Errorf("IO() = out %v size %d port %#x count %d, want dir %d size %d port 0x3f8 count %d", e.Out, e.Size, e.Port, e.Count, tc.dir, tc.size, tc.count)
			}
			if got, want := len(e.Data), int(tc.size)*int(tc.count); got != want || cap(e.Data) != want {
				t.Errorf("len/cap(Data) = %d/%d, want %d", got, cap(e.Data), want)
			}
			// Data is a view: what the VMM writes for an IN lands in the page.
			e.Data[0] = 0x5a
			if v.run[tc.off] != 0x5a {
				t.Errorf("Data does not alias the run page at offset %d", tc.off)
			}
		})
	}
}

func TestMMIOExit(t *testing.T) {
	for _, tc := range []struct {
		n       uint32
		wantErr bool
	}{{1, false}, {2, false}, {4, false}, {8, false}, {0, true}, {9, true}, {1 << 31, true}} {
		v := fakeVCPU()
		binary.LittleEndian.PutUint32(v.run[runExitReason:], ExitMMIO)
		binary.LittleEndian.PutUint64(v.run[runMMIOPhysAddr:], 0xd0000000)
		copy(v.run[runMMIOData:], []byte{1, 2, 3, 4, 5, 6, 7, 8})
		binary.LittleEndian.PutUint32(v.run[runMMIOLen:], tc.n)
		v.run[runMMIOIsWrite] = 1
		e, err := v.MMIO()
		if tc.wantErr {
			if err == nil {
				t.Errorf("len %d: MMIO() succeeded, want an error", tc.n)
			}
			continue
		}
		if err != nil {
			t.Fatalf("len %d: MMIO() error = %v", tc.n, err)
		}
		if e.Addr != 0xd0000000 || !e.IsWrite || !bytes.Equal(e.Data, []byte{1, 2, 3, 4, 5, 6, 7, 8}[:tc.n]) {
			t.Errorf("len %d: MMIO() = %#x write=%v data %v", tc.n, e.Addr, e.IsWrite, e.Data)
		}
		if cap(e.Data) != int(tc.n) {
			t.Errorf("len %d: cap(Data) = %d, want %d", tc.n, cap(e.Data), tc.n)
		}
	}
}

func TestOtherExits(t *testing.T) {
	v := fakeVCPU()
	le := binary.LittleEndian

	le.PutUint32(v.run[runSystemEventType:], SystemEventReset)
	le.PutUint64(v.run[runSystemEventFlags:], 0x42)
	if e := v.SystemEvent(); e.Type != SystemEventReset || e.Flags != 0x42 {
		t.Errorf("SystemEvent() = %+v, want type %d flags 0x42", e, SystemEventReset)
	}

	le.PutUint32(v.run[runInternalSuberror:], InternalErrorEmulation)
	le.PutUint32(v.run[runInternalNData:], 1000) // more than the 16 words there are
	for i := 0; i < runInternalMaxData; i++ {
		le.PutUint64(v.run[runInternalData+8*i:], uint64(i+1))
	}
	ie := v.InternalError()
	if ie.Suberror != InternalErrorEmulation || len(ie.Data) != runInternalMaxData || ie.Data[0] != 1 || ie.Data[15] != 16 {
		t.Errorf("InternalError() = %v; want suberror %d and data 1..16", ie, InternalErrorEmulation)
	}
	if got := ie.String(); !strings.HasPrefix(got, "suberror 1, data [0x1 0x2 ") {
		t.Errorf("InternalErrorExit.String() = %q", got)
	}

	le.PutUint64(v.run[runFailEntryReason:], 0x80000021)
	if reason := v.FailEntry(); reason != 0x80000021 {
		t.Errorf("FailEntry() = %#x, want 0x80000021", reason)
	}

	v.run[runEOIVector] = 0x31
	if got := v.IOAPICEOI(); got != 0x31 {
		t.Errorf("IOAPICEOI() = %#x, want 0x31", got)
	}
}

func TestClosedVCPUAccessors(t *testing.T) {
	v := &VCPU{fd: -1}
	if got := v.ExitReason(); got != ExitUnknown {
		t.Errorf("ExitReason() = %d on a closed vCPU", got)
	}
	if _, err := v.IO(); err == nil {
		t.Error("IO() on a closed vCPU succeeded")
	}
	if _, err := v.MMIO(); err == nil {
		t.Error("MMIO() on a closed vCPU succeeded")
	}
	v.SetImmediateExit(true) // must not panic
	if v.ImmediateExit() {
		t.Error("ImmediateExit() = true on a closed vCPU")
	}
}

func TestSetImmediateExit(t *testing.T) {
	v := fakeVCPU()
	v.run[0], v.run[2], v.run[3], v.run[4] = 0x11, 0x22, 0x33, 0x44
	v.SetImmediateExit(true)
	if v.run[runImmediateExit] != 1 || !v.ImmediateExit() {
		t.Fatalf("immediate_exit = %d after SetImmediateExit(true)", v.run[runImmediateExit])
	}
	if v.run[0] != 0x11 || v.run[2] != 0x22 || v.run[3] != 0x33 || v.run[4] != 0x44 {
		t.Errorf("neighbouring bytes changed: % x", v.run[:5])
	}
	v.SetImmediateExit(false)
	if v.run[runImmediateExit] != 0 || v.ImmediateExit() {
		t.Errorf("immediate_exit = %d after SetImmediateExit(false)", v.run[runImmediateExit])
	}

	// Concurrent kicks from other goroutines: run with -race.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 1000; j++ {
				v.SetImmediateExit(true)
				_ = v.ImmediateExit()
			}
		}()
	}
	wg.Wait()
	if !v.ImmediateExit() || v.run[0] != 0x11 || v.run[2] != 0x22 {
		t.Errorf("after concurrent sets: % x", v.run[:4])
	}
}

func TestLAPICRegisters(t *testing.T) {
	var s LAPICState
	if !s.Set32(LAPICRegLVT0, 0x700) {
		t.Fatal("Set32(LVT0) refused")
	}
	if got := s.Get32(LAPICRegLVT0); got != 0x700 {
		t.Errorf("Get32(LVT0) = %#x, want 0x700", got)
	}
	if s[LAPICRegLVT0] != 0x00 || s[LAPICRegLVT0+1] != 0x07 {
		t.Errorf("LVT0 bytes = % x, want little-endian 00 07 00 00", s[LAPICRegLVT0:LAPICRegLVT0+4])
	}
	if !s.Set32(0x3fc, 0xdeadbeef) || s.Get32(0x3fc) != 0xdeadbeef {
		t.Error("last register of the page does not round-trip")
	}
	for _, off := range []uint32{0x3fd, 0x400, 0x22, ^uint32(0)} {
		if s.Set32(off, 1) {
			t.Errorf("Set32(%#x) accepted a bad offset", off)
		}
		if got := s.Get32(off); got != 0 {
			t.Errorf("Get32(%#x) = %#x, want 0", off, got)
		}
	}
}

func TestGetDirtyLogChecksBitmap(t *testing.T) {
	// No ioctl is reached: both calls are refused before the kernel would
	// write past the bitmap.
	vm := &VM{fd: -1, slotPages: map[uint32]uint64{1: 1000}}
	if got := vm.DirtyLogWords(1); got != 16 {
		t.Errorf("DirtyLogWords(1) = %d for 1000 pages, want 16", got)
	}
	if err := vm.GetDirtyLog(1, make([]uint64, 15)); err == nil || !strings.Contains(err.Error(), "need 16") {
		t.Errorf("GetDirtyLog with 15 words = %v, want a refusal naming 16", err)
	}
	if err := vm.GetDirtyLog(2, make([]uint64, 64)); err == nil || !strings.Contains(err.Error(), "slot 2") {
		t.Errorf("GetDirtyLog of an unknown slot = %v, want a refusal", err)
	}
}

// FuzzExitDecoders feeds arbitrary exit-union bytes to the decoders: none may
// panic, and every view they return must have the length the header claims.
func FuzzExitDecoders(f *testing.F) {
	page := make([]byte, runPageMinSize)
	putIO(page, ioOut, 1, 0x3f8, 1, 4096) // a valid one-byte OUT
	f.Add(page[runIODirection:runIODirection+64], uint64(4096))
	f.Add(make([]byte, 64), ^uint64(0))
	f.Fuzz(func(t *testing.T, union []byte, dataOffset uint64) {
		v := fakeVCPU()
		copy(v.run[runIODirection:runIODirection+64], union)
		binary.LittleEndian.PutUint64(v.run[runIODataOffset:], dataOffset)
		if e, err := v.IO(); err == nil {
			if len(e.Data) != int(e.Size)*int(e.Count) || len(e.Data) == 0 {
				t.Errorf("IO() data %d bytes for size %d count %d", len(e.Data), e.Size, e.Count)
			}
		}
		copy(v.run[runIODirection:runIODirection+64], union)
		if e, err := v.MMIO(); err == nil {
			if n := binary.LittleEndian.Uint32(v.run[runMMIOLen:]); len(e.Data) != int(n) || n == 0 || n > 8 {
				t.Errorf("MMIO() data %d bytes for len %d", len(e.Data), n)
			}
		}
		if e := v.InternalError(); len(e.Data) > runInternalMaxData {
			t.Errorf("InternalError() returned %d data words", len(e.Data))
		}
		_ = v.SystemEvent()
		_ = v.FailEntry()
	})
}
