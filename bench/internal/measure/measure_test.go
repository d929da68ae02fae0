package measure

import (
	"runtime"
	"testing"
	"time"
)

// heapInUse reads what runtime.MemStats.HeapInuse says, without stopping the world.
func TestHeapInUseIsMemStatsHeapInuse(t *testing.T) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	got := heapInUse()
	if got == 0 || got > ms.HeapInuse+1<<20 || got+1<<20 < ms.HeapInuse {
		t.Fatalf("heapInUse %d, MemStats.HeapInuse %d", got, ms.HeapInuse)
	}
}

var keep []byte

// Run sees a heap that fn holds for a while, and its CPU time.
func TestRunSeesTheHeapPeak(t *testing.T) {
	const size = 64 << 20
	r, err := Run(func() error {
		keep = make([]byte, size)
		for i := range keep {
			keep[i] = byte(i)
		}
		time.Sleep(20 * time.Millisecond)
		keep = nil
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.HeapPeak < size || r.HeapPeak > 2*size {
		t.Errorf("heap peak %d, want about %d", r.HeapPeak, size)
	}
	if r.CPU <= 0 || r.D < 20*time.Millisecond {
		t.Errorf("CPU %v, time %v", r.CPU, r.D)
	}
}

// The resident set a run reports is its own, not what an earlier run left behind.
func TestRunRSSIsNotEarlierGarbage(t *testing.T) {
	if peakRSS() == 0 {
		t.Skip("no /proc/self/status")
	}
	const size = 256 << 20
	keep = make([]byte, size)
	for i := range keep {
		keep[i] = byte(i)
	}
	keep = nil
	r, err := Run(func() error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if r.RSSPeak >= size/2 {
		t.Errorf("RSS peak of an empty run %d MiB after %d MiB of garbage", r.RSSPeak>>20, size>>20)
	}
}
