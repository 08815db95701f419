// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The record protocol's types and ring buffer on their own (see
 * include/record.h), for internal/sensor/record: bpf2go generates the Go
 * twins of the shared types from this object, and bpfmon's one ring buffer
 * is created from its map definition. It holds no program.
 */
#include "kernel.h"
#include "bpf_helpers.h"
#include "bpf_core_read.h"
#include "common.h"
#include "record.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";
