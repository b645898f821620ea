// Package memdump owns guest RAM: the memfd-backed mapping that KVM and the
// devices share, checked access by guest-physical address, and dumping it to
// and loading it from the snapshot archive.
//
// Guest-physical layout of RAM (the hole below 4 GiB is for MMIO):
//
//	GPA 0            .. min(size, 3 GiB)   → memfd offset 0
//	GPA 4 GiB        .. 4 GiB + rest        → memfd offset 3 GiB
//
// Every access goes through Memory's checked methods: an address range that
// overflows, runs past the end of RAM or spans the MMIO hole is an error,
// never a panic. Guest-supplied addresses must only ever reach RAM this way.
//
// # In the archive
//
// Dump cuts RAM into chunks of ChunkSize (2 MiB) of guest-physical address
// space, numbered in address order across regions. An all-zero chunk is not
// stored. Any other chunk becomes one memory-chunk section: its address and
// length, a bitmap of its all-zero pages, and one independent zstd frame of
// its other pages. The memory-index section, written last, lists every chunk
// with an xxhash64 of its bytes. formats/SPEC.md (§5.2, §5.3) gives the byte
// layout; layout.go implements it.
//
// Dump compresses chunks in parallel but writes them in chunk order, and each
// frame depends only on the chunk's bytes and the level, so the archive is
// the same whatever the number of workers. Pages the memfd has never had
// (holes, found with SEEK_DATA/SEEK_HOLE) are zero without being read.
//
// A Loader takes the sections in any order and decodes chunks in parallel
// straight into guest RAM, after checking each chunk's header against the
// configured memory. The zstd decoders may write no more than the chunk's
// own bytes and allocate no more than a chunk. Because the index comes last,
// the chunk hashes are compared with it only in Finish: RAM may hold bytes of
// a chunk that fails, and must not be used unless Finish returns nil.
//
// memdump does not read or write the archive container (that is formats) and
// does not pause the guest (that is vm): Dump's caller must.
package memdump
