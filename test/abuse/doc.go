// Package abuse runs the real receiver binary against hostile input beside a Segment-like
// sender, which must see every request acknowledged and every event at the sink, while the
// receiver's peak RSS stays under the operator's default memory limit (see abuse_test.go).
// ABUSE_LONG=1 runs each case longer and harder.
package abuse
