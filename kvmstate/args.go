package kvmstate

// Argument structs of VM ioctls that are only passed in, never exposed.

// userspaceMemoryRegion mirrors struct kvm_userspace_memory_region.
type userspaceMemoryRegion struct {
	slot          uint32
	flags         uint32
	guestPhysAddr uint64
	memorySize    uint64
	userspaceAddr uint64
}

// irqLevel mirrors struct kvm_irq_level (the irq/status union as irq).
type irqLevel struct {
	irq   uint32
	level uint32
}

// irqfd mirrors struct kvm_irqfd.
type irqfd struct {
	fd         uint32
	gsi        uint32
	flags      uint32
	resamplefd uint32
	_          [16]byte
}

// ioeventfd mirrors struct kvm_ioeventfd.
type ioeventfd struct {
	datamatch uint64
	addr      uint64
	len       uint32
	fd        int32
	flags     uint32
	_         [36]byte
}

// pitConfig mirrors struct kvm_pit_config.
type pitConfig struct {
	flags uint32
	_     [15]uint32
}
