package main

// The reference pages in docs/ are generated from the code (make docs):
// TestReference writes them with -update-docs and fails without it while
// they are stale. CI's "go generate changed nothing" check covers them.
//go:generate go test -count=1 -run ^TestReference$ . -update-docs
