/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Reading a BPF link from its file: the program behind it and that
 * program's maps, for the sensors that follow a link to what it runs
 * (syscall.c reports a link's program; lsm.c refuses access through a
 * link to a program using a protected map).
 *
 * Included after kernel.h, bpf_helpers.h, bpf_core_read.h and common.h.
 */
#ifndef BPFMON_LINK_H
#define BPFMON_LINK_H

/* The kernel's struct bpf_link, as far as bpfmon reads it. */
struct bpf_link___bpfmon {
	__u32 id;
	struct bpf_prog *prog;
} __attribute__((preserve_access_index));

/* link_aux returns the aux of the program behind the link file f, with
 * the link in *link and the program in *prog; NULL when there is none
 * or f is not a link's: the program's aux pointing back to it tells a
 * link from another file's private_data. */
static __always_inline struct bpf_prog_aux *link_aux(struct file *f, struct bpf_link___bpfmon **link,
						     struct bpf_prog **prog)
{
	struct bpf_prog_aux *aux;

	if (!f)
		return 0;
	*link = BPF_CORE_READ(f, private_data);
	if (!*link)
		return 0;
	*prog = BPF_CORE_READ(*link, prog);
	if (!*prog)
		return 0;
	aux = BPF_CORE_READ(*prog, aux);
	if (!aux || BPF_CORE_READ(aux, prog) != *prog)
		return 0;
	return aux;
}

/* used_map returns the i-th of the maps a program uses (aux->used_maps,
 * maps), NULL when unreadable. */
static __always_inline struct bpf_map *used_map(struct bpf_map **maps, __u32 i)
{
	struct bpf_map *m = 0;

	bpf_probe_read_kernel(&m, sizeof(m), &maps[i]);
	return m;
}

#endif /* BPFMON_LINK_H */
