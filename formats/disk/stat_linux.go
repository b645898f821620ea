package disk

import (
	"fmt"
	"os"
	"syscall"
)

// devInode returns st_dev and st_ino of f.
func devInode(f *os.File) (dev, ino uint64, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, fmt.Errorf("stat: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, fmt.Errorf("stat: no device and inode for %s", f.Name())
	}
	return uint64(st.Dev), st.Ino, nil
}
