package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// readable reports whether f was opened for reading.
func readable(f *os.File) bool {
	fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		return false
	}
	mode := fl & unix.O_ACCMODE
	return mode == unix.O_RDONLY || mode == unix.O_RDWR
}
