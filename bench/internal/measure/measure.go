// Package measure times a function while sampling the Go heap and the process's
// resident set, for the benchmark programs.
package measure

import (
	"bufio"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Result is what one run took.
type Result struct {
	D time.Duration
	// HeapPeak is the largest heap in use during the run, above the heap in use
	// before it (garbage not yet collected included).
	HeapPeak uint64
	// RSSPeak is the process's peak resident set during the run (Linux; 0 elsewhere).
	RSSPeak uint64
	// CPU is the process's user + system CPU time during the run (all goroutines).
	CPU time.Duration
}

// Run runs fn and measures it. The heap is sampled every 2 ms with runtime/metrics,
// which does not stop the world (runtime.ReadMemStats would, 500 times a second,
// slowing down the measured function's goroutines).
func Run(fn func() error) (Result, error) {
	// Collect, and give the free memory back to the system, so that the resident set
	// the run starts from is not what earlier runs left behind.
	debug.FreeOSMemory()
	base := heapInUse()
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) // resets the RSS high-water mark
	var top atomic.Uint64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if h := heapInUse(); h > top.Load() {
					top.Store(h)
				}
			}
		}
	}()
	cpu0 := CPUTime()
	start := time.Now()
	err := fn()
	d := time.Since(start)
	cpu := CPUTime() - cpu0
	close(stop)
	<-done
	p := max(top.Load(), base)
	return Result{D: d, HeapPeak: p - base, RSSPeak: peakRSS(), CPU: cpu}, err
}

// heapInUse is runtime.MemStats.HeapInuse (the bytes of in-use heap spans: live and
// not yet collected objects, and the free room in their spans), read without stopping
// the world.
func heapInUse() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
	metrics.Read(s)
	var n uint64
	for _, x := range s {
		if x.Value.Kind() == metrics.KindUint64 {
			n += x.Value.Uint64()
		}
	}
	return n
}

// CPUTime returns the user + system CPU time the process has used so far.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakRSS reads VmHWM from /proc/self/status.
func peakRSS() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
