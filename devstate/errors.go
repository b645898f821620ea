package devstate

import "errors"

// ErrInvalidState is wrapped by every Restore… error caused by a field of the
// saved state that is out of range or inconsistent with another field.
var ErrInvalidState = errors.New("devstate: invalid device state")

// ErrSerialClosed is returned by (*Serial).Write once the serial port has been
// closed, including to writers that were blocked waiting for FIFO room.
var ErrSerialClosed = errors.New("devstate: serial port closed")
