// Package fault drives the real receiver binary (built once per test run from ./cmd/receiver and
// run as a subprocess) with a sender that behaves like Segment, under injected faults, and with a
// matrix of malformed and hostile requests. It has no non-test code: see the _test.go files.
//
//	go test ./test/fault/                       # short mode, part of make test
//	go test ./test/fault/ -v -args -fault.long  # more events per scenario (or FAULT_LONG=1)
package fault
