package memdump

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// mapFixedAligned maps size bytes of fd with MAP_FIXED at the first 2 MiB
// boundary inside reserve (a PROT_NONE reservation size+hugePage long) and
// unmaps the reservation's unused head and tail. The returned mapping must be
// released with unmap, not unix.Munmap (which only knows its own mappings).
func mapFixedAligned(reserve []byte, fd int, size uint64) ([]byte, error) {
	off := int((hugePage - uintptr(unsafe.Pointer(&reserve[0]))%hugePage) % hugePage)
	p, err := unix.MmapPtr(fd, 0, unsafe.Pointer(&reserve[off]), uintptr(size),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_FIXED|unix.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	if off > 0 {
		unix.MunmapPtr(unsafe.Pointer(&reserve[0]), uintptr(off))
	}
	if tail := len(reserve) - off - int(size); tail > 0 {
		unix.MunmapPtr(unsafe.Pointer(&reserve[off+int(size)]), uintptr(tail))
	}
	return unsafe.Slice((*byte)(p), size), nil
}

// unmap releases a mapping made by mapFixedAligned.
func unmap(b []byte) error {
	return unix.MunmapPtr(unsafe.Pointer(&b[0]), uintptr(len(b)))
}
