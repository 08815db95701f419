/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Capture-and-truncate of key and value bytes, the one rule every sensor
 * that copies a key or value into a record follows, and that user space
 * checks in one place too (record.CheckCapture): at most limit bytes of
 * total, a total over the limit flagged as truncated, a missing source
 * or a failed read flagged as a fault and captured as nothing.
 *
 * Included after kernel.h, bpf_helpers.h, bpf_core_read.h, common.h
 * (CLAMP) and record.h (MAX_CAPTURE), in a file that declares the
 * runtime limit, `volatile const __u32 capture_limit` (.rodata, set by
 * user space). capture_bytes reads it where it decides, as the code it
 * replaced did: hoisting the read changed the register allocation enough
 * for Linux 5.10's verifier to lose the buffer pointer.
 */
#ifndef BPFMON_CAPTURE_H
#define BPFMON_CAPTURE_H

/* capture_bytes copies up to capture_limit of total bytes from address src (user
 * memory when user, kernel memory else) into buf at off, and returns the
 * number copied. It sets fault in *flags when src is 0 or cannot be read,
 * trunc when total is over the limit. user is a constant at every call:
 * once inlined, one read helper is left. */
static __always_inline __u32 capture_bytes(__u8 *buf, __u32 off, __u64 src, __u64 total, bool user, __u32 *flags,
					   __u32 fault, __u32 trunc)
{
	__u32 n;
	long err;

	if (total == 0)
		return 0;
	if (src == 0) {
		*flags |= fault;
		return 0;
	}
	n = total > capture_limit ? capture_limit : total;
	if (total > n)
		*flags |= trunc;
	if (off > MAX_CAPTURE)
		return 0;
	CLAMP(n, MAX_CAPTURE);
	CLAMP(off, MAX_CAPTURE);
	if (user)
		err = bpf_probe_read_user(buf + off, n, (void *)src);
	else
		err = bpf_probe_read_kernel(buf + off, n, (void *)src);
	if (err < 0) {
		*flags |= fault;
		return 0;
	}
	return n;
}

#endif /* BPFMON_CAPTURE_H */
