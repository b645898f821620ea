package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"
)

// chunkSize is memdump.ChunkSize: chsnap compresses guest RAM in 2 MiB
// chunks, each one zstd frame of its non-zero pages.
const chunkSize = 2 << 20

// hostResult is the host's own speed on the guest's bytes, one entry per run.
type hostResult struct {
	bytes                     int64
	write, read, zstd1, zstdN []time.Duration
	xxh                       []time.Duration
	compressed                int64
	workers                   int
}

func (h hostResult) ok() bool { return len(h.write) > 0 }

// benchHost measures, on the bytes fillmix writes: writing them to a file
// with fsync, reading the file back (from the page cache: dropping it needs
// root and a sysctl, and the archive read by a restore right after a save is
// cached as well), zstd at chsnap's level the way memdump does it (per 2 MiB
// chunk, zero pages skipped, one frame each) on one core and on all, and
// xxhash64.
func benchHost(c config) (hostResult, error) {
	data := fillMix(c.fillMiB, c.seed)
	h := hostResult{bytes: int64(len(data)), workers: runtime.GOMAXPROCS(0)}
	file := filepath.Join(c.dir, "host.bin")
	defer os.Remove(file)
	buf := make([]byte, 4<<20)
	for range c.runs {
		t0 := time.Now()
		if err := writeFile(file, data); err != nil {
			return h, err
		}
		h.write = append(h.write, time.Since(t0))

		t0 = time.Now()
		f, err := os.Open(file)
		if err != nil {
			return h, err
		}
		n, err := io.CopyBuffer(io.Discard, onlyReader{f}, buf)
		f.Close()
		if err != nil || n != h.bytes {
			return h, fmt.Errorf("read %s: %d of %d bytes: %v", file, n, h.bytes, err)
		}
		h.read = append(h.read, time.Since(t0))

		d, size, err := compressChunks(data, 1)
		if err != nil {
			return h, err
		}
		h.zstd1 = append(h.zstd1, d)
		h.compressed = size
		if d, _, err = compressChunks(data, h.workers); err != nil {
			return h, err
		}
		h.zstdN = append(h.zstdN, d)

		t0 = time.Now()
		var sum uint64
		for o := 0; o < len(data); o += chunkSize {
			sum ^= xxhash.Sum64(data[o:min(o+chunkSize, len(data))])
		}
		h.xxh = append(h.xxh, time.Since(t0))
		_ = sum
		logf("host: write %v, read %v, zstd %v (1 worker) %v (%d), xxhash %v",
			last(h.write), last(h.read), last(h.zstd1), last(h.zstdN), h.workers, last(h.xxh))
	}
	return h, nil
}

func last(ds []time.Duration) time.Duration { return ds[len(ds)-1].Round(time.Millisecond) }

// onlyReader hides os.File's WriteTo so io.CopyBuffer really reads.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(b []byte) (int, error) { return o.r.Read(b) }

func writeFile(name string, data []byte) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	for o := 0; o < len(data); o += 4 << 20 {
		if _, err := f.Write(data[o:min(o+4<<20, len(data))]); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync %s: %w", name, err)
	}
	return f.Close()
}

// newEncoder is memdump's encoder: zstd level 1 (SpeedFastest), one
// goroutine, a 2 MiB window, no frame CRC.
func newEncoder() (*zstd.Encoder, error) {
	return zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(chunkSize), zstd.WithEncoderCRC(false), zstd.WithZeroFrames(true))
}

var zeroPage = make([]byte, pageSize)

// compressChunks compresses data as memdump does with the given number of
// workers and returns the time and the total compressed size.
func compressChunks(data []byte, workers int) (time.Duration, int64, error) {
	chunks := (len(data) + chunkSize - 1) / chunkSize
	next := make(chan int, chunks)
	for i := range chunks {
		next <- i
	}
	close(next)
	var (
		mu    sync.Mutex
		total int64
		wg    sync.WaitGroup
	)
	t0 := time.Now()
	for range workers {
		enc, err := newEncoder()
		if err != nil {
			return 0, 0, fmt.Errorf("zstd encoder: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			gather := make([]byte, 0, chunkSize)
			out := make([]byte, 0, chunkSize+chunkSize/8)
			var n int64
			for i := range next {
				c := data[i*chunkSize : min((i+1)*chunkSize, len(data))]
				gather = gather[:0]
				for p := 0; p < len(c); p += pageSize {
					if pg := c[p:min(p+pageSize, len(c))]; !bytes.Equal(pg, zeroPage[:len(pg)]) {
						gather = append(gather, pg...)
					}
				}
				if len(gather) > 0 {
					out = enc.EncodeAll(gather, out[:0])
					n += int64(len(out))
				}
			}
			mu.Lock()
			total += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	return time.Since(t0), total, nil
}
