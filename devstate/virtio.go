package devstate

// Virtio device IDs (virtio 1.2 §5), the values of the MMIO DeviceID register.
const (
	// VirtioIDNet is a network card (VIRTIO_ID_NET).
	VirtioIDNet uint32 = 1
	// VirtioIDBlock is a block device (VIRTIO_ID_BLOCK).
	VirtioIDBlock uint32 = 2
)

// Feature bits shared by all virtio devices (virtio 1.2 §6, "Reserved
// Feature Bits"). Bits 0–23 belong to the device type and are passed through
// by the transport; of the reserved bits 24–40 the transport accepts only the
// ones below in a device's offer.
const (
	// FeatureIndirectDesc lets the driver hand over one table of
	// descriptors through a single VIRTQ_DESC_F_INDIRECT descriptor
	// (VIRTIO_RING_F_INDIRECT_DESC, bit 28).
	FeatureIndirectDesc uint64 = 1 << 28
	// FeatureRingEventIdx enables the used_event and avail_event fields
	// that suppress interrupts and notifications (VIRTIO_RING_F_EVENT_IDX,
	// bit 29).
	FeatureRingEventIdx uint64 = 1 << 29
	// FeatureVersion1 marks a virtio 1.x (non-legacy) device
	// (VIRTIO_F_VERSION_1, bit 32). The MMIO version 2 transport requires
	// every device to offer it and the driver to accept it.
	FeatureVersion1 uint64 = 1 << 32
	// FeatureAccessPlatform (VIRTIO_F_ACCESS_PLATFORM, bit 33) says the
	// device sits behind an IOMMU. chsnap has none and never offers it.
	FeatureAccessPlatform uint64 = 1 << 33
	// FeatureRingPacked (VIRTIO_F_RING_PACKED, bit 34) selects packed
	// virtqueues. chsnap implements split virtqueues only and never offers
	// it.
	FeatureRingPacked uint64 = 1 << 34

	// featuresDeviceMask covers the device-type bits 0–23.
	featuresDeviceMask uint64 = 1<<24 - 1
	// featuresTransport is every non-device bit a device may offer.
	featuresTransport = FeatureIndirectDesc | FeatureRingEventIdx | FeatureVersion1
)

// Device status bits (virtio 1.2 §2.1), the values of the MMIO Status
// register.
const (
	// StatusAcknowledge: the guest has noticed the device (ACKNOWLEDGE).
	StatusAcknowledge uint32 = 1
	// StatusDriver: the guest has a driver for it (DRIVER).
	StatusDriver uint32 = 2
	// StatusDriverOK: the driver is ready and the device is live
	// (DRIVER_OK).
	StatusDriverOK uint32 = 4
	// StatusFeaturesOK: the device accepted the driver's features
	// (FEATURES_OK).
	StatusFeaturesOK uint32 = 8
	// StatusDeviceNeedsReset: the device hit an error it cannot recover
	// from without a reset (DEVICE_NEEDS_RESET).
	StatusDeviceNeedsReset uint32 = 64
	// StatusFailed: the driver gave up on the device (FAILED).
	StatusFailed uint32 = 128

	statusMask = StatusAcknowledge | StatusDriver | StatusDriverOK | StatusFeaturesOK |
		StatusDeviceNeedsReset | StatusFailed
)

// MaxQueueSize is the largest split virtqueue virtio allows (virtio 1.2
// §2.7: "The maximum Queue Size value is 32768").
const MaxQueueSize = 32768

// VirtioDevice is a virtio device model (net, blk, …) as a transport drives
// it. The transport owns the common registers, feature negotiation, the
// queues' configuration and the interrupt line; the device owns its config
// space and, once activated, the processing of its queues.
//
// DeviceID, Features and QueueMaxSizes must return constant values. The
// other methods may be called from any vCPU thread; the transport never
// calls two of them at once for one device. While calling them it holds only
// its register lock, which the VirtioTransport methods never take, so a
// device may call SignalUsed, SignalConfig and Fail from inside them and
// from its own goroutines, and Reset may wait for those goroutines.
type VirtioDevice interface {
	// DeviceID is the virtio device ID (VirtioIDNet, VirtioIDBlock, …).
	DeviceID() uint32
	// Features is the set of feature bits the device offers. It must
	// include FeatureVersion1 and no reserved bit outside FeatureIndirectDesc,
	// FeatureRingEventIdx and FeatureVersion1.
	Features() uint64
	// QueueMaxSizes gives the number of queues (its length, at least 1) and
	// each one's largest size: a power of two from 1 to MaxQueueSize.
	QueueMaxSizes() []uint16
	// ReadConfig fills data from the device config space at byte offset
	// off. data arrives zeroed, 1 to 8 bytes long, and off may lie past
	// the config space: bytes the device does not have stay zero.
	ReadConfig(off uint32, data []byte)
	// WriteConfig stores data into the config space at byte offset off; a
	// device ignores writes to fields that are read-only or out of range.
	WriteConfig(off uint32, data []byte)
	// Activate makes the device live once the driver sets DRIVER_OK, with
	// the queues the driver configured (unready queues included, Ready
	// false) and the features it accepted. An error leaves the device
	// inactive, and the transport sets DEVICE_NEEDS_RESET.
	Activate(ctx VirtioContext) error
	// Notify tells an active device that the driver put buffers in queue
	// (an index into ctx.Queues). It is only called for a ready queue of an
	// active device, and it must not block for long: a vCPU waits on it.
	Notify(queue int)
	// Reset returns the device to its initial state when the driver writes
	// 0 to Status. After Reset returns the device must no longer touch the
	// queues or guest memory, nor call its VirtioTransport. It is called
	// only on an active device.
	Reset()
}

// VirtioContext is what an activated device works with. The device may keep
// it until Reset.
type VirtioContext struct {
	// Mem is guest RAM.
	Mem Memory
	// Queues are the device's virtqueues, one per QueueMaxSizes entry. The
	// device owns the ready ones until Reset; unready ones must be left
	// alone.
	Queues []*Queue
	// Features is the set of features the driver accepted (a subset of
	// the device's offer, always with FeatureVersion1).
	Features uint64
	// Transport raises interrupts and reports device failure.
	Transport VirtioTransport
}

// VirtioTransport is the transport side a live device calls. Its methods
// are safe for concurrent use and may be called from device goroutines.
type VirtioTransport interface {
	// SignalUsed tells the driver that queue has new used buffers, unless
	// the driver suppressed that interrupt (VIRTQ_AVAIL_F_NO_INTERRUPT, or
	// used_event with FeatureRingEventIdx). Call it after a batch of Push
	// calls, from the goroutine that pushed. The error is the interrupt
	// line's or the ring's; the device may treat it as fatal.
	SignalUsed(queue int) error
	// SignalConfig bumps ConfigGeneration and raises a configuration
	// change interrupt. Call it after every config space change made on the
	// device's own initiative.
	SignalConfig() error
	// Fail sets DEVICE_NEEDS_RESET after a device error (usually a
	// malformed queue from the guest) and tells the driver with a
	// configuration change interrupt; err is kept for Err. The device
	// should stop processing until Reset.
	Fail(err error)
}
