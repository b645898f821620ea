package main

// This file recomputes the test guest's fillmix pages on the host
// (testdata/guest/fillmix.c documents the recipe; keep the two in step).

const pageSize = 4096

// Page classes of a fillmix page.
const (
	classZero   = 0 // classes 0 and 1
	classText   = 2
	classRandom = 3
)

var words = [64]string{
	"the", "of", "and", "to", "in", "is", "that", "for",
	"it", "as", "was", "with", "be", "by", "on", "not",
	"he", "this", "are", "or", "his", "from", "at", "which",
	"but", "have", "an", "had", "they", "you", "were", "their",
	"one", "all", "we", "can", "her", "has", "there", "been",
	"if", "more", "when", "will", "would", "who", "so", "no",
	"kernel", "memory", "page", "snapshot", "restore", "guest", "virtual", "machine",
	"file", "system", "process", "thread", "device", "queue", "buffer", "return",
}

// mix is splitmix64's output function after its increment, as in the guest.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// pageClass returns the class of page i for the mixed seed s = mix(SEED).
func pageClass(s, i uint64) int {
	return int((i + mix(s^(i>>2))) & 3)
}

// fillPage writes page i of `fillmix MIB seed` into dst (pageSize bytes).
func fillPage(dst []byte, seed, i uint64) {
	dst = dst[:pageSize]
	s := mix(seed)
	key := mix(s + i)
	switch pageClass(s, i) {
	case classText:
		x := key | 1
		o := 0
		for o < pageSize {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			o += copy(dst[o:], words[x&63])
			if o < pageSize {
				if (x>>8)&7 == 0 {
					dst[o] = '\n'
				} else {
					dst[o] = ' '
				}
				o++
			}
		}
	case classRandom:
		for j := uint64(0); j < pageSize/8; j++ {
			v := mix(key + j)
			for b := range 8 {
				dst[j*8+uint64(b)] = byte(v >> (8 * b))
			}
		}
	default:
		clear(dst)
	}
}

// fillMix returns the bytes `fillmix MIB seed` writes, in page order.
func fillMix(mib int, seed uint64) []byte {
	buf := make([]byte, mib<<20)
	for i := range uint64(len(buf) / pageSize) {
		fillPage(buf[i*pageSize:], seed, i)
	}
	return buf
}
