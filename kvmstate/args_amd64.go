package kvmstate

// Fixed-capacity mirrors of the x86 flexible-array ioctl arguments. The
// kernel structs end in a flexible array; the request number encodes only the
// header's size, and the header says how many entries follow. Each buffer is
// heap-allocated by its caller and kept alive across the call.

const (
	// maxMSRsPerCall is the most entries one KVM_GET_MSRS/KVM_SET_MSRS takes:
	// the kernel rejects nmsrs >= MAX_IO_MSRS (256) with E2BIG (msr_io in
	// arch/x86/kvm/x86.c).
	maxMSRsPerCall = 255

	// maxCPUIDEntries is KVM_MAX_CPUID_ENTRIES: no CPUID ioctl takes or
	// returns more.
	maxCPUIDEntries = 256

	// maxMSRIndices bounds KVM_GET_MSR_INDEX_LIST; kernels list a few
	// hundred MSRs at most.
	maxMSRIndices = 1024
)

// msrsHeader mirrors struct kvm_msrs without its entries.
type msrsHeader struct {
	nmsrs uint32
	_     uint32
}

// msrsBuf is struct kvm_msrs with room for maxMSRsPerCall entries.
type msrsBuf struct {
	msrsHeader
	entries [maxMSRsPerCall]MSREntry
}

// cpuid2Header mirrors struct kvm_cpuid2 without its entries.
type cpuid2Header struct {
	nent uint32
	_    uint32
}

// cpuid2Buf is struct kvm_cpuid2 with room for maxCPUIDEntries entries.
type cpuid2Buf struct {
	cpuid2Header
	entries [maxCPUIDEntries]CPUIDEntry
}

// msrListHeader mirrors struct kvm_msr_list without its indices.
type msrListHeader struct {
	nmsrs uint32
}

// msrListBuf is struct kvm_msr_list with room for maxMSRIndices indices.
type msrListBuf struct {
	msrListHeader
	indices [maxMSRIndices]uint32
}
