/*
 * power.c: poweroff and reboot (ring 3; port writes go through sys_out).
 *
 * poweroff writes SLP_TYP=5 | SLP_EN to the FADT's SLEEP_CONTROL_REG (a
 * hardware-reduced FADT: chsnap has it at I/O port 0x600, QEMU microvm on
 * its GED in system memory). reboot writes RESET_VALUE to RESET_REG when
 * the FADT says RESET_REG_SUP, else pulses the i8042 reset line.
 */
#include "guest.h"
#include "syscall.h"

#define SLP_S5 ((5u << 2) | (1u << 5))
#define FADT_RESET_REG_SUP (1u << 10)

static int gas_write(const struct gas *g, u64 v)
{
	u32 width = g->access_size ? (1u << (g->access_size - 1)) : (g->bit_width ? g->bit_width / 8u : 1u);
	if (!g->addr)
		return -1;
	switch (g->space) {
	case 0:	/* system memory */
		switch (width) {
		case 1: *(volatile u8 *)g->addr = (u8)v; return 0;
		case 2: *(volatile u16 *)g->addr = (u16)v; return 0;
		case 4: *(volatile u32 *)g->addr = (u32)v; return 0;
		case 8: *(volatile u64 *)g->addr = v; return 0;
		}
		return -1;
	case 1:	/* system I/O */
		if (g->addr > 0xffff || (width != 1 && width != 2 && width != 4))
			return -1;
		sys_out((u16)g->addr, v, width);
		return 0;
	}
	return -1;
}

static void __attribute__((noreturn)) stop(void)
{
	static volatile u64 never;
	for (;;)
		sys_wait(&never, 0);
}

void poweroff(void)
{
	uart_flush();
	if (gas_write(&acpi.sleep_ctl, SLP_S5) < 0)
		print("error poweroff: no usable ACPI SLEEP_CONTROL_REG\r\n");
	stop();
}

void reboot(void)
{
	uart_flush();
	if ((acpi.fadt_flags & FADT_RESET_REG_SUP) && gas_write(&acpi.reset_reg, acpi.reset_value) == 0)
		stop();
	for (int i = 0; i < 1000 && (sys_inb(0x64) & 2); i++)
		;
	sys_outb(0x64, 0xfe);
	stop();
}
