package devstate

// PortIO is a device on the x86 I/O-port bus. Ports are absolute port
// numbers; len(data) is the access width (1, 2 or 4). ReadPort fills data.
// Implementations must not block and must accept any port and width the
// vm routes to them, answering unknown registers with all-ones reads and
// ignored writes rather than failing.
type PortIO interface {
	ReadPort(port uint16, data []byte)
	WritePort(port uint16, data []byte)
}

// MMIO is a device in the guest-physical MMIO space. addr is the absolute
// guest-physical address; len(data) is the access width (1 to 8).
type MMIO interface {
	ReadMMIO(addr uint64, data []byte)
	WriteMMIO(addr uint64, data []byte)
}

// IRQ is one device interrupt line into the in-kernel irqchip. Set drives the
// line's level; an edge-triggered pin sees each low-to-high change as one
// interrupt. Implementations must be safe for concurrent use.
type IRQ interface {
	Set(level bool) error
}
