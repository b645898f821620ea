package vm

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// Topology is the shape of a VM's vCPUs: threads per core, cores per die,
// dies per package and packages. The zero Topology means the default for a
// VM's CPU count: one package of CPUs cores with one thread each (Cloud
// Hypervisor's default since v40; a multi-socket guest calibrates its TSC
// per socket and boots slower).
//
// vCPU i sits at thread i%Threads of core (i/Threads)%Cores, and so on up;
// its APIC id packs those fields as the x2APIC id does:
// thread | core<<tw | die<<(tw+cw) | package<<(tw+cw+dw), each width the
// ceiling of log2 of its count.
type Topology struct {
	Threads  int `json:"threads"`  // threads per core
	Cores    int `json:"cores"`    // cores per die
	Dies     int `json:"dies"`     // dies per package
	Packages int `json:"packages"` // packages (sockets)
}

// DefaultTopology is one package of n single-threaded cores.
func DefaultTopology(n int) Topology {
	return Topology{Threads: 1, Cores: n, Dies: 1, Packages: 1}
}

// IsZero reports whether t is unset.
func (t Topology) IsZero() bool { return t == Topology{} }

// CPUs is the number of vCPUs t describes.
func (t Topology) CPUs() int { return t.Threads * t.Cores * t.Dies * t.Packages }

// String renders t as THREADS:CORES:DIES:PACKAGES, the --cpus syntax.
func (t Topology) String() string {
	return fmt.Sprintf("%d:%d:%d:%d", t.Threads, t.Cores, t.Dies, t.Packages)
}

// Validate checks the counts, the vCPU total and the APIC ids they give.
func (t Topology) Validate() error {
	for _, f := range []struct {
		name string
		n    int
	}{{"threads", t.Threads}, {"cores", t.Cores}, {"dies", t.Dies}, {"packages", t.Packages}} {
		if f.n < 1 || f.n > MaxCPUs {
			return fmt.Errorf("%w: topology %s: %s %d is outside 1..%d", ErrConfig, t, f.name, f.n, MaxCPUs)
		}
	}
	if n := t.CPUs(); n > MaxCPUs {
		return fmt.Errorf("%w: topology %s has %d vCPUs, more than %d", ErrConfig, t, n, MaxCPUs)
	}
	tw, cw, dw := t.widths()
	if last := t.APICID(t.CPUs() - 1); last >= 0xFF || tw+cw+dw > 8 {
		return fmt.Errorf("%w: topology %s needs APIC id %d, xAPIC ids must be below 255", ErrConfig, t, last)
	}
	// vCPU i is created with KVM id APICID(i) (vm/vcpu.go), which KVM makes
	// its initial APIC id, so the ids may have gaps (e.g. 3 cores per die
	// use ids 0, 1, 2, then 4).
	return nil
}

// widths are the APIC id bit widths of the thread, core and die fields.
func (t Topology) widths() (tw, cw, dw int) {
	return ceilLog2(t.Threads), ceilLog2(t.Cores), ceilLog2(t.Dies)
}

// ceilLog2 is the number of bits that index n things (0 for n ≤ 1).
func ceilLog2(n int) int {
	if n <= 1 {
		return 0
	}
	return bits.Len(uint(n - 1))
}

// Place is where a vCPU sits in its topology: its thread within its core,
// core within its die, die within its package, and package.
type Place struct {
	Thread, Core, Die, Package int
}

// Place returns vCPU i's thread, core, die and package.
func (t Topology) Place(i int) Place {
	return Place{
		Thread:  i % t.Threads,
		Core:    i / t.Threads % t.Cores,
		Die:     i / (t.Threads * t.Cores) % t.Dies,
		Package: i / (t.Threads * t.Cores * t.Dies),
	}
}

// APICID returns vCPU i's (x2)APIC id.
func (t Topology) APICID(i int) uint32 {
	tw, cw, dw := t.widths()
	p := t.Place(i)
	return uint32(p.Thread | p.Core<<tw | p.Die<<(tw+cw) | p.Package<<(tw+cw+dw))
}

// APICIDs returns the APIC id of every vCPU, in vCPU order.
func (t Topology) APICIDs() []uint32 {
	ids := make([]uint32, t.CPUs())
	for i := range ids {
		ids[i] = t.APICID(i)
	}
	return ids
}

// ParseTopology parses THREADS:CORES:DIES:PACKAGES.
func ParseTopology(s string) (Topology, error) {
	f := strings.Split(s, ":")
	if len(f) != 4 {
		return Topology{}, fmt.Errorf("%w: topology %q: want THREADS:CORES:DIES:PACKAGES, e.g. 2:2:1:2", ErrConfig, s)
	}
	var n [4]int
	for i, x := range f {
		v, err := strconv.Atoi(strings.TrimSpace(x))
		if err != nil || v < 1 || v > MaxCPUs {
			return Topology{}, fmt.Errorf("%w: topology %q: %q is not a count from 1 to %d", ErrConfig, s, x, MaxCPUs)
		}
		n[i] = v
	}
	t := Topology{Threads: n[0], Cores: n[1], Dies: n[2], Packages: n[3]}
	return t, t.Validate()
}

// ParseCPUs parses a --cpus value: a plain count N, or
// boot=N[,topology=THREADS:CORES:DIES:PACKAGES]. With a topology and no
// boot= the count is the topology's; with both they must agree. The result
// is always a full, validated Topology.
func ParseCPUs(s string) (Topology, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.Atoi(s); err == nil {
		return cpusTopology(n, Topology{})
	}
	boot := 0
	var topo Topology
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return Topology{}, fmt.Errorf("%w: cpus %q: %q is not KEY=VALUE (use N or boot=N,topology=T:C:D:P)", ErrConfig, s, kv)
		}
		switch strings.TrimSpace(k) {
		case "boot":
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return Topology{}, fmt.Errorf("%w: cpus %q: boot=%q is not a number", ErrConfig, s, v)
			}
			if n < 1 || n > MaxCPUs {
				return Topology{}, fmt.Errorf("%w: cpus %q: %d vCPUs is outside 1..%d", ErrConfig, s, n, MaxCPUs)
			}
			boot = n
		case "topology":
			t, err := ParseTopology(strings.TrimSpace(v))
			if err != nil {
				return Topology{}, err
			}
			topo = t
		default:
			return Topology{}, fmt.Errorf("%w: cpus %q: unknown key %q (want boot or topology)", ErrConfig, s, k)
		}
	}
	if boot == 0 {
		if topo.IsZero() {
			return Topology{}, fmt.Errorf("%w: cpus %q: no boot=N", ErrConfig, s)
		}
		boot = topo.CPUs()
	}
	return cpusTopology(boot, topo)
}

// cpusTopology checks that topo (zero for the default) describes n vCPUs and
// returns the full topology.
func cpusTopology(n int, topo Topology) (Topology, error) {
	if n < 1 || n > MaxCPUs {
		return Topology{}, fmt.Errorf("%w: %d vCPUs is outside 1..%d", ErrConfig, n, MaxCPUs)
	}
	if topo.IsZero() {
		topo = DefaultTopology(n)
	}
	if topo.CPUs() != n {
		return Topology{}, fmt.Errorf("%w: topology %s has %d vCPUs but boot=%d", ErrConfig, topo, topo.CPUs(), n)
	}
	return topo, topo.Validate()
}
