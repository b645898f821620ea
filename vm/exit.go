package vm

import (
	"fmt"

	"github.com/chsnap/chsnap/kvmstate"
)

// handleExit serves one KVM_RUN exit on vCPU c's thread. A nil return means
// "run again"; an error stops the VM.
func (v *VM) handleExit(c *vcpu) error {
	cpu := c.cpu
	switch reason := cpu.ExitReason(); reason {
	case kvmstate.ExitIO:
		io, err := cpu.IO()
		if err != nil {
			return err
		}
		size := int(io.Size)
		for i := 0; i < int(io.Count); i++ {
			chunk := io.Data[i*size : (i+1)*size]
			if io.Out {
				v.dev.ports.write(io.Port, chunk)
			} else {
				v.dev.ports.read(io.Port, chunk)
			}
		}
		return nil
	case kvmstate.ExitMMIO:
		m, err := cpu.MMIO()
		if err != nil {
			return err
		}
		if m.IsWrite {
			v.dev.mmioWrite(m.Addr, m.Data)
		} else {
			v.dev.mmioRead(m.Addr, m.Data)
		}
		return nil
	case kvmstate.ExitIntr, kvmstate.ExitHLT, kvmstate.ExitIRQWindowOpen:
		// HLT is handled in the kernel with the in-kernel irqchip; the other
		// two just mean "run again".
		return nil
	case kvmstate.ExitSystemEvent:
		ev := cpu.SystemEvent()
		switch ev.Type {
		case kvmstate.SystemEventShutdown:
			v.stop(ExitPowerOff, nil)
		case kvmstate.SystemEventReset:
			v.stop(ExitReboot, nil)
		default:
			return fmt.Errorf("guest system event %d (crash or unsupported)", ev.Type)
		}
		return errStop
	case kvmstate.ExitShutdown:
		return fmt.Errorf("guest triple fault (KVM_EXIT_SHUTDOWN)%s", v.where(cpu))
	case kvmstate.ExitFailEntry:
		return fmt.Errorf("KVM_EXIT_FAIL_ENTRY, hardware entry failure reason %#x%s", cpu.FailEntry(), v.where(cpu))
	case kvmstate.ExitInternalError:
		ie := cpu.InternalError()
		return fmt.Errorf("KVM_EXIT_INTERNAL_ERROR, suberror %d %x (KVM could not emulate an instruction)%s", ie.Suberror, ie.Data, v.where(cpu))
	default:
		return fmt.Errorf("unexpected KVM exit reason %d%s", reason, v.where(cpu))
	}
}

// where describes the vCPU's instruction pointer for an error message.
func (v *VM) where(cpu *kvmstate.VCPU) string {
	regs, err := cpu.Regs()
	if err != nil {
		return ""
	}
	return fmt.Sprintf(" at RIP %#x", regs.RIP)
}
