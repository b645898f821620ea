// Package memdump owns guest RAM: the memfd-backed mapping that KVM and the
// devices share, checked access by guest-physical address, and (in later
// work) dumping it to and loading it from the snapshot archive.
//
// Guest-physical layout of RAM (the hole below 4 GiB is for MMIO):
//
//	GPA 0            .. min(size, 3 GiB)   → memfd offset 0
//	GPA 4 GiB        .. 4 GiB + rest        → memfd offset 3 GiB
//
// Every access goes through Memory's checked methods: an address range that
// overflows, runs past the end of RAM or spans the MMIO hole is an error,
// never a panic. Guest-supplied addresses must only ever reach RAM this way.
package memdump
