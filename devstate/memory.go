package devstate

import (
	"fmt"
	"math"
)

// Memory is guest RAM as devices see it: copies in and out at guest-physical
// addresses. memdump.Memory satisfies it; tests use a byte slice.
//
// Every access is bounds-checked by the implementation: a range that
// overflows, starts below zero, or is not wholly inside one RAM region fails
// with an error and copies nothing. That check does not make guest numbers
// safe to use for anything else: a device must still bound every length it
// got from the guest before allocating a buffer of that size, and must copy a
// guest structure once into a local, check the copy, and act only on it.
//
// Implementations must be safe for concurrent use; the bytes themselves may
// change under a copy when the guest writes them at the same time.
type Memory interface {
	ReadAt(p []byte, gpa int64) (int, error)
	WriteAt(p []byte, gpa int64) (int, error)
}

// memorySlicer is the optional method (memdump.Memory has it) that lets
// checkRange validate a whole range without copying it.
type memorySlicer interface {
	Slice(gpa, n uint64) ([]byte, error)
}

// checkRange reports whether [gpa, gpa+n) is guest RAM. With a Memory that
// can slice, the whole range is checked; otherwise its first and last bytes
// are probed, and a hole in between is caught by the access itself later.
// n == 0 checks that gpa is a valid address.
func checkRange(mem Memory, gpa, n uint64) error {
	var b [1]byte
	return checkRangeBuf(mem, gpa, n, b[:])
}

// checkRangeBuf is checkRange probing through the caller's one-byte buffer,
// which saves an allocation per call.
func checkRangeBuf(mem Memory, gpa, n uint64, b []byte) error {
	end := gpa + n
	if end < gpa || end > math.MaxInt64 {
		return fmt.Errorf("range %#x+%#x overflows", gpa, n)
	}
	if s, ok := mem.(memorySlicer); ok {
		if _, err := s.Slice(gpa, n); err != nil {
			return err
		}
		return nil
	}
	if _, err := mem.ReadAt(b, int64(gpa)); err != nil {
		return err
	}
	if n > 1 {
		if _, err := mem.ReadAt(b, int64(end-1)); err != nil {
			return err
		}
	}
	return nil
}
