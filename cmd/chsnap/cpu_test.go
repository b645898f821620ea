package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/chsnap/chsnap/vm"
)

func TestCPUCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"cpu", "--kvm-device", "/nonexistent/kvm"}, 1, "chsnap: cpu: open /nonexistent/kvm"},
		{[]string{"cpu", "--cpus", "boot=4,topology=2:2:1:2"}, 2, "has 8 vCPUs but boot=4"},
		{[]string{"cpu", "extra"}, 2, "cpu takes no arguments"},
		{[]string{"run", "--cpus", "topology=1:128:1:2"}, 2, "more than 254"},
	} {
		var out, errOut bytes.Buffer
		code := run(append([]string{"chsnap"}, tc.args...), &out, &errOut)
		if code != tc.code || !strings.Contains(errOut.String(), tc.want) || strings.Count(errOut.String(), "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want %d and one line with %q", tc.args, code, errOut.String(), tc.code, tc.want)
		}
	}
}

func TestPrintCPUModel(t *testing.T) {
	m := vm.CPUModel{Vendor: "AuthenticAMD", Family: 25, Model: 1, Topology: vm.Topology{Threads: 2, Cores: 2, Dies: 1, Packages: 2},
		APICIDs: []uint32{0, 1, 2, 3, 4, 5, 6, 7}, Caches: []vm.Cache{{Level: 1, Type: "data", Size: 32 << 10, Ways: 8, Line: 64}},
		PhysAddrBits: 48, Features: []string{"avx2", "lm"}}
	var b bytes.Buffer
	if err := printCPUModel(&b, m); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"8 vCPUs: 2 thread(s) x 2 core(s) x 1 die(s) x 2 package(s) (2:2:1:2)", "apic ids  0,1,2,3,4,5,6,7", "caches    L1d=32K/8/64", "features  avx2 lm"} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("output %q lacks %q", b.String(), w)
		}
	}
}
