package kvmstate

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// SupportedCPUID returns KVM_GET_SUPPORTED_CPUID: the CPUID leaves this host
// and KVM can offer a guest, before any shaping. It first requests AMX guest
// permission (arch_prctl ARCH_REQ_XCOMP_GUEST_PERM) where the host has AMX,
// because without it kernels before 6.4 report TILECFG without TILEDATA and
// the guest faults at boot; a refused request is ignored.
func (s *System) SupportedCPUID() ([]CPUIDEntry, error) {
	requestGuestXComp()
	buf := new(cpuid2Buf)
	buf.nent = maxCPUIDEntries
	if _, err := ioctlPtr(s.fd, kvmGetSupportedCPUID, buf); err != nil {
		if errors.Is(err, unix.E2BIG) {
			return nil, fmt.Errorf("%w (more than %d entries)", err, maxCPUIDEntries)
		}
		return nil, err
	}
	n := min(int(buf.nent), maxCPUIDEntries)
	return append([]CPUIDEntry(nil), buf.entries[:n]...), nil
}

// MSRIndexList returns KVM_GET_MSR_INDEX_LIST: the MSRs KVM can save and
// restore on this host. It omits the MTRRs and, where KVM_CAP_MCE is present,
// the MCE bank MSRs; callers that save MSRs add those themselves.
func (s *System) MSRIndexList() ([]uint32, error) {
	buf := new(msrListBuf)
	buf.nmsrs = maxMSRIndices
	if _, err := ioctlPtr(s.fd, kvmGetMSRIndexList, buf); err != nil {
		if errors.Is(err, unix.E2BIG) {
			return nil, fmt.Errorf("%w (kernel lists %d msrs, limit %d)", err, buf.nmsrs, maxMSRIndices)
		}
		return nil, err
	}
	n := min(int(buf.nmsrs), maxMSRIndices)
	return append([]uint32(nil), buf.indices[:n]...), nil
}
