# make bench: build bpfmon and the load generators, measure, print markdown.
# Needs root. BENCHFLAGS passes flags, e.g. make bench BENCHFLAGS=--quick
.PHONY: bench
bench:
	@go run ./bench $(BENCHFLAGS)

# make vmtest: the kernel test matrix. Runs the kernel-dependent tests on
# this machine's kernel and, in qemu, on Debian's 5.10, 6.1, 6.12 and arm64 6.1 cloud kernels (arm64 6.12 by name: --kernels arm64-6.12)
# (downloaded once, cached). Needs root, qemu-system-x86, busybox-static,
# gcc-multilib (arm64: qemu-system-arm, clang, and the arm64 and armhf cross
# libcs and binutils: vmtest names the packages). VMTESTFLAGS passes flags, e.g. VMTESTFLAGS='--kernels 6.1 --run Kernel'
.PHONY: vmtest
vmtest:
	@go run ./vmtest $(VMTESTFLAGS)

# make docs: rewrite the pages generated from the code (docs/reference/:
# every command's flags, the events and their fields, the alert rules,
# the metrics, the exit codes; and the man page docs/bpfmon.8). Needs no
# root and no clang. `go generate ./...` runs it too (cmd/bpfmon/gen.go),
# and cmd/bpfmon's TestReference fails while a committed page is stale.
.PHONY: docs
docs:
	@go test -count=1 -run '^TestReference$$' ./cmd/bpfmon -update-docs

# make mutants: break security-critical code one line at a time, in a copy
# of the tree, and run the tests that must catch each break; one line per
# mutant (caught, survived, stale), see docs/mutants.md. MUTANTS=host runs
# the host part alone (user space, and the programs this kernel loads),
# MUTANTS=vm the kernel-side part (in a VM of vmtest's 6.12); MUTANTSFLAGS
# passes flags, e.g. MUTANTSFLAGS='--run kmark -v'.
.PHONY: mutants
mutants:
	@go run ./mutants $(if $(MUTANTS),--only $(MUTANTS)) $(MUTANTSFLAGS)

# make dist: the release artefacts in dist/: static binaries for amd64 and
# arm64 (the version from git describe), Debian packages of them (nfpm),
# container images of the binary alone (docker-archive tarballs, built
# without a daemon or a base image), and SHA256SUMS. Needs no root and no
# clang. DISTFLAGS passes flags, e.g. DISTFLAGS=-arch=amd64
.PHONY: dist
dist:
	@cd release && go run . $(DISTFLAGS)

# make funclen: the functions over 120 lines, tests and generated code
# aside (CONTRIBUTING.md: no function over 120 lines in new code).
# FUNCLENFLAGS passes flags, e.g. FUNCLENFLAGS='-max 60'
.PHONY: funclen
funclen:
	@go run ./internal/devtools/funclen $(FUNCLENFLAGS)
