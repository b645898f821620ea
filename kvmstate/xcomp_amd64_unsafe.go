package kvmstate

import (
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// arch_prctl codes for dynamically enabled XSAVE features
// (arch/x86/include/uapi/asm/prctl.h).
const (
	archGetXCompSupp      = 0x1021
	archReqXCompGuestPerm = 0x1025

	// xfeatureXTileData is the XSAVE feature number of AMX tile data, the
	// only dynamically enabled feature so far; asking for it grants TILECFG too.
	xfeatureXTileData = 18
)

var xcompOnce sync.Once

// requestGuestXComp asks, once per process, for permission to give guests
// AMX state, if the host supports AMX. Failure is ignored: the guest then
// simply does not get AMX, and KVM leaves it out of the supported CPUID.
func requestGuestXComp() {
	xcompOnce.Do(func() {
		var supported uint64
		_, _, errno := unix.Syscall(unix.SYS_ARCH_PRCTL, archGetXCompSupp, uintptr(unsafe.Pointer(&supported)), 0)
		if errno != 0 || supported&(1<<xfeatureXTileData) == 0 {
			return
		}
		unix.Syscall(unix.SYS_ARCH_PRCTL, archReqXCompGuestPerm, xfeatureXTileData, 0)
	})
}
