package devstate

import (
	"math"
	"testing"

	"github.com/chsnap/chsnap/memdump"
)

// memdump.Memory is what the vm hands devices.
var _ Memory = (*memdump.Memory)(nil)

func TestCheckRange(t *testing.T) {
	plain := &sliceMem{b: make([]byte, 4096)}
	slicing := &slicingMem{sliceMem{b: make([]byte, 4096)}}
	for _, tc := range []struct {
		name   string
		gpa, n uint64
		ok     bool
	}{
		{"whole", 0, 4096, true},
		{"last byte", 4095, 1, true},
		{"empty at start", 0, 0, true},
		{"one past end", 4095, 2, false},
		{"starts past end", 4096, 1, false},
		{"overflows", math.MaxUint64 - 1, 4, false},
		{"above int64", 1 << 63, 1, false},
		{"huge length", 16, math.MaxUint32, false},
	} {
		for _, m := range []Memory{plain, slicing} {
			err := checkRange(m, tc.gpa, tc.n)
			if (err == nil) != tc.ok {
				t.Errorf("%s (%T): checkRange(%#x, %#x) = %v, want ok %v", tc.name, m, tc.gpa, tc.n, err, tc.ok)
			}
		}
	}
}
