package devstate

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/chsnap/chsnap/formats/disk"
)

// memDisk is a disk.Disk in memory that records what the device does to
// it: every access outside the disk, and the largest single access.
type memDisk struct {
	mu       sync.Mutex
	b        []byte
	ro       bool
	reads    int
	writes   int
	flushes  int
	discards int
	maxIO    int
	outside  string // first access outside the disk
	fail     error  // returned by every I/O method when set
}

func newMemDisk(size int) *memDisk { return &memDisk{b: make([]byte, size)} }

func (m *memDisk) access(n int, off int64) bool {
	m.maxIO = max(m.maxIO, n)
	if off < 0 || uint64(off) > uint64(len(m.b)) || uint64(n) > uint64(len(m.b))-uint64(off) {
		if m.outside == "" {
			m.outside = fmt.Sprintf("%d bytes at %d, disk is %d", n, off, len(m.b))
		}
		return false
	}
	return true
}

func (m *memDisk) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	if m.fail != nil {
		return 0, m.fail
	}
	if !m.access(len(p), off) {
		return 0, disk.ErrRange
	}
	return copy(p, m.b[off:]), nil
}

func (m *memDisk) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writes++
	if m.fail != nil {
		return 0, m.fail
	}
	if m.ro {
		return 0, disk.ErrReadOnly
	}
	if !m.access(len(p), off) {
		return 0, disk.ErrRange
	}
	return copy(m.b[off:], p), nil
}

func (m *memDisk) Size() uint64 { return uint64(len(m.b)) }

func (m *memDisk) Flush() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.flushes++
	return m.fail
}

func (m *memDisk) Discard(off, n int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.discards++
	if m.fail != nil {
		return m.fail
	}
	if n < 0 || n > math.MaxInt32 || !m.access(int(n), off) {
		return disk.ErrRange
	}
	clear(m.b[off : off+n])
	return nil
}

func (m *memDisk) Close() error   { return nil }
func (m *memDisk) ReadOnly() bool { return m.ro }
func (m *memDisk) Identity() disk.Identity {
	return disk.Identity{Format: "mem", Size: uint64(len(m.b))}
}

// ops returns how many I/O calls reached the disk.
func (m *memDisk) ops() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reads + m.writes + m.flushes + m.discards
}

// blkHarness is a VirtioBlock behind a real transport, driven by the fake
// driver over a byte-slice guest memory.
type blkHarness struct {
	t   testing.TB
	dk  disk.Disk
	blk *VirtioBlock
	tr  *VirtioMMIO
	m   *mmioDriver
	d   *driver
	mem *sliceMem
	irq *fakeIRQ
	// indirect makes submit put each chain in an indirect table.
	indirect bool
}

// allBlkFeatures marks "accept the whole offer" for newBlkHarness.
const allBlkFeatures = math.MaxUint64

// newBlkHarness builds the device over dk and negotiates acked (masked by
// the offer) with one queue of qsize in memSize bytes of guest memory.
func newBlkHarness(t testing.TB, dk disk.Disk, acked uint64, memSize int, qsize uint16) *blkHarness {
	t.Helper()
	return newBlkHarnessID(t, dk, "disk0", acked, memSize, qsize)
}

// newBlkHarnessID is newBlkHarness for a device with the given GET_ID id.
func newBlkHarnessID(t testing.TB, dk disk.Disk, id string, acked uint64, memSize int, qsize uint16) *blkHarness {
	t.Helper()
	blk, err := NewVirtioBlock(VirtioBlockDeps{Disk: dk, ID: id})
	if err != nil {
		t.Fatalf("NewVirtioBlock: %v", err)
	}
	mem := &sliceMem{b: make([]byte, memSize)}
	irq := &fakeIRQ{}
	tr, err := NewVirtioMMIO(VirtioMMIODeps{Base: testBase, Device: blk, Mem: mem, IRQ: irq})
	if err != nil {
		t.Fatalf("NewVirtioMMIO: %v", err)
	}
	h := &blkHarness{t: t, dk: dk, blk: blk, tr: tr, mem: mem, irq: irq,
		m: &mmioDriver{t: t, tr: tr, base: testBase}, d: newDriver(t, mem, qsize)}
	acked &= blk.Features()
	if st := h.m.negotiate(acked); st&StatusFeaturesOK == 0 {
		t.Fatalf("FEATURES_OK refused for %#x: status %#x", acked, st)
	}
	h.m.setupQueue(0, h.d)
	h.m.w32(mmioStatus, 0xf)
	if st := h.m.r32(mmioStatus); st != 0xf {
		t.Fatalf("status after DRIVER_OK = %#x, want 0xf", st)
	}
	return h
}

// blkBuf is one buffer of a request chain: readable data, or n writable
// bytes. at, when non-zero, places it at a fixed guest address (buffers
// may overlap) instead of fresh memory.
type blkBuf struct {
	data []byte
	n    uint32
	w    bool
	at   uint64
}

func rd(data []byte) blkBuf { return blkBuf{data: data} }
func wr(n uint32) blkBuf    { return blkBuf{n: n, w: true} }

func blkHdr(typ uint32, sector uint64) []byte {
	h := make([]byte, blkHeaderSize)
	binary.LittleEndian.PutUint32(h[0:], typ)
	binary.LittleEndian.PutUint64(h[8:], sector)
	return h
}

func dwzSeg(sector uint64, num, flags uint32) []byte {
	s := make([]byte, blkDWZSegmentSize)
	binary.LittleEndian.PutUint64(s[0:], sector)
	binary.LittleEndian.PutUint32(s[8:], num)
	binary.LittleEndian.PutUint32(s[12:], flags)
	return s
}

// submit writes bufs as one chain (direct, or indirect with h.indirect),
// publishes it without notifying, and returns the buffers' addresses.
func (h *blkHarness) submit(bufs ...blkBuf) []uint64 {
	h.t.Helper()
	d := h.d
	addrs := make([]uint64, len(bufs))
	for i, b := range bufs {
		n := uint32(len(b.data))
		if b.w {
			n = b.n
		}
		addrs[i] = b.at
		if b.at == 0 {
			addrs[i] = d.alloc(n)
		}
		copy(h.mem.b[addrs[i]:], b.data)
	}
	set := func(table uint64, i, next uint16, b blkBuf, addr uint64, last bool) {
		n, flags := uint32(len(b.data)), uint16(0)
		if b.w {
			n, flags = b.n, descFWrite
		}
		if !last {
			flags |= descFNext
		}
		d.setDescAt(table, i, addr, n, flags, next)
	}
	if h.indirect {
		table := d.alloc(16 * uint32(len(bufs)))
		for i, b := range bufs {
			set(table, uint16(i), uint16(i+1), b, addrs[i], i == len(bufs)-1)
		}
		head := d.nextDesc
		d.nextDesc = (d.nextDesc + 1) % d.size
		d.setDesc(head, table, 16*uint32(len(bufs)), descFIndirect, 0)
		d.publish(head)
		return addrs
	}
	head := d.nextDesc
	for i, b := range bufs {
		idx := d.nextDesc
		d.nextDesc = (d.nextDesc + 1) % d.size
		set(d.desc, idx, d.nextDesc, b, addrs[i], i == len(bufs)-1)
	}
	d.publish(head)
	return addrs
}

// do submits one request, notifies, and returns the status byte (the last
// byte of the last writable buffer; 0xff without one), the used length and
// the buffers' addresses. It fails the test unless exactly one chain came
// back.
func (h *blkHarness) do(bufs ...blkBuf) (status byte, used uint32, addrs []uint64) {
	h.t.Helper()
	h.d.nextData = dataBase
	before := h.d.usedIdx()
	addrs = h.submit(bufs...)
	h.m.w32(mmioQueueNotify, 0)
	if got := h.d.usedIdx(); got != before+1 {
		h.t.Fatalf("used idx %d after one request, want %d", got, before+1)
	}
	_, used = h.d.usedElem(before)
	status = 0xff
	for i := len(bufs) - 1; i >= 0; i-- {
		if bufs[i].w {
			status = h.mem.b[addrs[i]+uint64(bufs[i].n)-1]
			break
		}
	}
	return status, used, addrs
}

// split cuts n bytes into 1 to 4 random pieces.
func split(rng *rand.Rand, n int) []int {
	if n <= 1 {
		return []int{n}
	}
	parts := rng.IntN(4) + 1
	var out []int
	for i := 0; i < parts-1 && n > 1; i++ {
		k := rng.IntN(n-1) + 1
		out = append(out, k)
		n -= k
	}
	return append(out, n)
}

// read reads n bytes at sector through random descriptor pieces.
func (h *blkHarness) read(rng *rand.Rand, sector uint64, n int) (byte, uint32, []byte) {
	h.t.Helper()
	bufs := []blkBuf{rd(blkHdr(blkTIn, sector))}
	for _, k := range split(rng, n) {
		if k > 0 {
			bufs = append(bufs, wr(uint32(k)))
		}
	}
	bufs = append(bufs, wr(1))
	st, used, addrs := h.do(bufs...)
	var data []byte
	for i := 1; i < len(bufs)-1; i++ {
		data = append(data, h.mem.b[addrs[i]:addrs[i]+uint64(bufs[i].n)]...)
	}
	return st, used, data
}

// write writes data at sector through random descriptor pieces.
func (h *blkHarness) write(rng *rand.Rand, sector uint64, data []byte) (byte, uint32) {
	h.t.Helper()
	bufs := []blkBuf{rd(blkHdr(blkTOut, sector))}
	off := 0
	for _, k := range split(rng, len(data)) {
		if k > 0 {
			bufs = append(bufs, rd(data[off:off+k]))
			off += k
		}
	}
	st, used, _ := h.do(append(bufs, wr(1))...)
	return st, used
}

func (h *blkHarness) failed() bool { return h.m.r32(mmioStatus)&StatusDeviceNeedsReset != 0 }

func (h *blkHarness) config32(off uint32) uint32 {
	var b [4]byte
	h.tr.ReadMMIO(testBase+VirtioMMIOConfig+uint64(off), b[:])
	return binary.LittleEndian.Uint32(b[:])
}

func (h *blkHarness) config64(off uint32) uint64 {
	var b [8]byte
	h.tr.ReadMMIO(testBase+VirtioMMIOConfig+uint64(off), b[:])
	return binary.LittleEndian.Uint64(b[:])
}

func (h *blkHarness) config8(off uint32) byte {
	var b [1]byte
	h.tr.ReadMMIO(testBase+VirtioMMIOConfig+uint64(off), b[:])
	return b[0]
}

// rawFile makes a raw image of size bytes filled with a pattern, opens it
// and returns the disk and its path; the disk is closed at cleanup.
func rawFile(t *testing.T, size int, readOnly bool) (disk.Disk, string, []byte) {
	t.Helper()
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*7 + i>>9)
	}
	path := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	dk, err := disk.Open(path, disk.OpenOptions{Format: disk.FormatRaw, ReadOnly: readOnly})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dk.Close() })
	return dk, path, data
}

func TestVirtioBlockFeaturesAndConfig(t *testing.T) {
	const size = 3<<20 + 512*5 + 100 // a ragged tail is not shown
	for _, ro := range []bool{false, true} {
		t.Run(fmt.Sprintf("readonly=%v", ro), func(t *testing.T) {
			dk, _, _ := rawFile(t, size, ro)
			h := newBlkHarness(t, dk, allBlkFeatures, testMemSize, 16)
			want := FeatureVersion1 | FeatureIndirectDesc | FeatureRingEventIdx |
				blkFSizeMax | blkFSegMax | blkFBlkSize | blkFFlush | blkFConfigWCE
			if ro {
				want |= blkFRO
			} else {
				want |= blkFDiscard | blkFWriteZeroes
			}
			if got := h.blk.Features(); got != want {
				t.Errorf("features = %#x, want %#x", got, want)
			}
			if got := h.m.r32(mmioDeviceID); got != VirtioIDBlock {
				t.Errorf("device id = %d, want %d", got, VirtioIDBlock)
			}
			h.m.w32(mmioQueueSel, 0)
			if got := h.m.r32(mmioQueueNumMax); got != VirtioBlockQueueSize {
				t.Errorf("QueueNumMax = %d, want %d", got, VirtioBlockQueueSize)
			}
			if got, want := h.config64(0), uint64(size/512); got != want {
				t.Errorf("capacity = %d, want %d", got, want)
			}
			if lo, hi := h.config32(0), h.config32(4); uint64(hi)<<32|uint64(lo) != size/512 {
				t.Errorf("capacity by halves = %#x:%#x", hi, lo)
			}
			discard := map[bool]uint32{false: blkMaxDiscardSectors, true: 0}[ro]
			for _, c := range []struct {
				name string
				off  uint32
				want uint32
			}{
				{"size_max", 8, blkSizeMax}, {"seg_max", 12, blkSegMax}, {"blk_size", 20, 512},
				{"max_discard_sectors", 36, discard},
				{"max_discard_seg", 40, map[bool]uint32{false: 1}[ro]},
				{"discard_sector_alignment", 44, map[bool]uint32{false: 8}[ro]},
				{"max_write_zeroes_sectors", 48, map[bool]uint32{false: 32768}[ro]},
				{"max_write_zeroes_seg", 52, map[bool]uint32{false: 1}[ro]},
				{"past the end", blkConfigSize, 0},
			} {
				if got := h.config32(c.off); got != c.want {
					t.Errorf("config %s = %d, want %d", c.name, got, c.want)
				}
			}
			if got := h.config8(blkConfigWriteback); got != 1 {
				t.Errorf("writeback = %d, want 1", got)
			}
			if seg, sz := uint64(blkSegMax), uint64(blkSizeMax); seg*sz > blkMaxRequest || seg+2 > VirtioBlockQueueSize {
				t.Errorf("seg_max %d × size_max %d does not fit a request", seg, sz)
			}
		})
	}
}

// checkRoundTrips writes and reads random ranges of dk through h, checking
// each read against shadow, the disk's contents as the test believes them.
func checkRoundTrips(t *testing.T, h *blkHarness, shadow []byte, rng *rand.Rand, rounds int) {
	t.Helper()
	sectors := uint64(len(shadow) / 512)
	for i := range rounds {
		n := []int{1, 2, 7, 8, 9, 128, 255, 256, 257, 1024}[rng.IntN(10)]
		n = min(n, int(sectors))
		var sector uint64
		switch rng.IntN(4) {
		case 0:
			sector = 0
		case 1:
			sector = sectors - uint64(n) // the last sectors
		default:
			sector = rng.Uint64N(sectors - uint64(n) + 1)
		}
		data := make([]byte, n*512)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		if st, used := h.write(rng, sector, data); st != blkSOK || used != 1 {
			t.Fatalf("round %d: write %d sectors at %d: status %d used %d", i, n, sector, st, used)
		}
		copy(shadow[sector*512:], data)
		// Read back a range overlapping the write.
		rs := sector - min(sector, uint64(rng.IntN(4)))
		rn := min(n+rng.IntN(4), int(sectors-rs))
		st, used, got := h.read(rng, rs, rn*512)
		if st != blkSOK || used != uint32(rn*512+1) {
			t.Fatalf("round %d: read %d sectors at %d: status %d used %d", i, rn, rs, st, used)
		}
		if want := shadow[rs*512 : (rs+uint64(rn))*512]; !bytes.Equal(got, want) {
			t.Fatalf("round %d: read %d sectors at %d differs from what was written", i, rn, rs)
		}
	}
}

func TestVirtioBlockReadWriteRaw(t *testing.T) {
	for _, indirect := range []bool{false, true} {
		t.Run(fmt.Sprintf("indirect=%v", indirect), func(t *testing.T) {
			dk, path, shadow := rawFile(t, 4<<20+512*3, false)
			h := newBlkHarness(t, dk, allBlkFeatures, 4<<20, 256)
			h.indirect = indirect
			rng := rand.New(rand.NewPCG(1, map[bool]uint64{false: 2, true: 3}[indirect]))
			checkRoundTrips(t, h, shadow, rng, 150)
			if err := h.blk.Flush(); err != nil {
				t.Fatalf("Flush: %v", err)
			}
			onDisk, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(onDisk, shadow) {
				t.Fatal("raw file differs from the writes the device acknowledged")
			}
		})
	}
}

// TestVirtioBlockLargeRequest moves 16 MiB, the most one request may carry,
// through the 128 KiB bounce buffer, with overlapping descriptors so the
// guest memory stays small; 512 bytes more is refused.
func TestVirtioBlockLargeRequest(t *testing.T) {
	dk := newMemDisk(blkMaxRequest + 1<<20)
	for i := range dk.b {
		dk.b[i] = byte(i>>9) ^ byte(i)
	}
	h := newBlkHarness(t, dk, allBlkFeatures, 4<<20, 256)
	const piece = 1 << 20
	region := uint64(2 << 20)
	bufs := []blkBuf{rd(blkHdr(blkTIn, 1))}
	for range blkMaxRequest / piece {
		bufs = append(bufs, blkBuf{n: piece, w: true, at: region})
	}
	st, used, _ := h.do(append(bufs, wr(1))...)
	if st != blkSOK || used != blkMaxRequest+1 {
		t.Fatalf("16 MiB read: status %d used %d", st, used)
	}
	// The region holds the last piece read: disk bytes 512+15 MiB onwards.
	if want := dk.b[512+blkMaxRequest-piece : 512+blkMaxRequest]; !bytes.Equal(h.mem.b[region:region+piece], want) {
		t.Error("16 MiB read: last piece differs from the disk")
	}
	if dk.maxIO > blkIOChunk || dk.outside != "" {
		t.Errorf("largest disk access %d (limit %d), outside: %q", dk.maxIO, blkIOChunk, dk.outside)
	}
	reads := dk.reads
	bufs = append(bufs[:len(bufs):len(bufs)], wr(512), wr(1))
	if st, used, _ := h.do(bufs...); st != blkSIOErr || used != 0 {
		t.Errorf("16 MiB + 512 read: status %d used %d, want IOERR 0", st, used)
	}
	if dk.reads != reads {
		t.Errorf("refused request still read the disk")
	}
}

func TestVirtioBlockQcow2(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("SKIP: qemu-img not found (Debian qemu-utils); qcow2 through virtio-blk is not checked")
	}
	const size = 4 << 20
	path := filepath.Join(t.TempDir(), "disk.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=65536", path, fmt.Sprint(size)).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	dk, err := disk.Open(path, disk.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := newBlkHarness(t, dk, allBlkFeatures, 4<<20, 256)
	shadow := make([]byte, size)
	rng := rand.New(rand.NewPCG(2, 3))
	checkRoundTrips(t, h, shadow, rng, 80)
	// Zero a written range.
	if st, _, _ := h.do(rd(blkHdr(blkTWriteZeroes, 0)), rd(dwzSeg(3, 200, 0)), wr(1)); st != blkSOK {
		t.Fatalf("write zeroes on qcow2: status %d", st)
	}
	clear(shadow[3*512 : 203*512])
	// A discard of one whole 64 KiB cluster, written just before: qcow2 v3
	// gives it the zero flag.
	if st, _ := h.write(rng, 1024, bytes.Repeat([]byte{0x5a}, 128*512)); st != blkSOK {
		t.Fatalf("write before discard: status %d", st)
	}
	copy(shadow[1024*512:], bytes.Repeat([]byte{0x5a}, 128*512))
	if st, _, _ := h.do(rd(blkHdr(blkTDiscard, 0)), rd(dwzSeg(1024, 128, 0)), wr(1)); st != blkSOK {
		t.Fatalf("discard on qcow2: status %d", st)
	}
	clear(shadow[1024*512 : 1152*512])
	if err := h.blk.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if err := dk.Close(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "check", path).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img check: %v\n%s", err, out)
	}
	rawPath := filepath.Join(t.TempDir(), "oracle.raw")
	if out, err := exec.Command("qemu-img", "convert", "-O", "raw", path, rawPath).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, out)
	}
	got, err := os.ReadFile(rawPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, shadow) {
		t.Fatal("qemu-img convert of the image differs from the writes the device acknowledged")
	}
}

func TestVirtioBlockGetID(t *testing.T) {
	tests := []struct {
		name   string
		id     string
		bufs   []blkBuf
		status byte
		used   uint32
	}{
		{"short id", "disk0", []blkBuf{wr(20), wr(1)}, blkSOK, 21},
		{"full id", "0123456789abcdefghij", []blkBuf{wr(20), wr(1)}, blkSOK, 21},
		{"split buffer", "0123456789abcdefghij", []blkBuf{wr(7), wr(13), wr(1)}, blkSOK, 21},
		{"id and status in one buffer", "disk0", []blkBuf{wr(21)}, blkSOK, 21},
		{"bigger buffer", "disk0", []blkBuf{wr(32), wr(1)}, blkSOK, 20},
		{"buffer too small", "disk0", []blkBuf{wr(19), wr(1)}, blkSIOErr, 0},
		{"readable data", "disk0", []blkBuf{rd(make([]byte, 20)), wr(20), wr(1)}, blkSIOErr, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dk := newMemDisk(1 << 20)
			h := newBlkHarnessID(t, dk, tt.id, allBlkFeatures, testMemSize, 16)
			st, used, addrs := h.do(append([]blkBuf{rd(blkHdr(blkTGetID, 0))}, tt.bufs...)...)
			if st != tt.status || used != tt.used {
				t.Fatalf("status %d used %d, want %d %d", st, used, tt.status, tt.used)
			}
			if st != blkSOK {
				return
			}
			var got []byte
			for i, b := range tt.bufs {
				got = append(got, h.mem.b[addrs[i+1]:addrs[i+1]+uint64(b.n)]...)
			}
			want := make([]byte, 20)
			copy(want, tt.id)
			if !bytes.Equal(got[:20], want) {
				t.Errorf("id bytes = %q, want %q", got[:20], want)
			}
			if dk.ops() != 0 {
				t.Errorf("GET_ID touched the disk")
			}
		})
	}
}

func TestVirtioBlockFlushDiscardWriteZeroes(t *testing.T) {
	dk, path, shadow := rawFile(t, 1<<20, false)
	h := newBlkHarness(t, dk, allBlkFeatures, 4<<20, 16)
	rng := rand.New(rand.NewPCG(4, 5))
	if st, used, _ := h.do(rd(blkHdr(blkTFlush, 0)), wr(1)); st != blkSOK || used != 1 {
		t.Fatalf("flush: status %d used %d", st, used)
	}
	// Discard 64 KiB, 4 KiB aligned: a raw file punches a hole, reading zeros.
	if st, used, _ := h.do(rd(blkHdr(blkTDiscard, 0)), rd(dwzSeg(64, 128, 0)), wr(1)); st != blkSOK || used != 1 {
		t.Fatalf("discard: status %d used %d", st, used)
	}
	clear(shadow[64*512 : 192*512])
	// Write zeroes on an unaligned range, with and without the unmap flag.
	for _, flags := range []uint32{0, blkFlagUnmap} {
		sector := 301 + uint64(flags)*50
		if st, used, _ := h.do(rd(blkHdr(blkTWriteZeroes, 0)), rd(dwzSeg(sector, 37, flags)), wr(1)); st != blkSOK || used != 1 {
			t.Fatalf("write zeroes flags %d: status %d used %d", flags, st, used)
		}
		clear(shadow[sector*512 : (sector+37)*512])
	}
	st, _, got := h.read(rng, 0, len(shadow))
	if st != blkSOK || !bytes.Equal(got, shadow) {
		t.Fatalf("read after discard and write zeroes: status %d, contents match %v", st, bytes.Equal(got, shadow))
	}
	if err := h.blk.Flush(); err != nil {
		t.Fatal(err)
	}
	if onDisk, _ := os.ReadFile(path); !bytes.Equal(onDisk, shadow) {
		t.Fatal("file differs after discard and write zeroes")
	}
}

// TestVirtioBlockMalformed sends every kind of bad request: each is
// answered with the right status and used length, touches the disk only
// when valid, or fails the device when no status can be written.
func TestVirtioBlockMalformed(t *testing.T) {
	const sectors = 64
	in := func(sector uint64) blkBuf { return rd(blkHdr(blkTIn, sector)) }
	out := func(sector uint64) blkBuf { return rd(blkHdr(blkTOut, sector)) }
	typ := func(ty uint32) blkBuf { return rd(blkHdr(ty, 0)) }
	sec := rd(make([]byte, 512))
	tests := []struct {
		name   string
		bufs   []blkBuf
		status byte   // 0xff: no status written
		used   uint32 // used length
		io     bool   // the disk is accessed
		fail   bool   // the device fails
	}{
		{"valid read", []blkBuf{in(0), wr(512), wr(1)}, blkSOK, 513, true, false},
		{"header in two pieces", []blkBuf{rd(blkHdr(blkTIn, 1)[:5]), rd(blkHdr(blkTIn, 1)[5:]), wr(512), wr(1)}, blkSOK, 513, true, false},
		{"data and status in one buffer", []blkBuf{in(0), wr(513)}, blkSOK, 513, true, false},
		{"short header", []blkBuf{rd(blkHdr(blkTIn, 0)[:15]), wr(512), wr(1)}, blkSIOErr, 0, false, false},
		{"no readable header", []blkBuf{wr(16), wr(512), wr(1)}, blkSIOErr, 0, false, false},
		{"missing status", []blkBuf{out(0), sec}, 0xff, 0, false, true},
		{"status readable", []blkBuf{in(0), rd([]byte{0})}, 0xff, 0, false, true},
		{"status readable after writable data", []blkBuf{in(0), wr(512), rd([]byte{0})}, 0, 0, false, true},
		{"read with readable data", []blkBuf{in(0), sec, wr(512), wr(1)}, blkSIOErr, 0, false, false},
		{"write with writable data", []blkBuf{out(0), wr(512), wr(1)}, blkSIOErr, 0, false, false},
		{"read length not a multiple of 512", []blkBuf{in(0), wr(500), wr(1)}, blkSIOErr, 0, false, false},
		{"write length not a multiple of 512", []blkBuf{out(0), rd(make([]byte, 513)), wr(1)}, blkSIOErr, 1, false, false},
		{"sector times 512 overflows", []blkBuf{in(1 << 55), wr(512), wr(1)}, blkSIOErr, 0, false, false},
		{"sector max", []blkBuf{out(math.MaxUint64), sec, wr(1)}, blkSIOErr, 1, false, false},
		{"past capacity", []blkBuf{in(sectors - 1), wr(1024), wr(1)}, blkSIOErr, 0, false, false},
		{"at capacity", []blkBuf{out(sectors), sec, wr(1)}, blkSIOErr, 1, false, false},
		{"last sector", []blkBuf{out(sectors - 1), sec, wr(1)}, blkSOK, 1, true, false},
		{"empty read at capacity", []blkBuf{in(sectors), wr(1)}, blkSOK, 1, false, false},
		{"unknown type", []blkBuf{typ(99), wr(1)}, blkSUnsupp, 1, false, false},
		{"unknown type with data", []blkBuf{typ(3), wr(512), wr(1)}, blkSUnsupp, 0, false, false},
		{"flush with data", []blkBuf{typ(blkTFlush), sec, wr(1)}, blkSIOErr, 1, false, false},
		{"discard two segments", []blkBuf{typ(blkTDiscard), rd(append(dwzSeg(0, 8, 0), dwzSeg(8, 8, 0)...)), wr(1)}, blkSUnsupp, 1, false, false},
		{"discard short segment", []blkBuf{typ(blkTDiscard), rd(dwzSeg(0, 8, 0)[:12]), wr(1)}, blkSIOErr, 1, false, false},
		{"discard no segment", []blkBuf{typ(blkTDiscard), wr(1)}, blkSIOErr, 1, false, false},
		{"discard unmap flag", []blkBuf{typ(blkTDiscard), rd(dwzSeg(0, 8, blkFlagUnmap)), wr(1)}, blkSUnsupp, 1, false, false},
		{"discard reserved flag", []blkBuf{typ(blkTDiscard), rd(dwzSeg(0, 8, 2)), wr(1)}, blkSUnsupp, 1, false, false},
		{"discard past capacity", []blkBuf{typ(blkTDiscard), rd(dwzSeg(sectors-4, 8, 0)), wr(1)}, blkSIOErr, 1, false, false},
		{"discard sector overflow", []blkBuf{typ(blkTDiscard), rd(dwzSeg(math.MaxUint64-2, 8, 0)), wr(1)}, blkSIOErr, 1, false, false},
		{"discard too many sectors", []blkBuf{typ(blkTDiscard), rd(dwzSeg(0, blkMaxDiscardSectors+1, 0)), wr(1)}, blkSIOErr, 1, false, false},
		{"discard with writable data", []blkBuf{typ(blkTDiscard), rd(dwzSeg(0, 8, 0)), wr(512), wr(1)}, blkSIOErr, 0, false, false},
		{"valid discard", []blkBuf{typ(blkTDiscard), rd(dwzSeg(0, 8, 0)), wr(1)}, blkSOK, 1, true, false},
		{"write zeroes reserved flag", []blkBuf{typ(blkTWriteZeroes), rd(dwzSeg(0, 8, 4)), wr(1)}, blkSUnsupp, 1, false, false},
		{"write zeroes too many sectors", []blkBuf{typ(blkTWriteZeroes), rd(dwzSeg(0, blkMaxWriteZeroesSectors+1, 0)), wr(1)}, blkSIOErr, 1, false, false},
		{"write zeroes past capacity", []blkBuf{typ(blkTWriteZeroes), rd(dwzSeg(sectors, 1, 0)), wr(1)}, blkSIOErr, 1, false, false},
		{"descriptor outside memory", []blkBuf{in(0), {n: 512, w: true, at: testMemSize - 256}, wr(1)}, 0, 0, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dk := newMemDisk(sectors * 512)
			h := newBlkHarness(t, dk, allBlkFeatures, testMemSize, 16)
			st, used, _ := h.do(tt.bufs...)
			if tt.status != 0xff && !tt.fail && st != tt.status {
				t.Errorf("status = %d, want %d", st, tt.status)
			}
			if used != tt.used {
				t.Errorf("used len = %d, want %d", used, tt.used)
			}
			if got := dk.ops() != 0; got != tt.io {
				t.Errorf("disk accessed = %v, want %v", got, tt.io)
			}
			if dk.outside != "" {
				t.Errorf("access outside the disk: %s", dk.outside)
			}
			if h.failed() != tt.fail {
				t.Fatalf("device failed = %v (err %v), want %v", h.failed(), h.tr.Err(), tt.fail)
			}
			if tt.fail {
				if !errors.Is(h.tr.Err(), ErrVirtqueue) {
					t.Errorf("failure %v does not wrap ErrVirtqueue", h.tr.Err())
				}
				// A failed device serves nothing until reset.
				h.submit(rd(blkHdr(blkTFlush, 0)), wr(1))
				h.m.w32(mmioQueueNotify, 0)
				if h.d.usedIdx() != 1 {
					t.Errorf("failed device served another request")
				}
				return
			}
			// The device goes on serving.
			if st, _, _ := h.do(rd(blkHdr(blkTFlush, 0)), wr(1)); st != blkSOK {
				t.Errorf("flush after the request: status %d", st)
			}
		})
	}
}

func TestVirtioBlockAvailIdxJump(t *testing.T) {
	dk := newMemDisk(1 << 16)
	h := newBlkHarness(t, dk, allBlkFeatures, testMemSize, 16)
	h.d.put16(h.d.avail+2, 17)
	h.m.w32(mmioQueueNotify, 0)
	if !h.failed() || !errors.Is(h.tr.Err(), ErrVirtqueue) || dk.ops() != 0 {
		t.Fatalf("avail idx 17 on a queue of 16: failed %v, err %v, disk ops %d", h.failed(), h.tr.Err(), dk.ops())
	}
}

func TestVirtioBlockReadOnly(t *testing.T) {
	dk, path, data := rawFile(t, 1<<20, true)
	h := newBlkHarness(t, dk, allBlkFeatures, testMemSize, 16)
	rng := rand.New(rand.NewPCG(6, 7))
	if st, used := h.write(rng, 5, make([]byte, 1024)); st != blkSIOErr || used != 1 {
		t.Errorf("write on a read-only disk: status %d used %d, want IOERR 1", st, used)
	}
	for _, ty := range []uint32{blkTDiscard, blkTWriteZeroes} {
		if st, _, _ := h.do(rd(blkHdr(ty, 0)), rd(dwzSeg(0, 8, 0)), wr(1)); st != blkSUnsupp {
			t.Errorf("type %d on a read-only disk: status %d, want UNSUPP (feature not offered)", ty, st)
		}
	}
	if st, _, got := h.read(rng, 0, 8192); st != blkSOK || !bytes.Equal(got, data[:8192]) {
		t.Errorf("read on a read-only disk: status %d", st)
	}
	if st, _, _ := h.do(rd(blkHdr(blkTFlush, 0)), wr(1)); st != blkSOK {
		t.Errorf("flush on a read-only disk: status %d", st)
	}
	if onDisk, _ := os.ReadFile(path); !bytes.Equal(onDisk, data) {
		t.Error("read-only file changed")
	}
	// A driver that did not negotiate DISCARD gets UNSUPP on a writable disk too.
	h2 := newBlkHarness(t, newMemDisk(1<<16), FeatureVersion1, testMemSize, 16)
	if st, _, _ := h2.do(rd(blkHdr(blkTDiscard, 0)), rd(dwzSeg(0, 8, 0)), wr(1)); st != blkSUnsupp {
		t.Errorf("discard not negotiated: status %d, want UNSUPP", st)
	}
}

func TestVirtioBlockDiskErrors(t *testing.T) {
	dk := newMemDisk(1 << 16)
	h := newBlkHarness(t, dk, allBlkFeatures, testMemSize, 16)
	dk.fail = errFake
	rng := rand.New(rand.NewPCG(8, 9))
	if st, used, _ := h.read(rng, 0, 4096); st != blkSIOErr || used != 0 {
		t.Errorf("read error: status %d used %d", st, used)
	}
	if st, _ := h.write(rng, 0, make([]byte, 4096)); st != blkSIOErr {
		t.Errorf("write error: status %d", st)
	}
	for _, bufs := range [][]blkBuf{
		{rd(blkHdr(blkTFlush, 0)), wr(1)},
		{rd(blkHdr(blkTDiscard, 0)), rd(dwzSeg(0, 8, 0)), wr(1)},
		{rd(blkHdr(blkTWriteZeroes, 0)), rd(dwzSeg(0, 8, 0)), wr(1)},
	} {
		if st, _, _ := h.do(bufs...); st != blkSIOErr {
			t.Errorf("type %d with a failing disk: status %d", binary.LittleEndian.Uint32(bufs[0].data), st)
		}
	}
	if h.failed() {
		t.Errorf("disk errors failed the device: %v", h.tr.Err())
	}
	if err := h.blk.Flush(); !errors.Is(err, errFake) {
		t.Errorf("Flush error = %v, want it to wrap %v", err, errFake)
	}
}

func TestVirtioBlockWritethrough(t *testing.T) {
	dk := newMemDisk(1 << 16)
	h := newBlkHarness(t, dk, allBlkFeatures, testMemSize, 16)
	rng := rand.New(rand.NewPCG(10, 11))
	h.write(rng, 0, make([]byte, 512))
	if dk.flushes != 0 {
		t.Fatalf("writeback mode flushed %d times on a write", dk.flushes)
	}
	h.tr.WriteMMIO(testBase+VirtioMMIOConfig+blkConfigWriteback, []byte{0})
	if got := h.config8(blkConfigWriteback); got != 0 {
		t.Fatalf("writeback after writing 0 = %d", got)
	}
	h.tr.WriteMMIO(testBase+VirtioMMIOConfig+blkConfigWriteback, []byte{7}) // ignored
	h.tr.WriteMMIO(testBase+VirtioMMIOConfig+8, []byte{1, 2, 3, 4})         // read-only field
	if h.config8(blkConfigWriteback) != 0 || h.config32(8) != blkSizeMax {
		t.Fatal("invalid config writes took effect")
	}
	h.write(rng, 0, make([]byte, 512))
	h.do(rd(blkHdr(blkTWriteZeroes, 0)), rd(dwzSeg(0, 8, 0)), wr(1))
	if dk.flushes != 2 {
		t.Fatalf("writethrough mode: %d flushes after a write and a write zeroes, want 2", dk.flushes)
	}
	if !h.blk.State().Writethrough {
		t.Error("state does not record writethrough")
	}
	h.m.w32(mmioStatus, 0) // reset
	if h.config8(blkConfigWriteback) != 1 || h.blk.State().Writethrough {
		t.Error("reset did not restore writeback mode")
	}

	// A driver without FLUSH gets every write flushed.
	dk2 := newMemDisk(1 << 16)
	h2 := newBlkHarness(t, dk2, FeatureVersion1, testMemSize, 16)
	h2.write(rng, 0, make([]byte, 512))
	if dk2.flushes != 1 {
		t.Errorf("write without FLUSH negotiated: %d flushes, want 1", dk2.flushes)
	}
}

func TestVirtioBlockInterrupts(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 13))
	t.Run("one per batch", func(t *testing.T) {
		h := newBlkHarness(t, newMemDisk(1<<16), allBlkFeatures&^FeatureRingEventIdx, testMemSize, 16)
		for i := range 3 {
			h.submit(rd(blkHdr(blkTIn, uint64(i))), wr(512), wr(1))
		}
		h.m.w32(mmioQueueNotify, 0)
		if idx, irq := h.d.usedIdx(), h.irq.seq(); idx != 3 || !slices.Equal(irq, []bool{true}) {
			t.Fatalf("used idx %d, irq %v; want 3 and one raise", idx, irq)
		}
		h.m.w32(mmioInterruptACK, InterruptUsedBuffer)
		h.irq.seq()
		h.d.put16(h.d.avail, availFNoInterrupt)
		h.read(rng, 0, 512)
		if got := h.irq.seq(); len(got) != 0 {
			t.Errorf("VIRTQ_AVAIL_F_NO_INTERRUPT: irq %v, want none", got)
		}
	})
	t.Run("event idx", func(t *testing.T) {
		h := newBlkHarness(t, newMemDisk(1<<16), allBlkFeatures, testMemSize, 16)
		usedEvent := h.d.avail + 4 + 2*uint64(h.d.size)
		availEvent := h.d.used + 4 + 8*uint64(h.d.size)
		h.d.put16(usedEvent, 5) // interrupt only when used idx passes 5
		for i := range 3 {
			h.read(rng, uint64(i), 512)
		}
		if got := h.irq.seq(); len(got) != 0 {
			t.Fatalf("used_event 5, 3 requests: irq %v, want none", got)
		}
		if got := h.d.get16(availEvent); got != 3 {
			t.Errorf("avail_event = %d, want 3 (notify on the next request)", got)
		}
		h.d.put16(usedEvent, 3) // interrupt for the request that makes used idx 4
		h.read(rng, 0, 512)
		if got := h.irq.seq(); !slices.Equal(got, []bool{true}) {
			t.Errorf("used_event 3, fourth request: irq %v, want one raise", got)
		}
	})
}

func TestVirtioBlockStateRoundTrip(t *testing.T) {
	dk, _, shadow := rawFile(t, 1<<20, false)
	h := newBlkHarness(t, dk, allBlkFeatures, testMemSize, 64)
	rng := rand.New(rand.NewPCG(14, 15))
	checkRoundTrips(t, h, shadow, rng, 10)
	h.tr.WriteMMIO(testBase+VirtioMMIOConfig+blkConfigWriteback, []byte{0})
	st := h.blk.State()
	if want := (VirtioBlockState{Sectors: 2048, Writethrough: true}); st != want {
		t.Fatalf("State = %+v, want %+v", st, want)
	}
	if err := h.blk.Flush(); err != nil {
		t.Fatal(err)
	}
	trState := h.tr.State()

	// The vm stores the state as JSON: it must survive that.
	enc, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var dec VirtioBlockState
	if err := json.Unmarshal(enc, &dec); err != nil || dec != st {
		t.Fatalf("JSON round trip: %+v, %v; want %+v", dec, err, st)
	}
	deps := VirtioBlockDeps{Disk: dk, ID: "disk0"}
	blk, err := RestoreVirtioBlock(dec, deps)
	if err != nil {
		t.Fatalf("RestoreVirtioBlock: %v", err)
	}
	tr, err := RestoreVirtioMMIO(trState, VirtioMMIODeps{Base: testBase, Device: blk, Mem: h.mem, IRQ: h.irq})
	if err != nil {
		t.Fatalf("RestoreVirtioMMIO: %v", err)
	}
	if got := blk.State(); got != st {
		t.Errorf("restored State = %+v, want %+v", got, st)
	}
	h.blk, h.tr, h.m.tr = blk, tr, tr
	if h.config8(blkConfigWriteback) != 0 || h.config64(0) != 2048 {
		t.Error("restored config differs")
	}
	// The restored device goes on with the same rings and disk.
	checkRoundTrips(t, h, shadow, rng, 10)

	for _, c := range []struct {
		name string
		st   VirtioBlockState
		deps VirtioBlockDeps
	}{
		{"other size", VirtioBlockState{Sectors: 2047}, deps},
		{"read-only mismatch", VirtioBlockState{Sectors: 2048, ReadOnly: true}, deps},
		{"no disk", st, VirtioBlockDeps{ID: "disk0"}},
		{"id too long", st, VirtioBlockDeps{Disk: dk, ID: "012345678901234567890"}},
	} {
		if _, err := RestoreVirtioBlock(c.st, c.deps); err == nil {
			t.Errorf("%s: restore succeeded", c.name)
		}
	}
}

// TestVirtioBlockAllocations checks that serving requests allocates nothing
// per request, whatever its size: memory is bounded by the device's own
// buffer, never by guest numbers.
func TestVirtioBlockAllocations(t *testing.T) {
	dk := newMemDisk(4 << 20)
	h := newBlkHarness(t, dk, allBlkFeatures, 4<<20, 256)
	for _, n := range []uint32{512, 1 << 20, 3 << 20} {
		h.d.nextData = dataBase
		h.submit(rd(blkHdr(blkTIn, 0)), wr(n), wr(1))
		h.blk.Notify(0) // warm up: the chain's buffer slice
		head, _ := h.d.usedElem(h.d.usedIdx() - 1)
		allocs := testing.AllocsPerRun(10, func() {
			h.d.publish(uint16(head))
			h.blk.Notify(0)
		})
		if allocs != 0 {
			t.Errorf("%d-byte read: %v allocations per request, want 0", n, allocs)
		}
		if _, used := h.d.usedElem(h.d.usedIdx() - 1); used != n+1 {
			t.Errorf("%d-byte read: used len %d", n, used)
		}
	}
}

func TestNewVirtioBlockRejects(t *testing.T) {
	if _, err := NewVirtioBlock(VirtioBlockDeps{ID: "x"}); !errors.Is(err, ErrVirtioBlock) {
		t.Errorf("no disk: %v", err)
	}
	if _, err := NewVirtioBlock(VirtioBlockDeps{Disk: newMemDisk(512), ID: "012345678901234567890"}); !errors.Is(err, ErrVirtioBlock) {
		t.Errorf("21-byte id: %v", err)
	}
	if _, err := NewVirtioBlock(VirtioBlockDeps{Disk: newMemDisk(0)}); err != nil {
		t.Errorf("empty disk: %v", err)
	}
}

// BenchmarkVirtioBlockRead measures the device side of a read request
// (pop, disk copy through the bounce buffer, guest copy, push, interrupt
// check) from an in-memory disk, so the figure is the device's own cost.
func BenchmarkVirtioBlockRead(b *testing.B) {
	for _, n := range []uint32{4 << 10, 128 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKiB", n>>10), func(b *testing.B) {
			h := newBlkHarness(b, newMemDisk(2<<20), allBlkFeatures, 4<<20, 256)
			h.submit(rd(blkHdr(blkTIn, 8)), wr(n), wr(1))
			h.blk.Notify(0)
			head, _ := h.d.usedElem(0)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				h.d.publish(uint16(head))
				h.blk.Notify(0)
			}
		})
	}
}
