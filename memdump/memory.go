package memdump

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Layout constants for guest RAM.
const (
	// LowRAMLimit is the guest-physical address where RAM below 4 GiB stops
	// and the 32-bit MMIO hole (devices, IOAPIC, LAPIC) begins.
	LowRAMLimit = 0xC000_0000
	// HighRAMBase is where RAM above the hole resumes.
	HighRAMBase = 1 << 32
	// PageSize is the guest page size used for alignment checks.
	PageSize = 4096
)

// ErrRange is returned for an access outside guest RAM.
var ErrRange = errors.New("memdump: guest address out of range")

// Region is one contiguous stretch of guest RAM.
type Region struct {
	GPA    uint64 // first guest-physical address
	Size   uint64 // bytes
	Offset uint64 // offset of GPA in the backing memfd and in Bytes()
}

// Memory is guest RAM backed by a memfd and mapped outside the Go heap.
//
// Memory owns the memfd and the mapping; Close releases both, once.
// Reads and writes may run concurrently from any goroutine: Memory adds no
// locking of its own, as the guest writes the same bytes concurrently anyway.
type Memory struct {
	file    *os.File
	data    []byte
	regions []Region
}

// RegionsFor returns the guest-physical regions that size bytes of RAM occupy.
func RegionsFor(size uint64) []Region {
	if size <= LowRAMLimit {
		return []Region{{GPA: 0, Size: size, Offset: 0}}
	}
	return []Region{
		{GPA: 0, Size: LowRAMLimit, Offset: 0},
		{GPA: HighRAMBase, Size: size - LowRAMLimit, Offset: LowRAMLimit},
	}
}

// New creates size bytes of zeroed guest RAM in a fresh memfd named name.
// size must be a non-zero multiple of PageSize.
func New(name string, size uint64) (*Memory, error) {
	if size == 0 || size%PageSize != 0 {
		return nil, fmt.Errorf("memdump: memory size %d is not a non-zero multiple of %d", size, PageSize)
	}
	if size > 1<<46 {
		return nil, fmt.Errorf("memdump: memory size %d is larger than 64 TiB", size)
	}
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memdump: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:"+name)
	if err := f.Truncate(int64(size)); err != nil {
		f.Close()
		return nil, fmt.Errorf("memdump: size guest memory to %d bytes: %w", size, err)
	}
	data, err := mapAligned(fd, size)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("memdump: mmap %d bytes of guest memory: %w", size, err)
	}
	return &Memory{file: f, data: data, regions: RegionsFor(size)}, nil
}

// Size returns the number of bytes of guest RAM.
func (m *Memory) Size() uint64 { return uint64(len(m.data)) }

// Regions returns the guest-physical regions of RAM, lowest first.
func (m *Memory) Regions() []Region { return append([]Region(nil), m.regions...) }

// File returns the memfd backing guest RAM. Memory keeps ownership of it.
func (m *Memory) File() *os.File { return m.file }

// Bytes returns the whole mapping, indexed by memfd offset (see Region).
// It is for KVM slot registration and bulk dumping only: device code must use
// the checked methods with guest-physical addresses.
func (m *Memory) Bytes() []byte { return m.data }

// offset translates [gpa, gpa+n) to a mapping offset, or fails if the range
// is not wholly inside one RAM region.
func (m *Memory) offset(gpa, n uint64) (uint64, error) {
	end := gpa + n
	if end < gpa {
		return 0, fmt.Errorf("%w: %#x+%#x overflows", ErrRange, gpa, n)
	}
	for _, r := range m.regions {
		if gpa >= r.GPA && end <= r.GPA+r.Size {
			return r.Offset + (gpa - r.GPA), nil
		}
	}
	return 0, fmt.Errorf("%w: [%#x, %#x) is not inside guest RAM", ErrRange, gpa, end)
}

// Slice returns the n bytes of RAM at gpa, aliasing guest memory.
func (m *Memory) Slice(gpa, n uint64) ([]byte, error) {
	off, err := m.offset(gpa, n)
	if err != nil {
		return nil, err
	}
	return m.data[off : off+n : off+n], nil
}

// ReadAt copies len(p) bytes of RAM at guest-physical address gpa into p.
func (m *Memory) ReadAt(p []byte, gpa int64) (int, error) {
	if gpa < 0 {
		return 0, fmt.Errorf("%w: negative address %d", ErrRange, gpa)
	}
	s, err := m.Slice(uint64(gpa), uint64(len(p)))
	if err != nil {
		return 0, err
	}
	return copy(p, s), nil
}

// WriteAt copies p into RAM at guest-physical address gpa.
func (m *Memory) WriteAt(p []byte, gpa int64) (int, error) {
	if gpa < 0 {
		return 0, fmt.Errorf("%w: negative address %d", ErrRange, gpa)
	}
	s, err := m.Slice(uint64(gpa), uint64(len(p)))
	if err != nil {
		return 0, err
	}
	return copy(s, p), nil
}

// hugePage is the size of a transparent huge page on x86-64.
const hugePage = 2 << 20

// mapAligned maps the memfd at a 2 MiB-aligned address and asks for
// transparent huge pages on it (MADV_HUGEPAGE). Guest RAM touched a page at a
// time costs one fault — and, under KVM, one nested page-table fill — per
// 4 KiB page otherwise; with huge pages it is one per 2 MiB. The kernel
// honours the advice for a memfd when
// /sys/kernel/mm/transparent_hugepage/shmem_enabled is "advise", "always" or
// "within_size"; with "never" (a common default) the mapping simply stays at
// 4 KiB pages. Alignment matters because a huge page can only back a
// 2 MiB-aligned virtual range.
func mapAligned(fd int, size uint64) ([]byte, error) {
	// Reserve size + 2 MiB of address space, then map the memfd over the
	// first aligned address inside it and give back the slack.
	reserve, err := unix.Mmap(-1, 0, int(size+hugePage), unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	data, err := mapFixedAligned(reserve, fd, size)
	if err != nil {
		unix.Munmap(reserve)
		return nil, err
	}
	// The reservation's pages now belong to data or are unmapped; x/sys's
	// record of it is stale but never used again.
	// Advice, not a requirement: EINVAL on kernels without THP.
	_ = unix.Madvise(data, unix.MADV_HUGEPAGE)
	return data, nil
}

// Close unmaps guest RAM and closes the memfd. A second call returns an error.
func (m *Memory) Close() error {
	if m.data == nil {
		return errors.New("memdump: memory already closed")
	}
	err := unmap(m.data)
	m.data = nil
	if cerr := m.file.Close(); err == nil {
		err = cerr
	}
	return err
}
