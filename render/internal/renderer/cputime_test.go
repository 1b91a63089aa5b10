package renderer

import (
	"syscall"
	"time"
)

// processCPU is the CPU time the process has used, garbage collection
// included. On a shared machine it is a steadier measure of a benchmark's
// cost than wall time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
