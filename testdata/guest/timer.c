/*
 * timer.c: the BSP's periodic LAPIC timer (ring 3 programs it over MMIO;
 * the ring-0 handler in isr.S only counts ticks and EOIs).
 *
 * Rate: TIMER_HZ (100 Hz). The LAPIC timer counts bus clocks divided by 16.
 * KVM's in-kernel LAPIC and QEMU's emulated one both clock it at 1 GHz (one
 * count per ns), so no calibration loop is needed. When the hypervisor
 * signature is KVM's and the VMM publishes the bus frequency in the timing
 * leaf 0x40000010 (EBX, kHz; QEMU does with vmware-cpuid-freq), that value
 * is used instead. CPUID runs in ring 0 (sys_cpuid): on kvm_pvm a ring-3
 * CPUID may run natively and see the outer hypervisor. ticks is plain
 * memory, so a snapshot carries it over.
 */
#include "guest.h"
#include "syscall.h"

#define LAPIC_LVT_TIMER	0x320
#define LAPIC_TIMER_ICR	0x380
#define LAPIC_TIMER_DCR	0x3e0

u64 timer_bus_hz = 1000000000ul;

static void cpuid(u32 leaf, u32 *a, u32 *b, u32 *c, u32 *d)
{
	u32 r[4];
	sys_cpuid(leaf, 0, r);
	*a = r[0];
	*b = r[1];
	*c = r[2];
	*d = r[3];
}

void timer_start(u32 hz)
{
	u32 a, b, c, d;
	cpuid(1, &a, &b, &c, &d);
	if (c & (1u << 31)) {	/* running under a hypervisor */
		cpuid(0x40000000, &a, &b, &c, &d);
		int kvm = b == 0x4b4d564b && c == 0x564b4d56 && d == 0x4d;	/* "KVMKVMKVM\0\0\0" */
		if (kvm && a >= 0x40000010 && a < 0x40000100) {
			cpuid(0x40000010, &a, &b, &c, &d);
			if (b >= 1000 && b <= 10000000)	/* 1 MHz .. 10 GHz */
				timer_bus_hz = (u64)b * 1000;
		}
	}
	mmio_write32(lapic_base + LAPIC_TIMER_DCR, 0x3);	/* divide by 16 */
	mmio_write32(lapic_base + LAPIC_LVT_TIMER, VEC_TIMER | (1u << 17));	/* periodic */
	mmio_write32(lapic_base + LAPIC_TIMER_ICR, (u32)(timer_bus_hz / 16 / hz));
}
