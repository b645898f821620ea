package devstate

import (
	"errors"
	"slices"
	"sync"
)

// fakeIRQ records every level driven onto it.
type fakeIRQ struct {
	mu     sync.Mutex
	levels []bool
	fail   error // returned by Set when non-nil (and the level not recorded)
}

func (f *fakeIRQ) Set(level bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.levels = append(f.levels, level)
	return nil
}

// seq returns the levels driven so far and forgets them.
func (f *fakeIRQ) seq() []bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := slices.Clone(f.levels)
	f.levels = f.levels[:0]
	return s
}

// level returns the last level driven (false if none).
func (f *fakeIRQ) level() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.levels) > 0 && f.levels[len(f.levels)-1]
}

// fakeOut collects output bytes, failing each write while fail is set.
type fakeOut struct {
	mu   sync.Mutex
	buf  []byte
	fail error
}

func (f *fakeOut) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return 0, f.fail
	}
	f.buf = append(f.buf, p...)
	return len(p), nil
}

func (f *fakeOut) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return string(f.buf)
}

var errFake = errors.New("fake failure")

// portIn reads one byte from port.
func portIn(d PortIO, port uint16) uint8 {
	var b [1]byte
	d.ReadPort(port, b[:])
	return b[0]
}

// portOut writes one byte to port.
func portOut(d PortIO, port uint16, v uint8) {
	d.WritePort(port, []byte{v})
}
