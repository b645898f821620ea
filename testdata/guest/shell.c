/*
 * shell.c: the line-command shell on the BSP (ring 3).
 *
 * Protocol: one command per line (CR or LF ends it; empty lines are
 * ignored; input is not echoed). Every command line gets exactly one reply
 * line, whose first word is the command's or "error":
 *   help                 help: <commands>
 *   cpus                 cpus N
 *   echo TEXT            echo TEXT
 *   ticks                ticks N
 *   mem                  mem ram MIB free MIB
 *   fill MIB SEED        fill ok MIB            (or error ...)
 *   fillmix MIB SEED     fillmix ok MIB         (fillmix.c; or error ...)
 *   verify               verify ok | verify bad 0xADDR | verify none
 *   blk, blkwrite, ...   virtio-blk commands (blkcmd.c)
 *   ip [DEV] ADDR/PREFIX, net   virtio-net commands (net.c)
 *   poweroff, reboot     the VM ends; no reply
 *   anything else        error ...
 */
#include "guest.h"
#include "virtio_blk.h"
#include "virtio_net.h"

int topo_command(int argc, char **argv);	/* topo.c: topo, caches */

#define LINE_MAX 256
#define MAX_ARGS 8

static void reply(const char *s)
{
	print("%s\r\n", s);
}

static int split(char *line, char **argv)
{
	int argc = 0;
	char *p = line;
	while (*p) {
		while (*p == ' ' || *p == '\t')
			*p++ = 0;
		if (!*p)
			break;
		if (argc == MAX_ARGS)
			return -1;
		argv[argc++] = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
	}
	return argc;
}

static void run(char *line)
{
	char out[LINE_MAX + 64];
	char *argv[MAX_ARGS];

	/* echo replies with the rest of the line verbatim. */
	const char *l = line;
	while (*l == ' ' || *l == '\t')
		l++;
	if (memcmp(l, "echo", 4) == 0 && (l[4] == 0 || l[4] == ' ' || l[4] == '\t')) {
		fmt(out, sizeof(out), "echo%s%s", l[4] ? " " : "", l[4] ? l + 5 : "");
		reply(out);
		return;
	}

	int argc = split(line, argv);
	if (argc < 0) {
		reply("error too many arguments");
		return;
	}
	if (argc == 0)
		return;
	const char *cmd = argv[0];
	if (strcmp(cmd, "help") == 0 && argc == 1) {
		reply("help: cpus echo TEXT ticks mem fill MIB SEED verify blk blkwrite blkverify blkread blkflush blkbench ip net poweroff reboot help");
	} else if (strcmp(cmd, "cpus") == 0 && argc == 1) {
		fmt(out, sizeof(out), "cpus %u", (u64)cpus_online);
		reply(out);
	} else if (strcmp(cmd, "ticks") == 0 && argc == 1) {
		fmt(out, sizeof(out), "ticks %u", ticks);
		reply(out);
	} else if (strcmp(cmd, "mem") == 0 && argc == 1) {
		fmt(out, sizeof(out), "mem ram %u free %u", bootinfo.ram_bytes >> 20, bootinfo.free_bytes >> 20);
		reply(out);
	} else if (strcmp(cmd, "fill") == 0) {
		u64 mib, seed;
		if (argc != 3 || parse_u64(argv[1], &mib) || parse_u64(argv[2], &seed)) {
			reply("error fill: usage: fill MIB SEED");
			return;
		}
		mem_fill(mib, seed, out, sizeof(out));
		reply(out);
	} else if (strcmp(cmd, "fillmix") == 0) {
		cmd_fillmix(argc, argv, out, sizeof(out));
		reply(out);
	} else if (topo_command(argc, argv)) {
	} else if (strcmp(cmd, "verify") == 0 && argc == 1) {
		mem_verify(out, sizeof(out));
		reply(out);
	} else if (blk_command(argc, argv)) {
		/* blk, blkwrite, blkverify, blkread, blkflush: blkcmd.c replied */
	} else if (blkbench_command(argc, argv)) {	/* blkbench.c replied */
	} else if (net_command(argc, argv)) {	/* ip, net: net.c replied */
	} else if (strcmp(cmd, "poweroff") == 0 && argc == 1) {
		poweroff();
	} else if (strcmp(cmd, "reboot") == 0 && argc == 1) {
		reboot();
	} else if (strcmp(cmd, "cpus") == 0 || strcmp(cmd, "ticks") == 0 || strcmp(cmd, "mem") == 0 ||
		   strcmp(cmd, "verify") == 0 || strcmp(cmd, "poweroff") == 0 || strcmp(cmd, "reboot") == 0 ||
		   strcmp(cmd, "help") == 0) {
		fmt(out, sizeof(out), "error %s: takes no arguments", cmd);
		reply(out);
	} else {
		char name[33];
		usize i = 0;
		for (; i < sizeof(name) - 1 && cmd[i]; i++)
			name[i] = cmd[i];
		name[i] = 0;
		fmt(out, sizeof(out), "error unknown command \"%s\" (try help)", name);
		reply(out);
	}
}

void shell_run(void)
{
	char line[LINE_MAX + 1];
	usize n = 0;
	int overflow = 0;
	for (;;) {
		int c = uart_getc();
		if (c == '\r' || c == '\n') {
			if (overflow)
				reply("error line too long");
			else if (n) {
				line[n] = 0;
				run(line);
				/*
				 * Once per command, read every net device's
				 * InterruptStatus even without an interrupt: a
				 * line left high (an edge lost across a snapshot,
				 * say) would otherwise never rise again.
				 */
				net_recheck();
			}
			n = 0;
			overflow = 0;
			continue;
		}
		if (c < 0x20 || c >= 0x7f)
			c = ' ';
		if (n < LINE_MAX)
			line[n++] = (char)c;
		else
			overflow = 1;
	}
}
