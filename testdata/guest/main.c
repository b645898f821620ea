/*
 * main.c: the BSP's ring-3 start-up sequence, then the shell.
 */
#include "guest.h"
#include "syscall.h"

void bsp_user_main(u64 unused)
{
	(void)unused;
	bootinfo_parse(boot_params);
	acpi_parse(bootinfo.rsdp);
	lapic_enable();
	/* Mask both 8259s: they are not used (writes to absent ports are ignored). */
	sys_outb(0x21, 0xff);
	sys_outb(0xa1, 0xff);
	uart_init();
	int routed = ioapic_route(acpi.uart_gsi, VEC_UART, lapic_id(), acpi.uart_flags);
	uart_enable_irq();
	timer_start(TIMER_HZ);
	if (routed < 0)
		print("chsnap-guest: no IOAPIC serves GSI %u: serial input will not work\r\n", (u64)acpi.uart_gsi);

	print("chsnap-guest: ram %u MiB free %u MiB acpi %s cpus %u timer %u Hz (apic bus %u MHz)\r\n",
	      bootinfo.ram_bytes >> 20, bootinfo.free_bytes >> 20, acpi.found ? acpi.oem_id : "none",
	      (u64)acpi.ncpus, (u64)TIMER_HZ, timer_bus_hz / 1000000);
	print("cmdline: %s\r\n", bootinfo.cmdline);
	net_init();
	smp_boot();
	print("chsnap-guest ready cpus=%u\r\n", (u64)cpus_online);
	shell_run();
}
