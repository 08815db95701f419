package lsm

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 lsm ../../../bpf/lsm.c -- -I../../../bpf/include
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -DBPFMON_LSM_PROBE_READ" -target amd64,arm64 lsmlegacy ../../../bpf/lsm.c -- -I../../../bpf/include
