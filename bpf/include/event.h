/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Records the syscall sensor writes to its ring buffer.
 *
 * Every bpf(2) call of interest produces two records sharing one layout:
 * REC_ENTER at syscall entry (who, which map, the key and value bytes the
 * caller passed) and REC_EXIT at syscall exit (the result, batch counts, the
 * map behind a newly returned fd, bytes the kernel wrote back). User space
 * pairs them by tid. Keep struct event in sync with internal/sensor/syscallsensor/record.go;
 * a test compares the two layouts through the object's BTF.
 */
#ifndef BPFMON_EVENT_H
#define BPFMON_EVENT_H

#define REC_ENTER 1
#define REC_EXIT 2
#define REC_PROC 3 /* a process's executable path, sent once per process */
#define REC_EXIT_SHORT 4 /* struct exit_short: an exit with nothing but its result */

/* REC_PROC data: the path's components from the leaf up, one per slot,
 * NUL-terminated; count holds how many. */
#define EXE_SLOTS 24
#define EXE_SLOT 128

/* Hard upper bound of the capture limit; the runtime limit is a constant
 * in .rodata that may be lower. Must be a power of two. */
#define MAX_CAPTURE 32768
#define MAX_PATH 4096

/* event.flags */
#define EF_COMPAT (1 << 0)        /* called through the 32-bit compat entry */
#define EF_MAP (1 << 1)           /* map{} holds a resolved kernel map */
#define EF_MAP_REQUESTED (1 << 2) /* map{} holds map_create's requested attributes */
#define EF_KEY_FAULT (1 << 3)     /* key pointer could not be read */
#define EF_VALUE_FAULT (1 << 4)   /* value pointer could not be read */
#define EF_KEY_TRUNC (1 << 5)     /* key longer than the capture limit */
#define EF_VALUE_TRUNC (1 << 6)   /* value longer than the capture limit */
#define EF_PATH_TRUNC (1 << 7)    /* path longer than MAX_PATH or unreadable */
#define EF_NOT_MAP (1 << 8)       /* the fd refers to a BPF object that is not a map */
#define EF_UNVERIFIED (1 << 9)    /* file type not yet verified (calibration pending) */
#define EF_PATH_FD (1 << 10)      /* path is relative to path_fd (BPF_F_PATH_FD) */
#define EF_BAD_FD (1 << 11)       /* fd not open in the caller's table */
#define EF_EXE_TRUNC (1 << 12)    /* REC_PROC: path deeper than EXE_SLOTS */

struct map_info {
	__u32 id;
	__u32 type;
	__u32 key_size;
	__u32 value_size;
	__u32 max_entries;
	__u32 flags;
	char name[16];
	__u8 frozen;
	__u8 _pad[7];
};

struct event {
	__u32 kind; /* REC_ENTER or REC_EXIT */
	__u32 cmd;  /* enum bpf_cmd */
	__u64 ktime; /* CLOCK_BOOTTIME ns */
	__u32 pid;   /* tgid */
	__u32 tid;
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__u32 flags; /* EF_* */
	__u64 cgroup_id;
	__u64 start_time; /* task start, boot ns: with pid, a process identity */
	__u64 exe_ino;
	char comm[16];
	__s64 result;      /* REC_EXIT: syscall return value */
	__u64 elem_flags;  /* update/batch flags as passed */
	__s32 fd;          /* map fd (bpf_fd for obj_pin) */
	__u32 count;       /* batch: ENTER elements asked, EXIT elements processed */
	__u32 req_id;      /* map_get_fd_by_id: requested id; obj_get: file_flags */
	__s32 path_fd;
	__u32 key_len;     /* bytes of key captured in data[] */
	__u32 value_len;   /* bytes of value captured after the key */
	__u64 key_total;   /* bytes of key the call carried */
	__u64 value_total;
	__u32 path_len;    /* obj_pin/obj_get: path bytes in data[], no NUL */
	__u32 _pad;
	struct map_info map;
	/* followed by data: key, then value; or path */
};

/* The exit record of calls whose exit carries no data: most of them. Its
 * first fields line up with struct event's. */
struct exit_short {
	__u32 kind; /* REC_EXIT_SHORT */
	__u32 cmd;
	__u32 pid;
	__u32 tid;
	__s64 result;
	__u32 count; /* batch: elements processed */
	__u32 flags; /* EF_COMPAT */
};

#endif /* BPFMON_EVENT_H */
