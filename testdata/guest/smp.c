/*
 * smp.c: starting the APs listed in the MADT (ring 3: the ICR is MMIO).
 *
 * All APs at once: the BSP copies the trampoline to TRAMP_BASE, sends INIT
 * to every AP, then SIPI to every AP, and waits for cpus_online to reach the
 * MADT's count; after ~20 ms it repeats the SIPIs (a running CPU ignores
 * them) and waits up to ~1 s more. KVM and QEMU need none of the
 * real-hardware INIT/SIPI delays. A started AP goes through ap_entry64
 * (which gives it its own CPU slot: stacks and TSS) and ap_main in ring 0,
 * and idles in ring 3 in ap_user_main.
 */
#include "guest.h"
#include "syscall.h"

extern u8 tramp_start[], tramp_end[], tramp_cr3[];
extern u64 pml4[];

volatile u32 cpus_online = 1;
static volatile u64 idle_word;	/* never changes: APs sleep on it */

static int wait_online(u32 want, u64 nticks)
{
	u64 until = ticks + nticks;
	while (cpus_online < want) {
		if (ticks >= until)
			return 0;
		cpu_relax();
	}
	return 1;
}

static void ipi_all_aps(u32 icr_low)
{
	for (u32 i = 1; i < acpi.ncpus; i++)
		lapic_ipi(acpi.apic_ids[i], icr_low);
}

void smp_boot(void)
{
	u32 want = acpi.ncpus;
	if (want <= 1)
		return;
	usize n = (usize)(tramp_end - tramp_start);
	memcpy((void *)TRAMP_BASE, tramp_start, n);
	u32 cr3 = (u32)(u64)pml4;
	memcpy((u8 *)TRAMP_BASE + (tramp_cr3 - tramp_start), &cr3, 4);

	ipi_all_aps(0x4500);			/* INIT, assert */
	ipi_all_aps(0x4600 | TRAMP_SIPI_VEC);	/* STARTUP */
	if (wait_online(want, 2))
		return;
	ipi_all_aps(0x4600 | TRAMP_SIPI_VEC);
	if (!wait_online(want, 100))
		print("chsnap-guest: %u of %u CPUs did not start\r\n", (u64)(want - cpus_online), (u64)want);
}

void ap_user_main(u64 cpu)
{
	(void)cpu;
	lapic_enable();
	__atomic_fetch_add(&cpus_online, 1, __ATOMIC_SEQ_CST);
	for (;;)
		sys_wait(&idle_word, 0);
}
