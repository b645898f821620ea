package fdmap

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// ErrBadFD is returned for a descriptor that cannot be adopted: not a number,
// one of the standard streams, not open, or already taken.
var ErrBadFD = errors.New("fdmap: bad file descriptor")

// ParseFD parses a descriptor number given by the user (as in --serial fd=N).
// It rejects non-numbers and the standard streams 0–2, which chsnap never
// adopts because closing them would break its own I/O.
func ParseFD(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: %q is not a descriptor number", ErrBadFD, s)
	}
	if n <= 2 {
		return 0, fmt.Errorf("%w: %d is a standard stream (0-2); pass another descriptor", ErrBadFD, n)
	}
	return n, nil
}

// Adopt takes ownership of the inherited descriptor fd, after checking that
// it is open. It marks the descriptor close-on-exec so that it never leaks into
// children, and returns an *os.File that is now its only owner: the caller
// closes that file exactly once, and must not close fd by number.
//
// Adopt fails without taking ownership when fd is not open or is 0–2.
func Adopt(fd int, name string) (*os.File, error) {
	if fd <= 2 {
		return nil, fmt.Errorf("%w: %d is a standard stream (0-2)", ErrBadFD, fd)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
		return nil, fmt.Errorf("%w: fd %d for %s is not open: %w", ErrBadFD, fd, name, err)
	}
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), name), nil
}
