// Package devstate holds chsnap's device models and their saveable state.
//
// A device does no I/O of its own: it is handed its outside world — an IRQ
// line, an io.Writer for console bytes, callbacks for reset and power-off —
// and the vm package wires those to KVM and the host. Devices are driven by
// the vm's exit dispatch through the PortIO and MMIO interfaces, from any
// vCPU thread, so each device guards its own state with a mutex.
//
// Every device exposes its state as a plain struct (State) and can be rebuilt
// from one (Restore…), checking every field as if the guest had written it.
package devstate
