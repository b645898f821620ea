package vm

import (
	"fmt"

	"github.com/chsnap/chsnap/kvmstate"
)

// Cache is one CPU cache as a guest decodes it from CPUID.
type Cache struct {
	// Level is 1, 2, 3, …
	Level int `json:"level"`
	// Type is "data", "instruction" or "unified".
	Type string `json:"type"`
	// Size is in bytes; Ways is the associativity (0 when fully
	// associative); Line is the line size in bytes.
	Size int `json:"size"`
	Ways int `json:"ways"`
	Line int `json:"line"`
	// SharedBy is how many logical CPUs the CPUID sharing field says share
	// it (0 when the leaf has no such field).
	SharedBy int `json:"shared_by,omitempty"`
}

// Name is the cache's short name: L1d, L1i, L2, L3.
func (c Cache) Name() string {
	switch c.Type {
	case "data":
		return fmt.Sprintf("L%dd", c.Level)
	case "instruction":
		return fmt.Sprintf("L%di", c.Level)
	}
	return fmt.Sprintf("L%d", c.Level)
}

// String renders SIZE/WAYS/LINE, as the test guest's caches command does.
func (c Cache) String() string {
	return fmt.Sprintf("%s=%s/%d/%d", c.Name(), formatCacheSize(c.Size), c.Ways, c.Line)
}

// formatCacheSize renders bytes as K or M, the largest unit that divides.
func formatCacheSize(n int) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%dM", n>>20)
	}
	return fmt.Sprintf("%dK", n>>10)
}

// cacheTypes are the type codes of leaf 4 and 0x8000_001D EAX[4:0].
var cacheTypes = map[uint32]string{1: "data", 2: "instruction", 3: "unified"}

// decodeCaches reads the caches a guest sees from its CPUID the way Linux
// does: leaf 4 on Intel, 0x8000_001D on AMD with TopoExt, else AMD's
// 0x8000_0005 (L1) and 0x8000_0006 (L2, L3).
func decodeCaches(entries []kvmstate.CPUIDEntry) []Cache {
	amd := isAMD(cpuidVendor(entries))
	leaf := uint32(4)
	if amd {
		leaf = 0x8000_001D
		e := findCPUID(entries, 0x8000_0001, 0)
		if e == nil || e.ECX&(1<<22) == 0 || maxLeaf(entries, 0x8000_0000) < leaf {
			return amdLegacyCaches(entries)
		}
	} else if maxLeaf(entries, 0) < 4 {
		return nil
	}
	var out []Cache
	for i := uint32(0); i < 16; i++ {
		e := findCPUID(entries, leaf, i)
		if e == nil || e.Function != leaf || e.EAX&0x1F == 0 {
			break
		}
		t, ok := cacheTypes[e.EAX&0x1F]
		if !ok {
			continue
		}
		ways := int(e.EBX>>22) + 1
		parts := int(e.EBX>>12&0x3FF) + 1
		line := int(e.EBX&0xFFF) + 1
		sets := int(e.ECX) + 1
		c := Cache{Level: int(e.EAX >> 5 & 7), Type: t, Size: ways * parts * line * sets, Ways: ways, Line: line,
			SharedBy: int(e.EAX>>14&0xFFF) + 1}
		if e.EAX&(1<<9) != 0 { // fully associative
			c.Ways = 0
		}
		out = append(out, c)
	}
	return out
}

// amdAssoc decodes the associativity field of 0x8000_0006 (L2, L3); -1 is
// fully associative, 0 disabled or reserved.
var amdAssoc = map[uint32]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8, 8: 16, 0xA: 32, 0xB: 48, 0xC: 64, 0xD: 96, 0xE: 128, 0xF: -1}

// amdLegacyCaches decodes 0x8000_0005 and 0x8000_0006.
func amdLegacyCaches(entries []kvmstate.CPUIDEntry) []Cache {
	var out []Cache
	maxExt := maxLeaf(entries, 0x8000_0000)
	l1ways := func(r uint32) int {
		if w := int(r >> 16 & 0xFF); w != 0xFF {
			return w
		}
		return 0
	}
	if e := findCPUID(entries, 0x8000_0005, 0); e != nil && maxExt >= 0x8000_0005 {
		if e.ECX != 0 {
			out = append(out, Cache{Level: 1, Type: "data", Size: int(e.ECX>>24) << 10, Ways: l1ways(e.ECX), Line: int(e.ECX & 0xFF)})
		}
		if e.EDX != 0 {
			out = append(out, Cache{Level: 1, Type: "instruction", Size: int(e.EDX>>24) << 10, Ways: l1ways(e.EDX), Line: int(e.EDX & 0xFF)})
		}
	}
	if e := findCPUID(entries, 0x8000_0006, 0); e != nil && maxExt >= 0x8000_0006 {
		if w := amdAssoc[e.ECX>>12&0xF]; w != 0 {
			out = append(out, Cache{Level: 2, Type: "unified", Size: int(e.ECX>>16) << 10, Ways: max(w, 0), Line: int(e.ECX & 0xFF)})
		}
		if w := amdAssoc[e.EDX>>12&0xF]; w != 0 {
			out = append(out, Cache{Level: 3, Type: "unified", Size: int(e.EDX>>18) << 19, Ways: max(w, 0), Line: int(e.EDX & 0xFF)})
		}
	}
	return out
}
