package vm

import (
	"errors"
	"testing"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"512", 512 << 20, true},
		{"512M", 512 << 20, true},
		{"512MiB", 512 << 20, true},
		{"512mb", 512 << 20, true},
		{"2G", 2 << 30, true},
		{"1T", 1 << 40, true},
		{"4096K", 4 << 20, true},
		{"4 GiB", 4 << 30, true},
		{"1 000", 0, false},
		{"1000 B", 1000, true},
		{"", 0, false},
		{"M", 0, false},
		{"-1G", 0, false},
		{"1.5G", 0, false},
		{"12X", 0, false},
		{"99999999999999999999G", 0, false},
		{"9000000000000T", 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSize(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseSize(%q) = %d, %v; want ok=%v", tc.in, got, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrConfig) {
				t.Errorf("error %v is not ErrConfig", err)
			}
			if got != tc.want {
				t.Errorf("ParseSize(%q) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	good := Config{Kernel: []byte{1}, Shape: Shape{CPUs: 1, Memory: 512 << 20}}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	for name, mut := range map[string]func(*Config){
		"no kernel":   func(c *Config) { c.Kernel = nil },
		"zero cpus":   func(c *Config) { c.CPUs = 0 },
		"255 cpus":    func(c *Config) { c.CPUs = 255 },
		"tiny memory": func(c *Config) { c.Memory = 1 << 20 },
		"odd memory":  func(c *Config) { c.Memory = 513 << 20 },
		"huge memory": func(c *Config) { c.Memory = 2 << 40 },
	} {
		t.Run(name, func(t *testing.T) {
			c := good
			mut(&c)
			if err := c.Validate(); !errors.Is(err, ErrConfig) {
				t.Errorf("Validate() = %v, want ErrConfig", err)
			}
		})
	}
}

func TestFormatSize(t *testing.T) {
	for _, tc := range []struct {
		n     uint64
		want  string
		exact bool
	}{
		{0, "0 B", true}, {1000, "1000 B", true}, {1023, "1023 B", true}, {1024, "1 KiB", true},
		{1536, "1.5 KiB", false}, {256 << 20, "256 MiB", true}, {512 << 20, "512 MiB", true},
		{2 << 30, "2 GiB", true}, {1536 << 20, "1536 MiB", true}, {1 << 40, "1 TiB", true},
		{1 << 60, "1 EiB", false}, {965_000_000, "920 MiB", false}, {2<<30 + 1, "2.0 GiB", false},
	} {
		got := FormatSize(tc.n)
		if got != tc.want {
			t.Errorf("FormatSize(%d) = %q, want %q", tc.n, got, tc.want)
		}
		// Every exact form reads back.
		if back, err := ParseSize(got); tc.exact && (err != nil || back != tc.n) {
			t.Errorf("ParseSize(FormatSize(%d) = %q) = %d, %v", tc.n, got, back, err)
		}
	}
}

// TestShapeValidateNeedsNoKernel: a shape (what an archive's config section
// gives) validates on its own; only a Config to boot needs a kernel.
func TestShapeValidateNeedsNoKernel(t *testing.T) {
	s := Shape{CPUs: 2, Memory: 64 << 20}
	if err := s.Validate(); err != nil {
		t.Errorf("shape: %v", err)
	}
	if err := (&Config{Shape: s}).Validate(); !errors.Is(err, ErrConfig) {
		t.Errorf("config without a kernel: %v, want ErrConfig", err)
	}
	s.CPUs = 0
	if err := s.Validate(); !errors.Is(err, ErrConfig) {
		t.Errorf("shape with 0 vCPUs: %v, want ErrConfig", err)
	}
}
