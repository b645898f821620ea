package vm

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/chsnap/chsnap/kvmstate"
	"github.com/chsnap/chsnap/memdump"
)

var errHookReached = errors.New("test hook: /dev/kvm would be opened now")

// hookKVM replaces openKVM for the test and counts the calls.
func hookKVM(t *testing.T) *int {
	t.Helper()
	calls := new(int)
	saved := openKVM
	openKVM = func(string) (*kvmstate.System, error) {
		*calls++
		return nil, errHookReached
	}
	t.Cleanup(func() { openKVM = saved })
	return calls
}

// TestRestoreRefusesBeforeKVM: every archive Restore refuses is refused
// before the KVM device is opened (issue 14.2): truncations anywhere, a
// flipped byte, a memory index larger than the config's memory, and a
// config asking for more memory than the host has. The intact archive, as
// a control, does reach the device.
func TestRestoreRefusesBeforeKVM(t *testing.T) {
	calls := hookKVM(t)
	golden, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{}
	for _, n := range []int{0, 10, 64, len(golden) / 7, len(golden) / 2, len(golden) - 100, len(golden) - 1} {
		cases["truncated to "+FormatSize(uint64(n))] = golden[:n]
	}
	flipped := bytes.Clone(golden)
	flipped[len(flipped)*2/3] ^= 0x40
	cases["a byte flipped in memory"] = flipped

	st, mem := goldenState(t)
	big, err := memdump.New("chsnap-test-big", 2*st.Config.Memory)
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	var buf bytes.Buffer
	if err := writeArchive(&buf, st, big, nil); err != nil {
		t.Fatal(err)
	}
	cases["a memory index larger than the config's memory"] = bytes.Clone(buf.Bytes())

	huge := *st
	huge.Config.Memory = MaxMemory
	buf.Reset()
	if err := writeArchive(&buf, &huge, mem, nil); err != nil {
		t.Fatal(err)
	}
	if checkHostLimits(Config{Shape: Shape{Memory: MaxMemory}}) == nil {
		t.Log("this host has 1 TiB of memory: the over-sized config case is skipped")
	} else {
		cases["a config with more memory than the host"] = bytes.Clone(buf.Bytes())
	}

	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			*calls = 0
			v, err := Restore(bytes.NewReader(data), RestoreOptions{})
			if err == nil {
				v.Close()
				t.Fatal("restored")
			}
			if errors.Is(err, errHookReached) || *calls != 0 {
				t.Fatalf("refused with %v, but only after opening the KVM device (%d calls)", err, *calls)
			}
		})
	}
	*calls = 0
	if _, err := Restore(bytes.NewReader(golden), RestoreOptions{}); !errors.Is(err, errHookReached) || *calls != 1 {
		t.Errorf("intact archive: %v after %d calls, want the hook's error after 1", err, *calls)
	}
}

// TestNewRefusesBeforeKVM: a kernel that does not load is refused before
// the KVM device is opened (it is loaded into guest RAM before KVM knows of
// the RAM).
func TestNewRefusesBeforeKVM(t *testing.T) {
	calls := hookKVM(t)
	for name, cfg := range map[string]Config{
		"not a kernel": {Kernel: []byte("not a kernel"), Shape: Shape{CPUs: 1, Memory: 64 << 20}},
	} {
		t.Run(name, func(t *testing.T) {
			*calls = 0
			v, err := New(cfg)
			if err == nil {
				v.Close()
				t.Fatal("created")
			}
			if errors.Is(err, errHookReached) || *calls != 0 {
				t.Fatalf("refused with %v, but only after opening the KVM device", err)
			}
		})
	}
}
