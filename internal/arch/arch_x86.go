//go:build !arm64

package arch

const (
	// NativeABI names the 64-bit syscall ABI (output's "abi").
	NativeABI = "x86_64"
	// CompatABI names the 32-bit compat syscall ABI (output's "abi", the
	// text output's [ia32]).
	CompatABI = "ia32"
	// CompatConfig is the kernel option that provides the compat ABI.
	CompatConfig = "CONFIG_IA32_EMULATION"
	// CompatCalls says which calls arrive through the compat ABI.
	CompatCalls = "32-bit calls (and int $0x80 from 64-bit tasks)"
)
