//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// replyFields parses "word k=v k=v ..." into a map.
func replyFields(reply string) map[string]string {
	m := map[string]string{}
	for _, f := range strings.Fields(reply)[1:] {
		if k, v, ok := strings.Cut(f, "="); ok {
			m[k] = v
		}
	}
	return m
}

// cpuModel is the part of `chsnap cpu --json` the tests compare.
type cpuModel struct {
	Topology struct{ Threads, Cores, Dies, Packages int } `json:"topology"`
	APICIDs  []uint32                                     `json:"apic_ids"`
	Caches   []struct {
		Level int    `json:"level"`
		Type  string `json:"type"`
		Size  int    `json:"size"`
		Ways  int    `json:"ways"`
		Line  int    `json:"line"`
	} `json:"caches"`
}

func chsnapCPU(t *testing.T, cpus string) cpuModel {
	t.Helper()
	out, err := exec.Command(chsnapBin, "cpu", "--cpus", cpus, "--json").Output()
	if err != nil {
		t.Fatalf("chsnap cpu --cpus %s --json: %v", cpus, err)
	}
	var m cpuModel
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("chsnap cpu --json: %v\n%s", err, out)
	}
	return m
}

func bitsFor(n int) int {
	b := 0
	for 1<<b < n {
		b++
	}
	return b
}

// TestCPUTopology boots the test guest with several vCPU counts and
// topologies and checks that what the guest decodes from CPUID (leaf 0x1F or
// 0xB shifts applied to the MADT's APIC ids, leaf 1, AMD 0x8000_0008) agrees
// with the topology asked for and with `chsnap cpu`.
func TestCPUTopology(t *testing.T) {
	needKVM(t)
	for _, tc := range []struct {
		cpus                              string
		n, threads, cores, dies, packages int
	}{
		{"1", 1, 1, 1, 1, 1},
		{"2", 2, 1, 2, 1, 1},
		{"4", 4, 1, 4, 1, 1},
		{"8", 8, 1, 8, 1, 1},
		{"boot=8,topology=2:2:1:2", 8, 2, 2, 1, 2},
		{"boot=6,topology=1:3:1:2", 6, 1, 3, 1, 2},
	} {
		t.Run(tc.cpus, func(t *testing.T) {
			p := startVM(t, "--cpus", tc.cpus, "--memory", "128M")
			if _, err := p.con.Expect(fmt.Sprintf(`^chsnap-guest ready cpus=%d$`, tc.n), 60*time.Second); err != nil {
				t.Fatalf("%v\nconsole:\n%s\nstderr:\n%s", err, p.con.Transcript(), p.stderr)
			}
			reply := p.command(t, "topo", "topo ")
			t.Logf("%s: %s", tc.cpus, reply)
			f := replyFields(reply)
			// Each field of the APIC id is as wide as its count needs, so
			// counts that are not powers of two leave gaps (1:3:1:2 gives
			// 0,1,2,4,5,6).
			var ids []string
			for i := range tc.n {
				thread, core := i%tc.threads, (i/tc.threads)%tc.cores
				die, pkg := (i/(tc.threads*tc.cores))%tc.dies, i/(tc.threads*tc.cores*tc.dies)
				tw, cw, dw := bitsFor(tc.threads), bitsFor(tc.cores), bitsFor(tc.dies)
				id := thread | core<<tw | die<<(tw+cw) | pkg<<(tw+cw+dw)
				ids = append(ids, strconv.Itoa(id))
			}
			perPkg := tc.threads * tc.cores * tc.dies
			want := map[string]string{
				"cpus": strconv.Itoa(tc.n), "apicids": strings.Join(ids, ","),
				"threads": strconv.Itoa(tc.threads), "cores": strconv.Itoa(tc.cores),
				"dies": strconv.Itoa(tc.dies), "packages": strconv.Itoa(tc.packages),
				"apicid": "0", "x2apicid": "0",
				"lp": strconv.Itoa(1 << (bitsFor(tc.threads) + bitsFor(tc.cores) + bitsFor(tc.dies))),
			}
			if _, amd := f["nc"]; amd {
				want["nc"] = strconv.Itoa(perPkg)
			}
			for k, v := range want {
				if f[k] != v {
					t.Errorf("guest reports %s=%s, want %s", k, f[k], v)
				}
			}
			if f["leaf"] != "0xb" && f["leaf"] != "0x1f" {
				t.Errorf("guest decoded the topology from %q, want leaf 0xb or 0x1f", f["leaf"])
			}
			p.command(t, "cpus", fmt.Sprintf("cpus %d", tc.n))
			p.send(t, "poweroff")
			if st := p.wait(t, 30*time.Second); st != 0 {
				t.Errorf("exit status %d after poweroff; stderr:\n%s", st, p.stderr)
			}

			m := chsnapCPU(t, tc.cpus)
			if got := m.Topology; got.Threads != tc.threads || got.Cores != tc.cores || got.Dies != tc.dies || got.Packages != tc.packages {
				t.Errorf("chsnap cpu topology %+v", got)
			}
			var mids []string
			for _, id := range m.APICIDs {
				mids = append(mids, fmt.Sprint(id))
			}
			if strings.Join(mids, ",") != f["apicids"] {
				t.Errorf("chsnap cpu APIC ids %v, guest %s", mids, f["apicids"])
			}
		})
	}
}

// hostCaches reads /sys/devices/system/cpu/cpu0/cache as the test guest's
// caches command prints them. Under nested KVM this is the L1 guest's view,
// which is what its KVM offers the test guest.
func hostCaches(t *testing.T) []string {
	t.Helper()
	dirs, _ := filepath.Glob("/sys/devices/system/cpu/cpu0/cache/index*")
	if len(dirs) == 0 {
		t.Skip("SKIPPED: this host's kernel reports no caches in /sys/devices/system/cpu/cpu0/cache")
	}
	slices.Sort(dirs)
	var out []string
	for _, d := range dirs {
		read := func(name string) string {
			b, err := os.ReadFile(filepath.Join(d, name))
			if err != nil {
				t.Fatalf("read %s: %v", filepath.Join(d, name), err)
			}
			return strings.TrimSpace(string(b))
		}
		suffix := map[string]string{"Data": "d", "Instruction": "i", "Unified": ""}[read("type")]
		size := read("size") // e.g. 32K
		kb, err := strconv.Atoi(strings.TrimSuffix(size, "K"))
		if err != nil {
			t.Fatalf("%s/size = %q", d, size)
		}
		if kb >= 1024 && kb%1024 == 0 {
			size = fmt.Sprintf("%dM", kb/1024)
		}
		out = append(out, fmt.Sprintf("L%s%s=%s/%s/%s", read("level"), suffix, size, read("ways_of_associativity"), read("coherency_line_size")))
	}
	return out
}

// TestCPUCaches checks that the caches the test guest decodes from CPUID
// are the host's, as its sysfs reports them, and as `chsnap cpu` reports.
func TestCPUCaches(t *testing.T) {
	needKVM(t)
	want := hostCaches(t)
	p := startVM(t, "--cpus", "boot=4,topology=2:2:1:1", "--memory", "128M")
	if _, err := p.con.Expect(`^chsnap-guest ready cpus=4$`, 60*time.Second); err != nil {
		t.Fatalf("%v\nconsole:\n%s\nstderr:\n%s", err, p.con.Transcript(), p.stderr)
	}
	reply := p.command(t, "caches", "caches ")
	t.Logf("guest: %s; host sysfs: %s", reply, strings.Join(want, " "))
	got := strings.Fields(reply)[1:]
	if !slices.Equal(got, want) {
		t.Errorf("guest caches %v, host sysfs %v", got, want)
	}
	p.send(t, "poweroff")
	p.wait(t, 30*time.Second)

	m := chsnapCPU(t, "boot=4,topology=2:2:1:1")
	var mc []string
	for _, c := range m.Caches {
		suffix := map[string]string{"data": "d", "instruction": "i", "unified": ""}[c.Type]
		size := fmt.Sprintf("%dK", c.Size>>10)
		if c.Size >= 1<<20 && c.Size%(1<<20) == 0 {
			size = fmt.Sprintf("%dM", c.Size>>20)
		}
		mc = append(mc, fmt.Sprintf("L%d%s=%s/%d/%d", c.Level, suffix, size, c.Ways, c.Line))
	}
	if !slices.Equal(mc, got) {
		t.Errorf("chsnap cpu caches %v, guest %v", mc, got)
	}
}
