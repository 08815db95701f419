//go:build arm64

package arch

const (
	// NativeABI names the 64-bit syscall ABI (output's "abi").
	NativeABI = "aarch64"
	// CompatABI names the 32-bit compat syscall ABI: AArch32 tasks' calls,
	// through the ARM EABI syscall table (output's "abi", the text
	// output's [aarch32]).
	CompatABI = "aarch32"
	// CompatConfig is the kernel option that provides the compat ABI.
	CompatConfig = "CONFIG_COMPAT"
	// CompatCalls says which calls arrive through the compat ABI. CPUs
	// without AArch32 at EL0 run no such task, whatever the kernel.
	CompatCalls = "AArch32 tasks' calls (where the CPUs run AArch32)"
)
