package vm

import (
	"fmt"
	"sort"

	"github.com/chsnap/chsnap/devstate"
)

// portRange is a span of I/O ports served by one device.
type portRange struct {
	base, n uint16
	dev     devstate.PortIO
}

// portBus routes port I/O exits to devices. It is built before any vCPU runs
// and read-only afterwards, so lookups need no lock.
type portBus struct {
	ranges []portRange // sorted by base, non-overlapping
}

// add claims [base, base+n) for dev; overlapping claims are a programming error
// reported as an error.
func (b *portBus) add(base, n uint16, dev devstate.PortIO) error {
	if n == 0 || uint32(base)+uint32(n) > 1<<16 {
		return fmt.Errorf("vm: port range %#x+%d is invalid", base, n)
	}
	for _, r := range b.ranges {
		if base < r.base+r.n && r.base < base+n {
			return fmt.Errorf("vm: ports %#x+%d overlap %#x+%d", base, n, r.base, r.n)
		}
	}
	b.ranges = append(b.ranges, portRange{base, n, dev})
	sort.Slice(b.ranges, func(i, j int) bool { return b.ranges[i].base < b.ranges[j].base })
	return nil
}

// find returns the device serving port, or nil.
func (b *portBus) find(port uint16) devstate.PortIO {
	i := sort.Search(len(b.ranges), func(i int) bool { return b.ranges[i].base+b.ranges[i].n > port })
	if i < len(b.ranges) && b.ranges[i].base <= port {
		return b.ranges[i].dev
	}
	return nil
}

// read serves an IN; unclaimed ports read as all ones, as on a PC bus with
// nothing behind the port.
func (b *portBus) read(port uint16, data []byte) {
	if d := b.find(port); d != nil {
		d.ReadPort(port, data)
		return
	}
	for i := range data {
		data[i] = 0xFF
	}
}

// write serves an OUT; writes to unclaimed ports are dropped.
func (b *portBus) write(port uint16, data []byte) {
	if d := b.find(port); d != nil {
		d.WritePort(port, data)
	}
}
