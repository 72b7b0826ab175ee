//go:build race

package receiver

// raceDetector: the race detector slows the receiver and the in-process sinks about tenfold, so
// CPU-bound sizes are scaled down; the run is for finding races, not for timing.
const raceDetector = true
