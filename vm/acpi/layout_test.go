package acpi_test

import (
	"testing"

	"github.com/chsnap/chsnap/vm/acpi"
	"github.com/chsnap/chsnap/vm/boot"
)

// TestAreaMatchesBootLayout keeps the ACPI area in step with the e820
// reservation vm/boot makes for it.
func TestAreaMatchesBootLayout(t *testing.T) {
	if acpi.AreaStart != boot.ACPIAddr || acpi.AreaEnd != boot.ACPIEnd {
		t.Errorf("acpi area [%#x, %#x), boot reserves [%#x, %#x)", acpi.AreaStart, acpi.AreaEnd, boot.ACPIAddr, boot.ACPIEnd)
	}
	var reserved bool
	for _, e := range boot.E820Map(256 << 20) {
		if e.Addr == acpi.AreaStart && e.Addr+e.Size == acpi.AreaEnd && e.Type == boot.E820Reserved {
			reserved = true
		}
	}
	if !reserved {
		t.Errorf("E820Map does not reserve the ACPI area")
	}
}

// TestResetRegisterMatchesBootStub keeps the FADT reset register and the
// reset-vector stub vm/boot writes in agreement.
func TestResetRegisterMatchesBootStub(t *testing.T) {
	if acpi.TablesEnd != boot.ResetVectorAddr {
		t.Errorf("tables may reach %#x, the reset vector stub is at %#x", acpi.TablesEnd, boot.ResetVectorAddr)
	}
	if acpi.ResetPort != boot.ResetPort || acpi.ResetValue != boot.ResetValue {
		t.Errorf("FADT reset %#x←%d, boot stub %#x←%d", acpi.ResetPort, acpi.ResetValue, boot.ResetPort, boot.ResetValue)
	}
}
