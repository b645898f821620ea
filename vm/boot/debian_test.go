package boot

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// debianKernel returns the path of a file of the Debian cloud kernel cached
// by testdata/kernel/fetch.sh, or skips the test.
func debianKernel(t *testing.T, name string) string {
	t.Helper()
	dir := os.Getenv("CHSNAP_CACHE")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Skipf("SKIP: no home directory to find the kernel cache: %v", err)
		}
		dir = filepath.Join(home, ".cache", "chsnap")
	}
	p := filepath.Join(dir, "kernel", "current", name)
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		t.Skipf("SKIP: %s absent (run testdata/kernel/fetch.sh)", p)
	}
	return p
}

// TestDebianKernel parses the real Debian bzImage and its extracted vmlinux
// and sets both up in 512 MiB.
func TestDebianKernel(t *testing.T) {
	const memSize = 512 << 20
	for _, name := range []string{"vmlinuz", "vmlinux"} {
		t.Run(name, func(t *testing.T) {
			img, err := os.ReadFile(debianKernel(t, name))
			if err != nil {
				t.Fatal(err)
			}
			k, err := ParseKernel(img)
			if err != nil {
				t.Fatalf("ParseKernel(%s): %v", name, err)
			}
			switch k.Kind {
			case KindBzImage:
				h := k.BzImage.Header
				t.Logf("bzImage: protocol %#x, init_size %#x, pref_address %#x, alignment %#x, cmdline_size %d, initrd_addr_max %#x, end %#x",
					h.Version, h.InitSize, h.PrefAddress, h.KernelAlignment, h.CmdlineSize, h.InitrdAddrMax, k.End)
				if !h.RelocatableKernel || h.XLoadFlags&xlfKernel64 == 0 || h.CmdlineSize < 2047 {
					t.Errorf("unexpected Debian header %+v", h)
				}
			case KindPVH:
				t.Logf("vmlinux: PVH entry %#x, %d segments, end %#x", k.ELF.PVHEntry, len(k.ELF.Segments), k.End)
				if k.ELF.PVHEntry < KernelAddr || uint64(k.ELF.PVHEntry) >= k.End {
					t.Errorf("PVH entry %#x outside the kernel [1 MiB, %#x)", k.ELF.PVHEntry, k.End)
				}
			}
			mem := newSparseMem(memSize)
			e, err := Setup(mem, Config{Kernel: img, Initrd: make([]byte, 1<<20), Cmdline: "console=ttyS0", MemSize: memSize, RSDP: ACPIAddr})
			if err != nil {
				t.Fatalf("Setup(%s): %v", name, err)
			}
			if e.InitrdAddr < k.End {
				t.Errorf("initrd at %#x overlaps the kernel ending at %#x", e.InitrdAddr, k.End)
			}
		})
	}
}
