package memdump

import (
	"errors"

	"golang.org/x/sys/unix"
)

// dataRuns reports the parts of the memfd range [off, off+n) that may hold
// data, as half-open [start, end) offset pairs in ascending order, appended
// to runs. Everything else in the range is a hole: never written, so it
// reads as zero, and reading it through the mapping would allocate a page
// for nothing. If the file system cannot answer (no SEEK_DATA), the whole
// range is one run.
func (m *Memory) dataRuns(off, n int64, runs [][2]int64) [][2]int64 {
	end := off + n
	for pos := off; pos < end; {
		data, err := m.seek(pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) || (err == nil && data >= end) {
			break // only holes from pos to the end of the range
		}
		if err != nil || data < pos {
			return append(runs, [2]int64{pos, end})
		}
		hole, err := m.seek(data, unix.SEEK_HOLE)
		if err != nil || hole <= data {
			return append(runs, [2]int64{data, end})
		}
		hole = min(hole, end)
		runs = append(runs, [2]int64{data, hole})
		pos = hole
	}
	return runs
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
