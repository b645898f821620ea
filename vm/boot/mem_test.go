package boot

import (
	"fmt"
)

// sparseMem is guest RAM for tests: pages allocated on first write, laid out
// like memdump (RAM at [0, min(size, 3 GiB)) and the rest from 4 GiB), so
// multi-GiB guests cost only the pages touched.
type sparseMem struct {
	size  uint64
	pages map[uint64]*[4096]byte
}

func newSparseMem(size uint64) *sparseMem {
	return &sparseMem{size: size, pages: map[uint64]*[4096]byte{}}
}

func (m *sparseMem) check(gpa int64, n int) error {
	if gpa < 0 {
		return fmt.Errorf("negative address %d", gpa)
	}
	start, end := uint64(gpa), uint64(gpa)+uint64(n)
	low := min(m.size, LowRAMLimit)
	if end <= low {
		return nil
	}
	if m.size > LowRAMLimit && start >= HighRAMBase && end <= HighRAMBase+m.size-LowRAMLimit {
		return nil
	}
	return fmt.Errorf("[%#x, %#x) is not inside guest RAM", start, end)
}

func (m *sparseMem) WriteAt(p []byte, gpa int64) (int, error) {
	if err := m.check(gpa, len(p)); err != nil {
		return 0, err
	}
	for i := 0; i < len(p); {
		a := uint64(gpa) + uint64(i)
		pg := m.pages[a>>12]
		if pg == nil {
			pg = new([4096]byte)
			m.pages[a>>12] = pg
		}
		i += copy(pg[a&0xFFF:], p[i:])
	}
	return len(p), nil
}

func (m *sparseMem) ReadAt(p []byte, gpa int64) (int, error) {
	if err := m.check(gpa, len(p)); err != nil {
		return 0, err
	}
	for i := 0; i < len(p); {
		a := uint64(gpa) + uint64(i)
		n := min(len(p)-i, int(4096-a&0xFFF))
		if pg := m.pages[a>>12]; pg != nil {
			copy(p[i:i+n], pg[a&0xFFF:])
		} else {
			clear(p[i : i+n])
		}
		i += n
	}
	return len(p), nil
}

// read returns n bytes at gpa or fails the caller's test via panic-free error.
func (m *sparseMem) read(gpa uint64, n int) []byte {
	b := make([]byte, n)
	if _, err := m.ReadAt(b, int64(gpa)); err != nil {
		return nil
	}
	return b
}
