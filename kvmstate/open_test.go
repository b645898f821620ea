package kvmstate

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestOpenErrorMapping(t *testing.T) {
	const path = "/dev/kvm-test"
	for _, tc := range []struct {
		errno unix.Errno
		want  error // nil: neither sentinel
	}{
		{unix.ENOENT, ErrNoKVM},
		{unix.ENODEV, ErrNoKVM},
		{unix.ENXIO, ErrNoKVM},
		{unix.EACCES, ErrKVMPermission},
		{unix.EPERM, ErrKVMPermission},
		{unix.EIO, nil},
		{unix.EBUSY, nil},
	} {
		t.Run(unix.ErrnoName(tc.errno), func(t *testing.T) {
			err := openError(path, tc.errno)
			if !errors.Is(err, tc.errno) {
				t.Errorf("errors.Is(%v, %v) = false, want the errno kept", err, tc.errno)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name %s", err, path)
			}
			for _, s := range []error{ErrNoKVM, ErrKVMPermission} {
				if got, want := errors.Is(err, s), s == tc.want; got != want {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", err, s, got, want)
				}
			}
		})
	}
}

func TestOpenMissingDevice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kvm")
	s, err := Open(path)
	if err == nil {
		s.Close()
		t.Fatalf("Open(%s) succeeded on a missing path", path)
	}
	if !errors.Is(err, ErrNoKVM) {
		t.Errorf("Open(%s) = %v, want ErrNoKVM", path, err)
	}
	if want := "open " + path + ": kvm device absent: no such file or directory"; err.Error() != want {
		t.Errorf("Open error = %q, want %q", err, want)
	}
}

func TestOpenNotPermitted(t *testing.T) {
	// Root passes DAC checks on ordinary files; kernfs still refuses to open
	// a read-only attribute for writing with EACCES, whoever asks.
	path := "/sys/devices/system/cpu/online"
	if os.Geteuid() != 0 {
		path = filepath.Join(t.TempDir(), "kvm")
		if err := os.WriteFile(path, nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
	}
	if err != unix.EACCES {
		t.Skipf("cannot make open(%s) fail with EACCES here (got %v); TestOpenErrorMapping covers the mapping", path, err)
	}
	s, err := Open(path)
	if err == nil {
		s.Close()
		t.Fatalf("Open(%s) succeeded", path)
	}
	if !errors.Is(err, ErrKVMPermission) || errors.Is(err, ErrNoKVM) {
		t.Errorf("Open(%s) = %v, want ErrKVMPermission only", path, err)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not permitted") {
		t.Errorf("Open error %q should name %s and say not permitted", err, path)
	}
}

func TestOpenNotKVM(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kvm")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path)
	if err == nil {
		s.Close()
		t.Fatalf("Open(%s) succeeded on a regular file", path)
	}
	if errors.Is(err, ErrNoKVM) || errors.Is(err, ErrKVMPermission) {
		t.Errorf("Open(%s) = %v, want neither sentinel", path, err)
	}
	var ie *IoctlError
	if !errors.As(err, &ie) || ie.Ioctl != "KVM_GET_API_VERSION" || ie.Errno != unix.ENOTTY {
		t.Errorf("Open(%s) = %v, want KVM_GET_API_VERSION failing with ENOTTY", path, err)
	}
}

func TestCloseTwice(t *testing.T) {
	fd, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	s := &System{path: "/dev/null", fd: fd}
	if err := s.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
	vm := &VM{fd: -1}
	if err := vm.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("Close of closed VM = %v, want ErrClosed", err)
	}
	v := &VCPU{fd: -1}
	if err := v.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("Close of closed VCPU = %v, want ErrClosed", err)
	}
}

func TestIoctlErrorText(t *testing.T) {
	err := error(&IoctlError{Ioctl: "KVM_SET_SREGS", Errno: unix.EINVAL})
	if got, want := err.Error(), "kvm: KVM_SET_SREGS: invalid argument"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, unix.EINVAL) {
		t.Errorf("errors.Is(%v, EINVAL) = false", err)
	}
	m := &MSRError{Ioctl: "KVM_SET_MSRS", Index: 0x6e0, Done: 12, Total: 40}
	if got, want := m.Error(), "kvm: KVM_SET_MSRS: msr 0x6e0 refused after 12 of 40 msrs"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
