/*
 * kvmcheck: a tiny static program that proves /dev/kvm works.
 *
 * It opens /dev/kvm, checks KVM_GET_API_VERSION, creates a VM and one vCPU,
 * and runs a real-mode guest at 0x1000:
 *
 *     mov $0x3f8, %dx ; mov $'K', %al ; out %al, (%dx) ; hlt
 *
 * expecting KVM_EXIT_IO (out, port 0x3f8, one byte 'K') and then KVM_EXIT_HLT.
 * With an iteration count as its first argument (default 10000000) it then
 * times a `dec %ecx; jnz` loop of that many iterations in the guest. With an
 * exit count as its second argument (default 1000) it times that many port-I/O
 * exits to user space (out to 0x3f8, then KVM_RUN again).
 *
 * Exit status: 0 when every check passed, 1 otherwise. Build: gcc -static -O2.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE 0x10000
#define CODE_ADDR 0x1000
#define LOOP_ADDR 0x2000
#define EXITS_ADDR 0x3000

static int fail(const char *what)
{
	printf("kvmcheck: FAIL %s: %s\n", what, strerror(errno));
	return 1;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int set_real_mode(int vcpu, uint64_t rip)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
		return -1;
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
		return -1;
	memset(&regs, 0, sizeof(regs));
	regs.rip = rip;
	regs.rflags = 0x2;
	return ioctl(vcpu, KVM_SET_REGS, &regs);
}

static const char *exit_name(uint32_t r)
{
	switch (r) {
	case KVM_EXIT_IO: return "IO";
	case KVM_EXIT_HLT: return "HLT";
	case KVM_EXIT_MMIO: return "MMIO";
	case KVM_EXIT_SHUTDOWN: return "SHUTDOWN";
	case KVM_EXIT_FAIL_ENTRY: return "FAIL_ENTRY";
	case KVM_EXIT_INTERNAL_ERROR: return "INTERNAL_ERROR";
	default: return "other";
	}
}

int main(int argc, char **argv)
{
	long iters = argc > 1 ? strtol(argv[1], NULL, 0) : 10000000;
	long exits = argc > 2 ? strtol(argv[2], NULL, 0) : 1000;
	double t0 = now(), t;
	int kvm, vm, vcpu, api, run_size;
	uint8_t *mem;
	struct kvm_run *run;

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return fail("open /dev/kvm");
	api = ioctl(kvm, KVM_GET_API_VERSION, 0);
	printf("kvmcheck: KVM_GET_API_VERSION=%d\n", api);
	if (api != KVM_API_VERSION) {
		printf("kvmcheck: FAIL api version %d, want %d\n", api, KVM_API_VERSION);
		return 1;
	}
	{
		static const struct { int cap; const char *name; } caps[] = {
			{ KVM_CAP_IRQCHIP, "IRQCHIP" }, { KVM_CAP_PIT2, "PIT2" },
			{ KVM_CAP_IRQFD, "IRQFD" }, { KVM_CAP_IOEVENTFD, "IOEVENTFD" },
			{ KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT" },
			{ KVM_CAP_TSC_DEADLINE_TIMER, "TSC_DEADLINE_TIMER" },
			{ KVM_CAP_XSAVE, "XSAVE" }, { KVM_CAP_XCRS, "XCRS" },
			{ KVM_CAP_VCPU_EVENTS, "VCPU_EVENTS" }, { KVM_CAP_DEBUGREGS, "DEBUGREGS" },
			{ KVM_CAP_ADJUST_CLOCK, "ADJUST_CLOCK" }, { KVM_CAP_KVMCLOCK_CTRL, "KVMCLOCK_CTRL" },
			{ KVM_CAP_GET_MSR_FEATURES, "GET_MSR_FEATURES" },
			{ KVM_CAP_SPLIT_IRQCHIP, "SPLIT_IRQCHIP" },
			{ KVM_CAP_DIRTY_LOG_RING, "DIRTY_LOG_RING" },
			{ KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, "MANUAL_DIRTY_LOG_PROTECT2" },
			{ KVM_CAP_NR_VCPUS, "NR_VCPUS" }, { KVM_CAP_MAX_VCPUS, "MAX_VCPUS" },
			{ KVM_CAP_NR_MEMSLOTS, "NR_MEMSLOTS" }, { KVM_CAP_XSAVE2, "XSAVE2" },
		};
		printf("kvmcheck: caps");
		for (unsigned i = 0; i < sizeof(caps) / sizeof(caps[0]); i++)
			printf(" %s=%d", caps[i].name, ioctl(kvm, KVM_CHECK_EXTENSION, caps[i].cap));
		printf("\n");
	}
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return fail("KVM_CREATE_VM");
	mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return fail("mmap guest memory");

	/* Port write of 'K' to COM1, then hlt. */
	static const uint8_t code[] = { 0xba, 0xf8, 0x03, 0xb0, 'K', 0xee, 0xf4 };
	memcpy(mem + CODE_ADDR, code, sizeof(code));
	/* mov $iters, %ecx; 1: dec %ecx; jnz 1b; hlt (16-bit code, 0x66 prefixes). */
	uint8_t loop[] = { 0x66, 0xb9, 0, 0, 0, 0, 0x66, 0x49, 0x75, 0xfc, 0xf4 };
	uint32_t n = (uint32_t)iters;
	memcpy(loop + 2, &n, 4);
	memcpy(mem + LOOP_ADDR, loop, sizeof(loop));
	/* mov $exits, %ecx; mov $0x3f8, %dx; mov $'.', %al; 1: out %al, (%dx); dec %ecx; jnz 1b; hlt */
	uint8_t outs[] = { 0x66, 0xb9, 0, 0, 0, 0, 0xba, 0xf8, 0x03, 0xb0, '.',
			   0xee, 0x66, 0x49, 0x75, 0xfb, 0xf4 };
	n = (uint32_t)exits;
	memcpy(outs + 2, &n, 4);
	memcpy(mem + EXITS_ADDR, outs, sizeof(outs));

	struct kvm_userspace_memory_region region = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE,
		.userspace_addr = (uintptr_t)mem,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		return fail("KVM_SET_USER_MEMORY_REGION");
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		return fail("KVM_CREATE_VCPU");
	run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < (int)sizeof(*run))
		return fail("KVM_GET_VCPU_MMAP_SIZE");
	run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		return fail("mmap kvm_run");
	if (set_real_mode(vcpu, CODE_ADDR) < 0)
		return fail("set registers");
	printf("kvmcheck: setup done in %.3f ms\n", (now() - t0) * 1e3);

	t = now();
	if (ioctl(vcpu, KVM_RUN, 0) < 0)
		return fail("KVM_RUN 1");
	if (run->exit_reason != KVM_EXIT_IO || run->io.direction != KVM_EXIT_IO_OUT ||
	    run->io.port != 0x3f8 || run->io.size != 1 ||
	    ((uint8_t *)run)[run->io.data_offset] != 'K') {
		printf("kvmcheck: FAIL first exit %u (%s), want IO out 0x3f8 'K'\n",
		       run->exit_reason, exit_name(run->exit_reason));
		return 1;
	}
	printf("kvmcheck: exit IO out port=0x%x byte='%c'\n", run->io.port,
	       ((uint8_t *)run)[run->io.data_offset]);
	if (ioctl(vcpu, KVM_RUN, 0) < 0)
		return fail("KVM_RUN 2");
	if (run->exit_reason != KVM_EXIT_HLT) {
		printf("kvmcheck: FAIL second exit %u (%s), want HLT\n", run->exit_reason,
		       exit_name(run->exit_reason));
		return 1;
	}
	printf("kvmcheck: exit HLT; two runs took %.3f ms\n", (now() - t) * 1e3);

	if (iters > 0) {
		if (set_real_mode(vcpu, LOOP_ADDR) < 0)
			return fail("set registers for loop");
		t = now();
		if (ioctl(vcpu, KVM_RUN, 0) < 0)
			return fail("KVM_RUN loop");
		t = now() - t;
		if (run->exit_reason != KVM_EXIT_HLT) {
			printf("kvmcheck: FAIL loop exit %u (%s), want HLT\n", run->exit_reason,
			       exit_name(run->exit_reason));
			return 1;
		}
		printf("kvmcheck: loop of %ld iterations (%ld instructions) in %.3f s = %.1f M instr/s\n",
		       iters, 2 * iters, t, 2 * iters / t / 1e6);
	}
	if (exits > 0) {
		long seen = 0;
		if (set_real_mode(vcpu, EXITS_ADDR) < 0)
			return fail("set registers for exits");
		t = now();
		for (;;) {
			if (ioctl(vcpu, KVM_RUN, 0) < 0)
				return fail("KVM_RUN exits");
			if (run->exit_reason == KVM_EXIT_HLT)
				break;
			if (run->exit_reason != KVM_EXIT_IO || run->io.port != 0x3f8) {
				printf("kvmcheck: FAIL exit %u (%s) in the exit loop\n", run->exit_reason,
				       exit_name(run->exit_reason));
				return 1;
			}
			seen++;
		}
		t = now() - t;
		if (seen != exits) {
			printf("kvmcheck: FAIL saw %ld I/O exits, want %ld\n", seen, exits);
			return 1;
		}
		printf("kvmcheck: %ld I/O exits to user space in %.3f s = %.1f us each\n", seen, t,
		       t / seen * 1e6);
	}
	printf("kvmcheck: PASS\n");
	return 0;
}
