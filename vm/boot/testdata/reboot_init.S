/*
 * reboot_init.S: /init for the QEMU oracle's initramfs. It calls
 * reboot(REBOOT_CMD) at once: LINUX_REBOOT_CMD_POWER_OFF (the default) makes
 * Linux run its ACPI S5 path, a write of WAK_STS (0x80) to SLEEP_STATUS_REG
 * then SLP_TYP 5 << 2 | SLP_EN (0x34) to SLEEP_CONTROL_REG; build with
 * -DREBOOT_CMD=0x01234567 (LINUX_REBOOT_CMD_RESTART) for a restart, which
 * Linux tries first through the FADT reset register.
 */
#ifndef REBOOT_CMD
#define REBOOT_CMD 0x4321fedc
#endif
	.globl	_start
	.text
_start:
	movl	$169, %eax		/* SYS_reboot */
	movl	$0xfee1dead, %edi	/* LINUX_REBOOT_MAGIC1 */
	movl	$672274793, %esi	/* LINUX_REBOOT_MAGIC2 */
	movl	$REBOOT_CMD, %edx
	syscall
1:	jmp	1b
