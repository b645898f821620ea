package kvmstate

import (
	"bytes"
	"errors"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// openKVM opens /dev/kvm or skips the test, saying loudly why.
func openKVM(t *testing.T) *System {
	t.Helper()
	s, err := Open(DefaultPath)
	if err != nil {
		t.Skipf("KVM unavailable: %v — KVM tests skipped", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close %s: %v", DefaultPath, err)
		}
	})
	return s
}

// guestMemory maps size bytes of anonymous memory for a memory slot.
func guestMemory(t *testing.T, size int) []byte {
	t.Helper()
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		t.Fatalf("mmap guest memory: %v", err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	return mem
}

// newVM creates a VM with its real-mode helper regions placed below 4 GiB,
// and optionally the in-kernel irqchip and PIT.
func newVM(t *testing.T, s *System, irqchip bool) *VM {
	t.Helper()
	vm, err := s.CreateVM()
	if err != nil {
		t.Fatalf("CreateVM: %v", err)
	}
	t.Cleanup(func() {
		if err := vm.Close(); err != nil {
			t.Errorf("close vm: %v", err)
		}
	})
	if err := vm.SetIdentityMapAddr(0xfffbc000); err != nil {
		t.Fatalf("SetIdentityMapAddr: %v", err)
	}
	if err := vm.SetTSSAddr(0xfffbd000); err != nil {
		t.Fatalf("SetTSSAddr: %v", err)
	}
	if irqchip {
		if err := vm.CreateIRQChip(); err != nil {
			t.Fatalf("CreateIRQChip: %v", err)
		}
		if err := vm.CreatePIT2(PITSpeakerDummy); err != nil {
			t.Fatalf("CreatePIT2: %v", err)
		}
	}
	return vm
}

// newVCPU creates vCPU 0 on the calling thread, which the caller has locked.
func newVCPU(t *testing.T, vm *VM) *VCPU {
	t.Helper()
	v, err := vm.CreateVCPU(0)
	if err != nil {
		t.Fatalf("CreateVCPU(0): %v", err)
	}
	t.Cleanup(func() {
		if err := v.Close(); err != nil {
			t.Errorf("close vcpu: %v", err)
		}
		if err := v.Close(); !errors.Is(err, ErrClosed) {
			t.Errorf("second close of vcpu = %v, want ErrClosed", err)
		}
	})
	if v.TID() != unix.Gettid() {
		t.Errorf("TID() = %d, want the creating thread %d", v.TID(), unix.Gettid())
	}
	return v
}

func TestSystem(t *testing.T) {
	s := openKVM(t)
	if v, err := s.APIVersion(); err != nil || v != APIVersion {
		t.Errorf("APIVersion() = %d, %v, want %d", v, err, APIVersion)
	}
	if n, err := s.CheckExtension(CapUserMemory); err != nil || n == 0 {
		t.Errorf("CheckExtension(CapUserMemory) = %d, %v, want non-zero", n, err)
	}
	if n, err := s.VCPUMmapSize(); err != nil || n < runPageMinSize {
		t.Errorf("VCPUMmapSize() = %d, %v, want at least %d", n, err, runPageMinSize)
	}
	cpuid, err := s.SupportedCPUID()
	if err != nil {
		t.Fatalf("SupportedCPUID: %v", err)
	}
	leaves := map[uint32]bool{}
	for _, e := range cpuid {
		leaves[e.Function] = true
	}
	if !leaves[0] || !leaves[1] || !leaves[0x80000000] {
		t.Errorf("SupportedCPUID lacks leaf 0, 1 or 0x80000000 (%d entries)", len(cpuid))
	}
	msrs, err := s.MSRIndexList()
	if err != nil {
		t.Fatalf("MSRIndexList: %v", err)
	}
	found := false
	for _, idx := range msrs {
		found = found || idx == 0x10 // IA32_TSC is always saveable
	}
	if !found {
		t.Errorf("MSRIndexList (%d msrs) lacks IA32_TSC", len(msrs))
	}
}

// roundTrip gets a state, sets it back and gets it again; both gets must agree.
func roundTrip[T comparable](t *testing.T, name string, get func() (T, error), set func(*T) error, norm func(*T)) {
	t.Helper()
	a, err := get()
	if err != nil {
		t.Errorf("%s: get: %v", name, err)
		return
	}
	if err := set(&a); err != nil {
		t.Errorf("%s: set: %v", name, err)
		return
	}
	b, err := get()
	if err != nil {
		t.Errorf("%s: get after set: %v", name, err)
		return
	}
	if norm != nil {
		norm(&a)
		norm(&b)
	}
	if a != b {
		t.Errorf("%s: get → set → get differs:\n got %+v\nwant %+v", name, b, a)
	}
}

func TestStateRoundTrip(t *testing.T) {
	s := openKVM(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	vm := newVM(t, s, true)
	mem := guestMemory(t, 2<<20)
	if err := vm.SetUserMemoryRegion(0, 0, 0, mem); err != nil {
		t.Fatalf("SetUserMemoryRegion: %v", err)
	}
	v := newVCPU(t, vm)
	supported, err := s.SupportedCPUID()
	if err != nil {
		t.Fatalf("SupportedCPUID: %v", err)
	}
	if err := v.SetCPUID2(supported); err != nil {
		t.Fatalf("SetCPUID2: %v", err)
	}
	got, err := v.CPUID2()
	if err != nil {
		t.Fatalf("CPUID2: %v", err)
	}
	if len(got) != len(supported) {
		t.Errorf("CPUID2 returned %d entries, set %d", len(got), len(supported))
	}
	for i := range min(len(got), len(supported)) {
		if got[i].Function != supported[i].Function || got[i].Index != supported[i].Index {
			t.Errorf("CPUID2 entry %d is leaf %#x.%d, set %#x.%d", i, got[i].Function, got[i].Index, supported[i].Function, supported[i].Index)
			break
		}
	}

	// Values set first, so the round trips below carry non-default state.
	regs := Regs{RAX: 0x1234, RSP: 0x8000, RIP: 0x1000, RFLAGS: 0x2}
	if err := v.SetRegs(&regs); err != nil {
		t.Fatalf("SetRegs: %v", err)
	}
	if r, err := v.Regs(); err != nil || r != regs {
		t.Errorf("Regs() = %+v, %v, want %+v", r, err, regs)
	}
	lapic, err := v.LAPIC()
	if err != nil {
		t.Fatalf("LAPIC: %v", err)
	}
	lapic.Set32(LAPICRegLVT0, 0x700) // ExtINT
	lapic.Set32(LAPICRegLVT1, 0x400) // NMI
	if err := v.SetLAPIC(&lapic); err != nil {
		t.Fatalf("SetLAPIC: %v", err)
	}
	if l, err := v.LAPIC(); err != nil || l.Get32(LAPICRegLVT0) != 0x700 || l.Get32(LAPICRegLVT1) != 0x400 {
		t.Errorf("LAPIC LVT0/LVT1 = %#x/%#x (%v), want 0x700/0x400", l.Get32(LAPICRegLVT0), l.Get32(LAPICRegLVT1), err)
	}
	dbg := DebugRegs{DB: [4]uint64{0x1000, 0x2000}, DR6: 0xffff0ff0, DR7: 0x400}
	if err := v.SetDebugRegs(&dbg); err != nil {
		t.Fatalf("SetDebugRegs: %v", err)
	}
	if d, err := v.DebugRegs(); err != nil || d.DB != dbg.DB {
		t.Errorf("DebugRegs().DB = %#x (%v), want %#x", d.DB, err, dbg.DB)
	}

	roundTrip(t, "regs", v.Regs, v.SetRegs, nil)
	roundTrip(t, "sregs", v.Sregs, v.SetSregs, nil)
	roundTrip(t, "fpu", v.FPU, v.SetFPU, nil)
	roundTrip(t, "lapic", v.LAPIC, v.SetLAPIC, nil)
	roundTrip(t, "vcpu events", v.VCPUEvents, v.SetVCPUEvents, nil)
	roundTrip(t, "debugregs", v.DebugRegs, v.SetDebugRegs, nil)
	roundTrip(t, "xcrs", v.XCRS, v.SetXCRS, nil)
	roundTrip(t, "mp state", v.MPState, func(s *MPState) error { return v.SetMPState(*s) }, nil)
	for _, chip := range []uint32{PICMaster, PICSlave, IOAPIC} {
		roundTrip(t, "irqchip", func() (IRQChip, error) { return vm.GetIRQChip(chip) }, vm.SetIRQChip, nil)
	}
	// KVM_SET_PIT2 reloads each counter, which restamps its load time.
	roundTrip(t, "pit2", vm.GetPIT2, vm.SetPIT2, func(p *PITState2) {
		for i := range p.Channels {
			p.Channels[i].CountLoadTime = 0
		}
	})

	if st, err := v.MPState(); err != nil || st != MPStateRunnable {
		t.Errorf("MPState() of the BSP = %d, %v, want runnable", st, err)
	}

	// XSAVE: the VM's size, byte-exact round trip; too small a buffer refused.
	size := v.XSAVESize()
	if size < legacyXSAVESize || size != vm.XSAVESize() {
		t.Errorf("XSAVESize() = %d, VM says %d", size, vm.XSAVESize())
	}
	x1, err := v.XSAVE(size)
	if err != nil {
		t.Fatalf("XSAVE: %v", err)
	}
	if err := v.SetXSAVE(x1); err != nil {
		t.Fatalf("SetXSAVE: %v", err)
	}
	if x2, err := v.XSAVE(size); err != nil || !bytes.Equal(x1, x2) {
		t.Errorf("XSAVE → SetXSAVE → XSAVE differs (%v)", err)
	}
	if _, err := v.XSAVE(size - 1); err == nil {
		t.Errorf("XSAVE(%d) accepted a buffer smaller than the vcpu's area", size-1)
	}

	// MSRs: set distinctive values, read them back across chunk boundaries.
	set := []MSREntry{
		{Index: 0x174, Data: 0x10},                    // SYSENTER_CS
		{Index: 0x175, Data: 0x12345000},              // SYSENTER_ESP
		{Index: 0x176, Data: 0x81000000},              // SYSENTER_EIP (32 bits on AMD)
		{Index: 0xc0000081, Data: 0x0023001000000000}, // STAR
		{Index: 0xc0000082, Data: 0xffffffff81200000}, // LSTAR
		{Index: 0xc0000084, Data: 0x47700},            // SFMASK
		{Index: 0xc0000102, Data: 0xffff888000000000}, // KERNEL_GS_BASE
	}
	if err := v.SetMSRs(set); err != nil {
		t.Fatalf("SetMSRs: %v", err)
	}
	var indices []uint32
	for range 50 { // 350 entries: two KVM_GET_MSRS calls
		for _, e := range set {
			indices = append(indices, e.Index)
		}
	}
	read, err := v.MSRs(indices)
	if err != nil {
		t.Fatalf("MSRs(%d indices): %v", len(indices), err)
	}
	if len(read) != len(indices) {
		t.Fatalf("MSRs returned %d entries, want %d", len(read), len(indices))
	}
	for i, e := range read {
		if want := set[i%len(set)]; e != want {
			t.Errorf("MSR entry %d = %#x:%#x, want %#x:%#x", i, e.Index, e.Data, want.Index, want.Data)
			break
		}
	}
	if err := v.SetMSRs(read); err != nil {
		t.Errorf("SetMSRs(%d entries): %v", len(read), err)
	}

	// An MSR KVM does not know stops the call; the error names it.
	if b, _ := os.ReadFile("/sys/module/kvm/parameters/ignore_msrs"); !strings.HasPrefix(string(b), "Y") {
		partial, err := v.MSRs([]uint32{0x174, 0x175, 0xdeadbeef, 0x176})
		var me *MSRError
		if !errors.As(err, &me) || me.Index != 0xdeadbeef || me.Done != 2 || len(partial) != 2 {
			t.Errorf("MSRs with unknown msr = %d entries, %v; want 2 and an MSRError for 0xdeadbeef", len(partial), err)
		}
	}

	// Clock: set with flags 0 resumes from the given value.
	c1, err := vm.GetClock()
	if err != nil {
		t.Fatalf("GetClock: %v", err)
	}
	c1.Flags = 0
	if err := vm.SetClock(&c1); err != nil {
		t.Fatalf("SetClock: %v", err)
	}
	if c2, err := vm.GetClock(); err != nil || c2.Clock < c1.Clock || c2.Clock-c1.Clock > 1e9 {
		t.Errorf("GetClock after SetClock(%d) = %d, %v; want within 1 s after", c1.Clock, c2.Clock, err)
	}

	if v.HasTSCOffset() {
		off, err := v.TSCOffset()
		if err != nil {
			t.Errorf("TSCOffset: %v", err)
		} else if err := v.SetTSCOffset(off + 1000); err != nil {
			t.Errorf("SetTSCOffset: %v", err)
		} else if got, err := v.TSCOffset(); err != nil || got != off+1000 {
			t.Errorf("TSCOffset after SetTSCOffset(%d) = %d, %v", off+1000, got, err)
		}
	} else {
		t.Log("KVM_VCPU_TSC_OFFSET attribute absent: TSC offset check skipped")
	}

	if khz, err := v.TSCKHz(); err == nil {
		if err := v.SetTSCKHz(khz); err != nil {
			t.Errorf("SetTSCKHz(%d) (the current value): %v", khz, err)
		}
	} else if !errors.Is(err, unix.EIO) {
		t.Errorf("TSCKHz: %v", err)
	}
	if err := v.KVMClockCtrl(); err != nil && !errors.Is(err, unix.EINVAL) {
		t.Errorf("KVMClockCtrl: %v, want nil or EINVAL (kvmclock not enabled)", err)
	}

	// Errors name the ioctl.
	bad := XCRS{NrXCRS: 1, Flags: 1}
	err = v.SetXCRS(&bad)
	var ie *IoctlError
	if !errors.As(err, &ie) || ie.Ioctl != "KVM_SET_XCRS" || !strings.HasPrefix(err.Error(), "kvm: KVM_SET_XCRS: ") {
		t.Errorf("SetXCRS with flags 1 = %v, want a KVM_SET_XCRS error", err)
	}
}

func TestIRQAndEventFDs(t *testing.T) {
	s := openKVM(t)
	vm := newVM(t, s, true)
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatalf("eventfd: %v", err)
	}
	defer unix.Close(efd)

	if err := vm.IRQLine(4, true); err != nil {
		t.Errorf("IRQLine(4, high): %v", err)
	}
	if err := vm.IRQLine(4, false); err != nil {
		t.Errorf("IRQLine(4, low): %v", err)
	}
	if err := vm.IRQFD(efd, 5, false); err != nil {
		t.Errorf("IRQFD assign: %v", err)
	}
	if err := vm.IRQFD(efd, 5, true); err != nil {
		t.Errorf("IRQFD deassign: %v", err)
	}
	for _, ev := range []IOEvent{
		{FD: efd, Addr: 0xd0000050, Len: 4},
		{FD: efd, Addr: 0xd0000050, Len: 4, Match: true, DataMatch: 1},
		{FD: efd, Addr: 0x510, Len: 2, PIO: true},
	} {
		if err := vm.IOEventFD(ev, false); err != nil {
			t.Errorf("IOEventFD(%+v) assign: %v", ev, err)
			continue
		}
		if err := vm.IOEventFD(ev, true); err != nil {
			t.Errorf("IOEventFD(%+v) deassign: %v", ev, err)
		}
		if err := vm.IOEventFD(ev, true); err == nil {
			t.Errorf("IOEventFD(%+v) deassigned twice without error", ev)
		}
	}
	if err := vm.IOEventFD(IOEvent{FD: efd, Addr: 0x10000, Len: 3}, false); err == nil {
		t.Error("IOEventFD accepted length 3")
	}
}

// TestRun runs a few real-mode instructions: an OUT, an MMIO write outside
// every memory slot, then HLT, and checks each exit's decoding. The VM has no
// in-kernel irqchip, so HLT exits to userspace.
func TestRun(t *testing.T) {
	s := openKVM(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	vm := newVM(t, s, false)
	mem := guestMemory(t, 64<<10)
	copy(mem[0x1000:], []byte{
		0xb0, 0x41, // mov al, 'A'
		0xa2, 0x00, 0x20, // mov [0x2000], al      (RAM, page 2)
		0xba, 0xf8, 0x03, // mov dx, 0x3f8
		0xee,                   // out dx, al
		0x26, 0xa2, 0x00, 0x00, // mov es:[0], al   (ES base 0x10000: past the slot)
		0xf4, // hlt
	})
	if err := vm.SetUserMemoryRegion(0, MemLogDirtyPages, 0, mem); err != nil {
		t.Fatalf("SetUserMemoryRegion: %v", err)
	}
	if got := vm.DirtyLogWords(0); got != 1 {
		t.Errorf("DirtyLogWords(0) = %d for 16 pages, want 1", got)
	}
	v := newVCPU(t, vm)
	sregs, err := v.Sregs()
	if err != nil {
		t.Fatalf("Sregs: %v", err)
	}
	sregs.CS.Base, sregs.CS.Selector = 0, 0
	sregs.DS.Base, sregs.DS.Selector = 0, 0
	sregs.ES.Base, sregs.ES.Selector = 0x10000, 0x1000
	if err := v.SetSregs(&sregs); err != nil {
		t.Fatalf("SetSregs: %v", err)
	}
	if err := v.SetRegs(&Regs{RIP: 0x1000, RFLAGS: 2}); err != nil {
		t.Fatalf("SetRegs: %v", err)
	}

	next := func() uint32 {
		t.Helper()
		for range 100 {
			err := v.Run()
			if errors.Is(err, unix.EINTR) {
				continue // a Go runtime signal
			}
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			return v.ExitReason()
		}
		t.Fatal("Run: EINTR 100 times in a row")
		return 0
	}

	if r := next(); r != ExitIO {
		t.Fatalf("first exit = %d, want ExitIO", r)
	}
	io, err := v.IO()
	if err != nil || !io.Out || io.Size != 1 || io.Port != 0x3f8 || io.Count != 1 || string(io.Data) != "A" {
		t.Errorf("IO() = %+v, %v; want out 1 byte 'A' to 0x3f8", io, err)
	}
	if r := next(); r != ExitMMIO {
		t.Fatalf("second exit = %d, want ExitMMIO", r)
	}
	mmio, err := v.MMIO()
	if err != nil || mmio.Addr != 0x10000 || !mmio.IsWrite || string(mmio.Data) != "A" {
		t.Errorf("MMIO() = %+v, %v; want write 'A' to 0x10000", mmio, err)
	}
	if r := next(); r != ExitHLT {
		t.Fatalf("third exit = %d, want ExitHLT", r)
	}
	if mem[0x2000] != 'A' {
		t.Errorf("guest store to 0x2000 reads back %#x, want 'A'", mem[0x2000])
	}
	bitmap := make([]uint64, 1)
	if err := vm.GetDirtyLog(0, bitmap); err != nil {
		t.Fatalf("GetDirtyLog: %v", err)
	}
	if bitmap[0]&(1<<2) == 0 {
		t.Errorf("dirty bitmap %#x lacks page 2, which the guest wrote", bitmap[0])
	}
	bitmap[0] = 0
	if err := vm.GetDirtyLog(0, bitmap); err != nil {
		t.Fatalf("second GetDirtyLog: %v", err)
	}
	if bitmap[0]&(1<<2) != 0 {
		t.Errorf("page 2 still dirty after the log was read (%#x)", bitmap[0])
	}

	if n, _ := s.CheckExtension(CapImmediateExit); n == 0 {
		t.Log("KVM_CAP_IMMEDIATE_EXIT absent: immediate-exit check skipped")
		return
	}
	v.SetImmediateExit(true)
	if err := v.Run(); !errors.Is(err, unix.EINTR) {
		t.Errorf("Run with immediate_exit set = %v, want EINTR", err)
	}
	if !strings.Contains(errRunEINTR.Error(), "KVM_RUN") {
		t.Errorf("EINTR error %q does not name KVM_RUN", errRunEINTR)
	}
	v.SetImmediateExit(false)
	if v.ImmediateExit() {
		t.Error("ImmediateExit() still set after clearing")
	}
}

// TestSaveRestore saves a vCPU and its VM, restores both into a second VM,
// and saves again: everything but time must come back equal.
func TestSaveRestore(t *testing.T) {
	s := openKVM(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	supported, err := s.SupportedCPUID()
	if err != nil {
		t.Fatalf("SupportedCPUID: %v", err)
	}
	index, err := s.MSRIndexList()
	if err != nil {
		t.Fatalf("MSRIndexList: %v", err)
	}

	srcVM := newVM(t, s, true)
	src := newVCPU(t, srcVM)
	if err := src.SetCPUID2(supported); err != nil {
		t.Fatalf("SetCPUID2: %v", err)
	}
	msrs, err := src.ReadableMSRs(append(slices.Clone(index), 0xdeadbeef))
	if err != nil {
		t.Fatalf("ReadableMSRs: %v", err)
	}
	if slices.Contains(msrs, 0xdeadbeef) || len(msrs) == 0 {
		t.Errorf("ReadableMSRs kept an unknown msr or dropped all (%d of %d)", len(msrs), len(index)+1)
	}
	if err := src.SetRegs(&Regs{RAX: 1, RBX: 2, RIP: 0x1000, RFLAGS: 0x202}); err != nil {
		t.Fatalf("SetRegs: %v", err)
	}
	if err := src.SetMSRs([]MSREntry{{Index: 0xc0000082, Data: 0xffffffff81200000}}); err != nil {
		t.Fatalf("SetMSRs: %v", err)
	}
	if err := srcVM.IRQLine(3, true); err != nil { // leaves IRR state in the PIC and IOAPIC
		t.Fatalf("IRQLine: %v", err)
	}

	vst, err := srcVM.SaveState()
	if err != nil {
		t.Fatalf("VM SaveState: %v", err)
	}
	cst, err := src.SaveState(msrs)
	if err != nil {
		t.Fatalf("VCPU SaveState: %v", err)
	}

	dstVM := newVM(t, s, true)
	dst, err := dstVM.CreateVCPU(0)
	if err != nil {
		t.Fatalf("CreateVCPU on the second VM: %v", err)
	}
	defer dst.Close()
	var savedTSC uint64
	for _, e := range cst.MSRs {
		if e.Index == msrIA32TSC {
			savedTSC = e.Data
		}
	}
	plan, err := dstVM.RestoreClock(vst.Clock, 0, []uint64{savedTSC}, cst.TSCKHz)
	if err != nil {
		t.Fatalf("RestoreClock: %v", err)
	}
	if err := dst.RestoreState(&cst); err != nil {
		t.Fatalf("VCPU RestoreState: %v", err)
	}
	if err := plan.Apply(dst, 0, nil); err != nil {
		t.Fatalf("TSCPlan.Apply: %v", err)
	}
	if err := dstVM.RestoreState(&vst); err != nil {
		t.Fatalf("VM RestoreState: %v", err)
	}

	// The TSC moved on by what the kvmclock did (the save read the clock
	// a little before the TSC, hence the slack).
	_, clk, err := dstVM.SampleClock()
	if err != nil {
		t.Fatalf("SampleClock: %v", err)
	}
	ts, err := dst.SampleTSC()
	if err != nil {
		t.Fatalf("SampleTSC: %v", err)
	}
	khz, err := dst.TSCKHz()
	if err != nil {
		t.Fatalf("TSCKHz: %v", err)
	}
	gotTicks := int64(ts.At(clk.HostTSC) - savedTSC)
	wantTicks := nsToTicks(int64(clk.Clock-vst.Clock.Clock), khz)
	if d := gotTicks - wantTicks; d < -nsToTicks(10e6, khz) || d > nsToTicks(10e6, khz) {
		t.Errorf("after the restore the TSC moved %d ticks and the kvmclock %d ns (%d ticks at %d kHz): out of step by %d ticks",
			gotTicks, clk.Clock-vst.Clock.Clock, wantTicks, khz, d)
	}

	vst2, err := dstVM.SaveState()
	if err != nil {
		t.Fatalf("VM SaveState after restore: %v", err)
	}
	cst2, err := dst.SaveState(msrs)
	if err != nil {
		t.Fatalf("VCPU SaveState after restore: %v", err)
	}

	if cst2.Regs != cst.Regs || cst2.Sregs != cst.Sregs || cst2.MPState != cst.MPState ||
		cst2.XCRS != cst.XCRS || cst2.DebugRegs != cst.DebugRegs || cst2.LAPIC != cst.LAPIC ||
		cst2.Events != cst.Events || cst2.TSCKHz != cst.TSCKHz {
		t.Errorf("vcpu state differs after restore:\n got %+v\nwant %+v", cst2, cst)
	}
	if !bytes.Equal(cst2.XSAVE, cst.XSAVE) {
		t.Error("xsave differs after restore")
	}
	if len(cst2.CPUID) != len(cst.CPUID) {
		t.Errorf("cpuid has %d entries after restore, %d before", len(cst2.CPUID), len(cst.CPUID))
	}
	if len(cst2.MSRs) != len(cst.MSRs) {
		t.Fatalf("%d msrs after restore, %d before", len(cst2.MSRs), len(cst.MSRs))
	}
	for i, e := range cst.MSRs {
		switch e.Index {
		case msrIA32TSC, msrIA32TSCDeadline, 0x40000010, 0x40000020:
			continue // time moved on (the last two: Hyper-V VP runtime and reference counter, read-only)
		}
		if cst2.MSRs[i] != e {
			t.Errorf("msr %#x = %#x after restore, %#x before", e.Index, cst2.MSRs[i].Data, e.Data)
		}
	}
	if vst2.IRQChips != vst.IRQChips {
		t.Errorf("irqchips differ after restore:\n got %+v\nwant %+v", vst2.IRQChips, vst.IRQChips)
	}
	for i := range vst.PIT.Channels {
		vst.PIT.Channels[i].CountLoadTime, vst2.PIT.Channels[i].CountLoadTime = 0, 0
	}
	if vst2.PIT != vst.PIT {
		t.Errorf("pit differs after restore:\n got %+v\nwant %+v", vst2.PIT, vst.PIT)
	}
	if d := int64(vst2.Clock.Clock - vst.Clock.Clock); d < 0 || d > 1e9 {
		t.Errorf("kvmclock moved by %d ns across restore, want 0–1 s", d)
	}
}
