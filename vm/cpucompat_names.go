package vm

// cpuidReg names a CPUID output register of one (leaf, subleaf).
type cpuidReg struct {
	fn, index uint32
	reg       int // 0 EAX, 1 EBX, 2 ECX, 3 EDX
}

// regNames are the CPUID output registers, in kvm_cpuid_entry2 order.
var regNames = [4]string{"EAX", "EBX", "ECX", "EDX"}

// featureNames names the well-known feature bits (Linux's /proc/cpuinfo
// names), for messages and the chsnap cpu summary.
var featureNames = map[cpuidReg]map[int]string{
	{1, 0, 2}: {0: "sse3", 1: "pclmulqdq", 3: "monitor", 5: "vmx", 9: "ssse3", 12: "fma", 13: "cx16",
		17: "pcid", 19: "sse4_1", 20: "sse4_2", 21: "x2apic", 22: "movbe", 23: "popcnt",
		24: "tsc_deadline_timer", 25: "aes", 26: "xsave", 27: "osxsave", 28: "avx", 29: "f16c", 30: "rdrand",
		31: "hypervisor"},
	{1, 0, 3}: {0: "fpu", 4: "tsc", 5: "msr", 6: "pae", 8: "cx8", 9: "apic", 12: "mtrr", 13: "pge",
		15: "cmov", 16: "pat", 19: "clflush", 23: "mmx", 24: "fxsr", 25: "sse", 26: "sse2", 28: "ht"},
	{7, 0, 1}: {0: "fsgsbase", 3: "bmi1", 4: "hle", 5: "avx2", 7: "smep", 8: "bmi2", 9: "erms",
		10: "invpcid", 11: "rtm", 16: "avx512f", 17: "avx512dq", 18: "rdseed", 19: "adx", 20: "smap",
		23: "clflushopt", 24: "clwb", 28: "avx512cd", 29: "sha_ni", 30: "avx512bw", 31: "avx512vl"},
	{7, 0, 2}: {1: "avx512vbmi", 2: "umip", 3: "pku", 4: "ospke", 5: "waitpkg", 8: "gfni", 9: "vaes",
		10: "vpclmulqdq", 11: "avx512_vnni", 14: "avx512_vpopcntdq", 22: "rdpid"},
	{7, 0, 3}: {4: "fsrm", 8: "avx512_vp2intersect", 10: "md_clear", 14: "serialize", 22: "amx_bf16",
		24: "amx_tile", 25: "amx_int8", 26: "spec_ctrl", 27: "intel_stibp", 29: "arch_capabilities",
		31: "spec_ctrl_ssbd"},
	{0x8000_0001, 0, 2}: {0: "lahf_lm", 1: "cmp_legacy", 2: "svm", 5: "abm", 6: "sse4a", 8: "3dnowprefetch",
		22: "topoext"},
	{0x8000_0001, 0, 3}: {11: "syscall", 20: "nx", 26: "pdpe1gb", 27: "rdtscp", 29: "lm"},
	{0x8000_0007, 0, 3}: {8: "constant_tsc"},
}

// bitName names bit b of r, or "".
func bitName(r cpuidReg, b int) string { return featureNames[r][b] }
