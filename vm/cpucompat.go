package vm

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/chsnap/chsnap/kvmstate"
)

// ErrCPUMismatch marks a saved CPU model this host cannot give the guest;
// CheckCPUCompat's error wraps it (a *CPUMismatchError).
var ErrCPUMismatch = errors.New("vm: the saved CPU model is not supported by this host")

// CPUDiff is one difference between a saved CPUID and this host's.
type CPUDiff struct {
	Leaf, Subleaf uint32
	// Reg is EAX, EBX, ECX or EDX, with a bit range for fields ("EAX[7:0]").
	Reg string
	// Saved and Host are the values compared (the whole register for
	// feature flags, the field for counts and sizes).
	Saved, Host uint32
	// Detail says what differs: the missing bits with their names, or the
	// field and the limit.
	Detail string
}

// String renders the difference for an error line.
func (d CPUDiff) String() string {
	return fmt.Sprintf("leaf %#x.%d %s: %s", d.Leaf, d.Subleaf, d.Reg, d.Detail)
}

// CPUMismatchError lists every difference that makes a saved CPUID
// unsupported here. errors.Is(err, ErrCPUMismatch) holds.
type CPUMismatchError struct {
	Diffs []CPUDiff
}

// Error names every differing leaf, register and bit.
func (e *CPUMismatchError) Error() string {
	parts := make([]string, len(e.Diffs))
	for i, d := range e.Diffs {
		parts[i] = d.String()
	}
	return fmt.Sprintf("%v: %s", ErrCPUMismatch, strings.Join(parts, "; "))
}

// Unwrap returns ErrCPUMismatch.
func (e *CPUMismatchError) Unwrap() error { return ErrCPUMismatch }

// How one CPUID register is compared.
type regRuleKind int

const (
	// ruleGeneric: a difference is a warning (leaves chsnap has no rule for).
	ruleGeneric regRuleKind = iota
	// ruleIgnore: guest-defined or dynamic (topology, caches, brand, APIC
	// ids, sizes KVM recomputes from XCR0).
	ruleIgnore
	// ruleSubset: feature flags; every saved bit must be offered here.
	ruleSubset
	// ruleFields: counts and sizes; no saved field may exceed the host's.
	ruleFields
	// ruleEqual: must match exactly (vendor and hypervisor signatures,
	// XSAVE component layout).
	ruleEqual
	// ruleWarn: identity (family, model, stepping); a difference is a warning.
	ruleWarn
)

// field is a count or size inside a register.
type field struct {
	lo, hi int
	name   string
}

// regRule says how to compare one register.
type regRule struct {
	kind   regRuleKind
	ignore uint32 // ruleSubset: bits chsnap or the guest changes (dynamic or set on top of KVM)
	fields []field
}

var (
	ignoreRule  = regRule{kind: ruleIgnore}
	subsetRule  = regRule{kind: ruleSubset}
	equalRule   = regRule{kind: ruleEqual}
	warnRule    = regRule{kind: ruleWarn}
	genericRule = regRule{kind: ruleGeneric}
)

// maxLeafRule compares a maximum-leaf or maximum-subleaf register.
func maxLeafRule(name string) regRule {
	return regRule{kind: ruleFields, fields: []field{{0, 31, name}}}
}

// cpuidRule returns how register reg (0 EAX … 3 EDX) of leaf fn, subleaf
// index is compared.
func cpuidRule(fn, index uint32, reg int) regRule {
	switch fn {
	case 0, 0x4000_0000, 0x8000_0000:
		if reg == 0 {
			return maxLeafRule("maximum leaf")
		}
		if fn == 0x8000_0000 {
			return ignoreRule // reserved on Intel, the vendor again on AMD
		}
		return equalRule // vendor or hypervisor signature
	case 1:
		switch reg {
		case 0:
			return warnRule
		case 1:
			return ignoreRule // brand index, CLFLUSH size, logical count, APIC id
		case 2:
			// MONITOR and OSXSAVE follow guest MSR and CR4 writes; TSC
			// deadline and hypervisor are set by chsnap.
			return regRule{kind: ruleSubset, ignore: 1<<3 | 1<<27 | cpuid1ECXTSCDeadline | cpuid1ECXHypervisor}
		default:
			return regRule{kind: ruleSubset, ignore: cpuid1EDXHTT}
		}
	case 2, 4, 0xB, 0x1F, 0x8000_0002, 0x8000_0003, 0x8000_0004, 0x8000_0005, 0x8000_0006,
		0x8000_001D, 0x8000_001E, 0x4000_0010:
		return ignoreRule // caches, topology, brand, TSC and bus frequency
	case 6:
		if reg == 0 {
			return subsetRule
		}
		return ignoreRule
	case 7:
		if reg == 0 && index == 0 {
			return maxLeafRule("maximum subleaf")
		}
		if reg == 2 && index == 0 {
			return regRule{kind: ruleSubset, ignore: 1 << 4} // OSPKE follows CR4.PKE
		}
		return subsetRule
	case 0xA:
		switch reg {
		case 0:
			return regRule{kind: ruleFields, fields: []field{{0, 7, "PMU version"}, {8, 15, "general counters"}, {16, 23, "counter width"}}}
		case 3:
			return regRule{kind: ruleFields, fields: []field{{0, 4, "fixed counters"}, {5, 12, "fixed counter width"}}}
		}
		return genericRule
	case 0xD:
		switch {
		case index == 0 && (reg == 0 || reg == 3):
			return subsetRule // XCR0 bits
		case index == 0 && reg == 2:
			return regRule{kind: ruleFields, fields: []field{{0, 31, "XSAVE area size for all components"}}}
		case index <= 1 && reg == 1:
			return ignoreRule // size for the XCR0 (|XSS) in use: follows the guest
		case index <= 1:
			return subsetRule // XSAVE features, XSS bits
		case reg == 3:
			return ignoreRule
		default:
			return equalRule // a component's size, offset and alignment
		}
	case 0x4000_0001:
		if reg == 0 || reg == 3 {
			return subsetRule // KVM paravirtual features and hints
		}
		return ignoreRule
	case 0x8000_0001:
		switch reg {
		case 0:
			return warnRule
		case 2:
			return regRule{kind: ruleSubset, ignore: cpuidExtECXCmpLegacy}
		case 3:
			return subsetRule
		}
		return ignoreRule
	case 0x8000_0007:
		if reg == 3 {
			return subsetRule
		}
		return ignoreRule
	case 0x8000_0008:
		switch reg {
		case 0:
			return regRule{kind: ruleFields, fields: []field{{0, 7, "physical address bits"}, {8, 15, "linear address bits"}, {16, 23, "guest physical address bits"}}}
		case 1:
			return subsetRule
		}
		return ignoreRule // NC and ApicIdSize: topology
	case 0x8000_000A:
		if reg == 3 {
			return subsetRule
		}
		return genericRule
	case 0x8000_001F, 0x8000_0021:
		if reg == 0 {
			return subsetRule
		}
		return genericRule
	}
	return genericRule
}

// CheckCPUCompat compares a vCPU's saved CPUID (and TSC frequency, 0 when
// unknown) with what this host supports (KVM_GET_SUPPORTED_CPUID and the
// host TSC frequency from KVM_GET_TSC_KHZ, 0 when unknown), leaf by leaf:
// feature-flag registers must be a subset of the host's, counts and sizes
// (maximum leaves, address widths, XSAVE size, PMU counters) no greater,
// the vendor and hypervisor signatures and the XSAVE component layout equal.
// Topology, cache, brand and APIC-id fields, which chsnap derives for each
// guest, are not compared.
//
// The error, a *CPUMismatchError wrapping ErrCPUMismatch, lists every
// differing leaf, register and bit. Warnings cover differences that do not
// stop a restore: family/model/stepping, leaves chsnap has no rule for, and
// a TSC frequency that must be scaled (see TSCScaling).
func CheckCPUCompat(saved []kvmstate.CPUIDEntry, savedTSCKHz uint32, host []kvmstate.CPUIDEntry, hostTSCKHz uint32) (warnings []string, err error) {
	var diffs []CPUDiff
	if sv, hv := cpuidVendor(saved), cpuidVendor(host); sv != hv {
		diffs = append(diffs, CPUDiff{Leaf: 0, Reg: "EBX,EDX,ECX", Detail: fmt.Sprintf("vendor %q, this host %q", sv, hv)})
	}
	sorted := slices.Clone(saved)
	slices.SortFunc(sorted, func(a, b kvmstate.CPUIDEntry) int {
		return cmp.Or(cmp.Compare(a.Function, b.Function), cmp.Compare(a.Index, b.Index))
	})
	for _, s := range sorted {
		index := s.Index
		if s.Flags&kvmstate.CPUIDFlagSignificantIndex == 0 {
			index = 0
		}
		var hv [4]uint32
		h := findCPUID(host, s.Function, index)
		if h != nil {
			hv = [4]uint32{h.EAX, h.EBX, h.ECX, h.EDX}
		}
		sv := [4]uint32{s.EAX, s.EBX, s.ECX, s.EDX}
		for reg := range 4 {
			rule := cpuidRule(s.Function, index, reg)
			if s.Function == 0 && reg > 0 {
				continue // the vendor, compared above
			}
			d, w := compareReg(s.Function, index, reg, rule, sv[reg], hv[reg], h != nil)
			diffs = append(diffs, d...)
			if w != "" {
				warnings = append(warnings, w)
			}
		}
	}
	if savedTSCKHz != 0 && hostTSCKHz != 0 && tscDiffers(hostTSCKHz, savedTSCKHz) {
		warnings = append(warnings, fmt.Sprintf("guest TSC runs at %d kHz, this host's at %d kHz: the guest TSC must be scaled (KVM_SET_TSC_KHZ)", savedTSCKHz, hostTSCKHz))
	}
	if len(diffs) > 0 {
		return warnings, &CPUMismatchError{Diffs: diffs}
	}
	return warnings, nil
}

// compareReg compares one register under rule; it returns the refusing
// differences and at most one warning.
func compareReg(fn, index uint32, reg int, rule regRule, s, h uint32, hostHas bool) ([]CPUDiff, string) {
	name := regNames[reg]
	switch rule.kind {
	case ruleIgnore:
		return nil, ""
	case ruleSubset:
		missing := s &^ h &^ rule.ignore
		if missing == 0 {
			return nil, ""
		}
		return []CPUDiff{{Leaf: fn, Subleaf: index, Reg: name, Saved: s, Host: h,
			Detail: fmt.Sprintf("%s not offered by this host", describeBits(cpuidReg{fn, index, reg}, missing))}}, ""
	case ruleFields:
		var out []CPUDiff
		for _, f := range rule.fields {
			mask := uint32(1<<(f.hi-f.lo+1) - 1)
			if f.hi-f.lo == 31 {
				mask = ^uint32(0)
			}
			sf, hf := s>>f.lo&mask, h>>f.lo&mask
			if sf > hf {
				out = append(out, CPUDiff{Leaf: fn, Subleaf: index, Reg: fmt.Sprintf("%s[%d:%d]", name, f.hi, f.lo), Saved: sf, Host: hf,
					Detail: fmt.Sprintf("%s %d, more than this host's %d", f.name, sf, hf)})
			}
		}
		return out, ""
	case ruleEqual:
		if s == h || (s == 0 && !hostHas) {
			return nil, ""
		}
		return []CPUDiff{{Leaf: fn, Subleaf: index, Reg: name, Saved: s, Host: h,
			Detail: fmt.Sprintf("saved %#x, this host %#x (must be equal)", s, h)}}, ""
	case ruleWarn:
		if s != h {
			return nil, fmt.Sprintf("leaf %#x.%d %s: saved %#x, this host %#x (CPU identity differs)", fn, index, name, s, h)
		}
		return nil, ""
	}
	if s == h {
		return nil, ""
	}
	if !hostHas {
		if s == 0 {
			return nil, ""
		}
		return nil, fmt.Sprintf("leaf %#x.%d %s: saved %#x, absent on this host", fn, index, name, s)
	}
	return nil, fmt.Sprintf("leaf %#x.%d %s: saved %#x, this host %#x", fn, index, name, s, h)
}

// describeBits lists the set bits of v with their feature names:
// "bits 5 (avx2), 16 (avx512f)".
func describeBits(r cpuidReg, v uint32) string {
	var parts []string
	for b := range 32 {
		if v&(1<<b) == 0 {
			continue
		}
		if n := bitName(r, b); n != "" {
			parts = append(parts, fmt.Sprintf("%d (%s)", b, n))
		} else {
			parts = append(parts, fmt.Sprint(b))
		}
	}
	if len(parts) == 1 {
		return "bit " + parts[0]
	}
	return "bits " + strings.Join(parts, ", ")
}

// TSCScaling says what restore does about the TSC frequency: scale reports
// whether the saved frequency differs from this host's by more than
// calibration jitter (250 ppm) and so must be set with KVM_SET_TSC_KHZ;
// when canScale (KVM_CAP_TSC_CONTROL) is false, warning says clearly that
// the guest's clock will run at the wrong rate. Unknown (0) frequencies
// never scale.
func TSCScaling(savedKHz, hostKHz uint32, canScale bool) (scale bool, warning string) {
	if savedKHz == 0 || hostKHz == 0 || !tscDiffers(hostKHz, savedKHz) {
		return false, ""
	}
	if canScale {
		return true, ""
	}
	return false, fmt.Sprintf("the guest's TSC ran at %d kHz but this host's runs at %d kHz and KVM cannot scale it (no KVM_CAP_TSC_CONTROL): guest time will run %.4f× too %s until the guest recalibrates",
		savedKHz, hostKHz, float64(hostKHz)/float64(savedKHz), map[bool]string{true: "fast", false: "slow"}[hostKHz > savedKHz])
}

// tscDiffers reports whether two TSC frequencies differ by more than 250 ppm
// (Firecracker's and QEMU's tolerance for calibration jitter), as
// kvmstate.VCPU.RestoreState decides.
func tscDiffers(host, guest uint32) bool {
	d := int64(host) - int64(guest)
	if d < 0 {
		d = -d
	}
	return d*1_000_000 > int64(guest)*250
}

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
