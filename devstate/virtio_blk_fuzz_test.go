package devstate

import (
	"bytes"
	"runtime"
	"testing"
)

// Guest memory layout of FuzzVirtioBlockRequest: a queue of 8 with the
// descriptor table at 0, the avail ring at 0x100, the used ring at 0x140,
// and request buffers from 0x200 to the end of 8 KiB.
const (
	blkFuzzMem     = 0x2000
	blkFuzzAvail   = 0x100
	blkFuzzUsed    = 0x140
	blkFuzzData    = 0x200
	blkFuzzQueue   = 8
	blkFuzzSectors = 64
	// blkFuzzAllocLimit bounds what one Notify may allocate: a chain's
	// buffer list and error values, far below any guest-sized buffer.
	blkFuzzAllocLimit = 256 << 10
)

// blkFuzzSeeds builds guest memories holding valid requests, so the fuzzer
// starts from rings that reach the request parser.
func blkFuzzSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	for _, reqs := range [][][]buf{
		{{{data: blkHdr(blkTIn, 1)}, {n: 700, writable: true}, {n: 324, writable: true}, {n: 1, writable: true}}},
		{{{data: blkHdr(blkTOut, 2)}, {data: bytes.Repeat([]byte{0xa5}, 512)}, {n: 1, writable: true}}},
		{{{data: blkHdr(blkTGetID, 0)}, {n: 20, writable: true}, {n: 1, writable: true}}},
		{{{data: blkHdr(blkTFlush, 0)}, {n: 1, writable: true}}},
		{{{data: blkHdr(blkTDiscard, 0)}, {data: dwzSeg(0, 8, 0)}, {n: 1, writable: true}}},
		{{{data: blkHdr(blkTWriteZeroes, 0)}, {data: dwzSeg(8, 8, blkFlagUnmap)}, {n: 1, writable: true}}},
		{
			{{data: blkHdr(blkTIn, blkFuzzSectors-1)}, {n: 513, writable: true}},
			{{data: blkHdr(blkTOut, 0)}, {data: make([]byte, 1024)}, {n: 1, writable: true}},
		},
	} {
		mem := &sliceMem{b: make([]byte, blkFuzzMem)}
		d := &driver{t: f, mem: mem, size: blkFuzzQueue, desc: 0, avail: blkFuzzAvail, used: blkFuzzUsed, nextData: blkFuzzData}
		for _, r := range reqs {
			d.publish(d.chain(r...))
		}
		seeds = append(seeds, mem.b)
	}
	// One request through an indirect table.
	mem := &sliceMem{b: make([]byte, blkFuzzMem)}
	d := &driver{t: f, mem: mem, size: blkFuzzQueue, desc: 0, avail: blkFuzzAvail, used: blkFuzzUsed, nextData: blkFuzzData}
	d.publish(d.indirect(buf{data: blkHdr(blkTIn, 3)}, buf{n: 512, writable: true}, buf{n: 1, writable: true}))
	return append(seeds, mem.b)
}

// FuzzVirtioBlockRequest serves rings and requests made of random bytes
// against a 64-sector in-memory disk. ctl picks the features the driver
// accepts (bit 0 EVENT_IDX, 1 INDIRECT_DESC, 2 FLUSH, 3 DISCARD, 4
// WRITE_ZEROES), bit 5 a read-only disk, bit 6 writethrough, and bit 7
// leaves the avail idx as the random bytes say instead of avail%9. The
// device must not panic, must never access the disk outside its size, in
// pieces above its bounce buffer, or for writing when it is read-only, and
// one notification must allocate less than blkFuzzAllocLimit.
func FuzzVirtioBlockRequest(f *testing.F) {
	for _, s := range blkFuzzSeeds(f) {
		f.Add(uint8(0x1f), uint8(2), s)
		f.Add(uint8(0x7f), uint8(1), s)
	}
	f.Add(uint8(0), uint8(0), []byte{})
	f.Fuzz(func(t *testing.T, ctl, avail uint8, ring []byte) {
		dk := newMemDisk(blkFuzzSectors * 512)
		for i := range dk.b {
			dk.b[i] = byte(i)
		}
		orig := bytes.Clone(dk.b)
		dk.ro = ctl&0x20 != 0
		blk, err := NewVirtioBlock(VirtioBlockDeps{Disk: dk, ID: "fuzz"})
		if err != nil {
			t.Fatal(err)
		}
		mem := &sliceMem{b: make([]byte, blkFuzzMem)}
		tr, err := NewVirtioMMIO(VirtioMMIODeps{Base: testBase, Device: blk, Mem: mem, IRQ: &fakeIRQ{}})
		if err != nil {
			t.Fatal(err)
		}
		m := &mmioDriver{t: t, tr: tr, base: testBase}
		acked := FeatureVersion1
		for bit, feat := range []uint64{FeatureRingEventIdx, FeatureIndirectDesc, blkFFlush, blkFDiscard, blkFWriteZeroes} {
			if ctl&(1<<bit) != 0 {
				acked |= feat
			}
		}
		acked &= blk.Features()
		if st := m.negotiate(acked); st&StatusFeaturesOK == 0 {
			t.Fatalf("FEATURES_OK refused for %#x", acked)
		}
		if ctl&0x40 != 0 {
			tr.WriteMMIO(testBase+VirtioMMIOConfig+blkConfigWriteback, []byte{0})
		}
		d := &driver{t: t, mem: mem, size: blkFuzzQueue, desc: 0, avail: blkFuzzAvail, used: blkFuzzUsed}
		m.setupQueue(0, d)
		m.w32(mmioStatus, 0xf)
		copy(mem.b, ring)
		if ctl&0x80 == 0 {
			d.put16(blkFuzzAvail+2, uint16(avail%(blkFuzzQueue+1)))
		}

		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		m.w32(mmioQueueNotify, 0)
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > blkFuzzAllocLimit {
			t.Fatalf("one notification allocated %d bytes, limit %d", n, blkFuzzAllocLimit)
		}
		// A second notification, as a driver would send for more requests.
		m.w32(mmioQueueNotify, 0)

		if dk.outside != "" {
			t.Fatalf("disk access outside the disk: %s", dk.outside)
		}
		if dk.maxIO > blkIOChunk {
			t.Fatalf("disk access of %d bytes, above the %d-byte bounce buffer", dk.maxIO, blkIOChunk)
		}
		if dk.ro && (dk.writes != 0 || dk.discards != 0 || !bytes.Equal(dk.b, orig)) {
			t.Fatalf("read-only disk: %d writes, %d discards", dk.writes, dk.discards)
		}
		if len(dk.b) != blkFuzzSectors*512 {
			t.Fatalf("disk size changed to %d", len(dk.b))
		}
		// Whatever happened, a reset stops the device.
		m.w32(mmioStatus, 0)
		ops := dk.ops()
		blk.Notify(0)
		if dk.ops() != ops {
			t.Fatal("device served requests after reset")
		}
	})
}

// FuzzRestoreVirtioBlock restores random states over a 64-sector disk: a
// state is refused unless it matches the disk, and one that is accepted
// comes back unchanged from State.
func FuzzRestoreVirtioBlock(f *testing.F) {
	f.Add(uint64(blkFuzzSectors), false, false, false)
	f.Add(uint64(blkFuzzSectors), true, true, true)
	f.Add(uint64(1<<63), false, true, false)
	f.Fuzz(func(t *testing.T, sectors uint64, ro, writethrough, diskRO bool) {
		dk := newMemDisk(blkFuzzSectors * 512)
		dk.ro = diskRO
		st := VirtioBlockState{Sectors: sectors, ReadOnly: ro, Writethrough: writethrough}
		blk, err := RestoreVirtioBlock(st, VirtioBlockDeps{Disk: dk, ID: "fuzz"})
		match := sectors == blkFuzzSectors && ro == diskRO
		if (err == nil) != match {
			t.Fatalf("restore %+v over a %d-sector disk (read-only %v): error %v", st, blkFuzzSectors, diskRO, err)
		}
		if err != nil {
			return
		}
		if got := blk.State(); got != st {
			t.Fatalf("State after restore = %+v, want %+v", got, st)
		}
		if want := blk.Features()&blkFRO != 0; want != ro {
			t.Fatalf("restored device offers RO %v, state says %v", want, ro)
		}
	})
}
