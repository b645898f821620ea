package vm

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// growFDTable makes room for at least n more file descriptors in this
// process's fd table in one step, before the vCPU fds are created. The
// kernel grows the table by doubling it when it fills, and every growth
// waits for an RCU grace period while other threads run; with many vCPUs
// created in parallel that wait repeats. Cloud Hypervisor does the same at
// start-up (a dup to a high fd). It raises the RLIMIT_NOFILE soft limit
// towards the hard one if needed, duplicates a descriptor to the lowest free
// number at or above the target (never replacing an open one) and closes
// it. It is best effort: the error only explains why it could not.
func growFDTable(n int) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("grow fd table: getrlimit: %w", err)
	}
	want := uint64(n) + 256
	if lim.Cur < want && lim.Max > lim.Cur {
		lim.Cur = min(want, lim.Max)
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("grow fd table: raise RLIMIT_NOFILE to %d: %w", lim.Cur, err)
		}
	}
	target := min(want, lim.Cur) - 1
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("grow fd table: %w", err)
	}
	defer unix.Close(fd)
	high, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, int(target))
	if err != nil {
		return fmt.Errorf("grow fd table to %d entries: %w", target+1, err)
	}
	return unix.Close(high)
}
