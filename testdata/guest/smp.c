/*
 * smp.c: starting the APs listed in the MADT (ring 3: the ICR is MMIO).
 *
 * One AP at a time: the BSP copies the trampoline to TRAMP_BASE, sends INIT
 * then SIPI (again after ~20 ms if the AP has not checked in), and waits up
 * to ~1 s for cpus_online to grow. KVM and QEMU need none of the
 * real-hardware INIT/SIPI delays. A started AP goes through ap_entry64
 * (which gives it a CPU slot) and ap_main in ring 0 and idles in ring 3 in
 * ap_user_main.
 */
#include "guest.h"
#include "syscall.h"

extern u8 tramp_start[], tramp_end[], tramp_cr3[];
extern u64 pml4[];

volatile u32 cpus_online = 1;
static volatile u64 idle_word;	/* never changes: APs sleep on it */

static int wait_online(u32 before, u64 nticks)
{
	u64 until = ticks + nticks;
	while (cpus_online == before) {
		if (ticks >= until)
			return 0;
		cpu_relax();
	}
	return 1;
}

void smp_boot(void)
{
	usize n = (usize)(tramp_end - tramp_start);
	memcpy((void *)TRAMP_BASE, tramp_start, n);
	u32 cr3 = (u32)(u64)pml4;
	memcpy((u8 *)TRAMP_BASE + (tramp_cr3 - tramp_start), &cr3, 4);

	for (u32 i = 1; i < acpi.ncpus; i++) {
		u32 id = acpi.apic_ids[i];
		u32 before = cpus_online;
		lapic_ipi(id, 0x4500);			/* INIT, assert */
		lapic_ipi(id, 0x4600 | TRAMP_SIPI_VEC);	/* STARTUP */
		if (!wait_online(before, 2)) {
			lapic_ipi(id, 0x4600 | TRAMP_SIPI_VEC);
			if (!wait_online(before, 100))
				print("chsnap-guest: cpu with apic id %u did not start\r\n", (u64)id);
		}
	}
}

void ap_user_main(u64 cpu)
{
	(void)cpu;
	lapic_enable();
	__atomic_fetch_add(&cpus_online, 1, __ATOMIC_SEQ_CST);
	for (;;)
		sys_wait(&idle_word, 0);
}
