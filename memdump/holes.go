package memdump

import (
	"errors"

	"golang.org/x/sys/unix"
)

// holeScanner finds the data runs of the memfd for a sequence of ranges at
// increasing offsets. It remembers the last run lseek(SEEK_DATA/SEEK_HOLE)
// returned: on shmem, SEEK_HOLE walks the page cache up to the next hole, so
// asking afresh for every chunk of a fully written memory would cost time
// quadratic in its size; with the cursor the whole memory is walked once.
type holeScanner struct {
	m *Memory
	// [dataStart, dataEnd) is the last run found, and there is no data
	// between the offset it was asked for and dataStart.
	dataStart, dataEnd int64
	// noDataFrom >= 0 means SEEK_DATA found no data at or after it.
	noDataFrom int64
	// last is the greatest offset asked about; the cache is valid only for
	// offsets at or after it.
	last int64
}

func newHoleScanner(m *Memory) *holeScanner {
	return &holeScanner{m: m, noDataFrom: -1}
}

// runs appends to dst the parts of [off, off+n) that may hold data, as
// half-open [start, end) offset pairs in ascending order. Everything else in
// the range is a hole: never written, so it reads as zero, and reading it
// through the mapping would allocate a page for nothing. If the file system
// cannot answer (no SEEK_DATA), the range is one run. Calls with
// non-decreasing off reuse what earlier calls found.
func (h *holeScanner) runs(off, n int64, dst [][2]int64) [][2]int64 {
	if off < h.last {
		*h = holeScanner{m: h.m, noDataFrom: -1}
	}
	h.last = off
	end := off + n
	for pos := off; pos < end; {
		if h.noDataFrom >= 0 && pos >= h.noDataFrom {
			break
		}
		if h.dataEnd <= pos {
			data, err := h.m.seek(pos, unix.SEEK_DATA)
			if errors.Is(err, unix.ENXIO) {
				h.noDataFrom = pos
				break
			}
			if err != nil || data < pos {
				return append(dst, [2]int64{pos, end})
			}
			hole, err := h.m.seek(data, unix.SEEK_HOLE)
			if err != nil || hole <= data {
				return append(dst, [2]int64{data, end})
			}
			h.dataStart, h.dataEnd = data, hole
		}
		if h.dataStart >= end {
			break
		}
		s, e := max(h.dataStart, pos), min(h.dataEnd, end)
		dst = append(dst, [2]int64{s, e})
		pos = e
	}
	return dst
}

// seek runs lseek on the memfd and returns the resulting offset. It leaves
// the file offset moved, which nothing else uses: RAM is accessed through
// the mapping only.
func (m *Memory) seek(off int64, whence int) (int64, error) {
	rc, err := m.file.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int64
	var serr error
	if err := rc.Control(func(fd uintptr) { n, serr = unix.Seek(int(fd), off, whence) }); err != nil {
		return 0, err
	}
	return n, serr
}

// populate asks the kernel to allocate and map the pages of b, a page-aligned
// part of the mapping, in one call (MADV_POPULATE_WRITE, Linux 5.14) rather
// than one page fault per page as they are first written: restoring into a
// fresh memfd is bound by those faults. It is only a hint; errors (an older
// kernel) are ignored and the writes then fault as usual.
func populate(b []byte) {
	if len(b) > 0 {
		_ = unix.Madvise(b, unix.MADV_POPULATE_WRITE)
	}
}
