# make bench: build bpfmon and the load generators, measure, print markdown.
# Needs root. BENCHFLAGS passes flags, e.g. make bench BENCHFLAGS=--quick
.PHONY: bench
bench:
	@go run ./bench $(BENCHFLAGS)
