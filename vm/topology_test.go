package vm

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseCPUs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Topology
		err  string
	}{
		{"1", Topology{1, 1, 1, 1}, ""},
		{"8", Topology{1, 8, 1, 1}, ""},
		{" 6 ", Topology{1, 6, 1, 1}, ""},
		{"boot=4", Topology{1, 4, 1, 1}, ""},
		{"boot=8,topology=2:2:1:2", Topology{2, 2, 1, 2}, ""},
		{"topology=2:2:1:2", Topology{2, 2, 1, 2}, ""},
		{"topology=1:1:1:3,boot=3", Topology{1, 1, 1, 3}, ""},
		{"0", Topology{}, "outside 1..254"},
		{"255", Topology{}, "outside 1..254"},
		{"boot=4,topology=2:2:1:2", Topology{}, "has 8 vCPUs but boot=4"},
		{"boot=x", Topology{}, "not a number"},
		{"boot=4,sockets=2", Topology{}, `unknown key "sockets"`},
		{"topology=2:2:2", Topology{}, "THREADS:CORES:DIES:PACKAGES"},
		{"topology=0:2:1:1", Topology{}, "not a count"},
		{"topology=1:3:1:2", Topology{1, 3, 1, 2}, ""},
		{"topology=3:2:1:1", Topology{3, 2, 1, 1}, ""},
		{"topology=1:128:1:2", Topology{}, "more than 254"},
		{"boot=254,topology=1:1:1:254", Topology{1, 1, 1, 254}, ""},
		{"four", Topology{}, "not KEY=VALUE"},
		{"", Topology{}, "not KEY=VALUE"},
	} {
		got, err := ParseCPUs(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrConfig) {
				t.Errorf("ParseCPUs(%q) = %v, %v; want an ErrConfig containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseCPUs(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestTopologyAPICIDs(t *testing.T) {
	for _, tc := range []struct {
		topo Topology
		ids  []uint32
	}{
		{Topology{1, 1, 1, 1}, []uint32{0}},
		{Topology{1, 3, 1, 1}, []uint32{0, 1, 2}},
		{Topology{2, 2, 1, 2}, []uint32{0, 1, 2, 3, 4, 5, 6, 7}},
		// Unvalidated shapes show the packing: threads 3 need 2 bits.
		{Topology{3, 2, 1, 1}, []uint32{0, 1, 2, 4, 5, 6}},
		{Topology{1, 3, 1, 2}, []uint32{0, 1, 2, 4, 5, 6}},
		{Topology{2, 1, 3, 1}, []uint32{0, 1, 2, 3, 4, 5}},
		{Topology{1, 1, 3, 2}, []uint32{0, 1, 2, 4, 5, 6}},
	} {
		if got := tc.topo.APICIDs(); !slices.Equal(got, tc.ids) {
			t.Errorf("%s: APIC ids %v, want %v", tc.topo, got, tc.ids)
		}
	}
	topo := Topology{2, 2, 2, 2}
	if p := topo.Place(13); p != (Place{Thread: 1, Core: 0, Die: 1, Package: 1}) {
		t.Errorf("Place(13) in %s = %+v", topo, p)
	}
}

func TestConfigTopology(t *testing.T) {
	c := Config{Kernel: []byte{1}, Shape: Shape{CPUs: 8, Memory: DefaultMemory}}
	if err := c.Validate(); err != nil || c.topology() != DefaultTopology(8) {
		t.Fatalf("default: %v, %v", err, c.topology())
	}
	c.Topology = Topology{2, 2, 1, 2}
	if err := c.Validate(); err != nil || c.topology() != c.Topology {
		t.Fatalf("2:2:1:2: %v", err)
	}
	c.CPUs = 4
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "not 4") {
		t.Errorf("mismatched topology accepted: %v", err)
	}
}

func TestGrowFDTable(t *testing.T) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if err := growFDTable(64); err != nil {
		t.Fatal(err)
	}
	// The high descriptor is closed again: the next open gets a low number.
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	if fd >= 64+255 {
		t.Errorf("next fd %d: the high descriptor leaked", fd)
	}
}

// TestTopologyIDsWithGaps: counts that are not powers of two leave gaps in the
// APIC ids (each field is as wide as its count needs), which the KVM vCPU ids
// then follow.
func TestTopologyIDsWithGaps(t *testing.T) {
	got := Topology{Threads: 1, Cores: 3, Dies: 1, Packages: 2}.APICIDs()
	want := []uint32{0, 1, 2, 4, 5, 6}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("1:3:1:2 APIC ids %v, want %v", got, want)
	}
}
