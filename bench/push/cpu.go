package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// cpuSample is the CPU time used so far by the serve processes, by PostgreSQL's
// processes and by this program, and the machine's idle time, read from /proc (on a
// system without /proc every figure is 0 and none is printed); and the serve
// processes' group-commit counters.
type cpuSample struct {
	server, postgres, bench, idle time.Duration
	steal                         time.Duration // taken by the hypervisor for other machines
	ok                            bool
	groups                        groupCounts
}

// clockTick is the unit of /proc's CPU times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

func sampleCPU(serverPIDs []int, metricsURLs []string) cpuSample {
	s := cpuSample{bench: procCPU("self"), groups: scrapeGroups(metricsURLs)}
	s.idle, s.steal = machineIdle()
	s.ok = s.bench > 0
	for _, pid := range serverPIDs {
		s.server += procCPU(strconv.Itoa(pid))
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		if comm, err := os.ReadFile(d + "/comm"); err == nil && string(bytes.TrimSpace(comm)) == "postgres" {
			s.postgres += procCPU(filepath.Base(d))
		}
	}
	return s
}

func (s cpuSample) sub(o cpuSample) cpuSample {
	return cpuSample{server: s.server - o.server, postgres: s.postgres - o.postgres, bench: s.bench - o.bench,
		idle: s.idle - o.idle, steal: s.steal - o.steal, ok: s.ok && o.ok, groups: s.groups.sub(o.groups)}
}

// procCPU returns the user and system time of process pid ("self": this one).
func procCPU(pid string) time.Duration {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// The command name is in parentheses and may hold spaces: fields count from the last ')'.
	f := bytes.Fields(b[bytes.LastIndexByte(b, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(string(f[11]), 10, 64)
	stime, _ := strconv.ParseInt(string(f[12]), 10, 64)
	return time.Duration(utime+stime) * clockTick
}

// machineIdle returns the idle and the stolen time of all CPUs together, from
// /proc/stat.
func machineIdle() (idle, steal time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line) // cpu user nice system idle iowait irq softirq steal …
	if len(f) < 9 {
		return 0, 0
	}
	i, _ := strconv.ParseInt(string(f[4]), 10, 64)
	st, _ := strconv.ParseInt(string(f[8]), 10, 64)
	return time.Duration(i) * clockTick, time.Duration(st) * clockTick
}
