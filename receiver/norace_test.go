//go:build !race

package receiver

const raceDetector = false
