package main

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// groupCounts are the serve processes' group-commit counters (PostgreSQL), summed.
type groupCounts struct {
	groups, grouped, alone, single int64
	ok                             bool
}

var groupMetrics = map[string]func(*groupCounts) *int64{
	"melonsync_group_commits_total":           func(c *groupCounts) *int64 { return &c.groups },
	"melonsync_group_commit_pushes_total":     func(c *groupCounts) *int64 { return &c.grouped },
	"melonsync_group_commit_sent_alone_total": func(c *groupCounts) *int64 { return &c.alone },
	"melonsync_group_commit_single_total":     func(c *groupCounts) *int64 { return &c.single },
}

// scrapeGroups reads the counters from each process's /metrics.
func scrapeGroups(urls []string) groupCounts {
	var c groupCounts
	hc := &http.Client{Timeout: 5 * time.Second}
	for _, u := range urls {
		resp, err := hc.Get(u)
		if err != nil {
			return groupCounts{}
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			name, v, ok := strings.Cut(sc.Text(), " ")
			if f := groupMetrics[name]; ok && f != nil {
				n, _ := strconv.ParseFloat(v, 64)
				*f(&c) += int64(n)
				c.ok = true
			}
		}
		resp.Body.Close()
	}
	return c
}

func (c groupCounts) sub(o groupCounts) groupCounts {
	return groupCounts{groups: c.groups - o.groups, grouped: c.grouped - o.grouped, alone: c.alone - o.alone,
		single: c.single - o.single, ok: c.ok && o.ok}
}

// String says how the window's pushes were written.
func (c groupCounts) String() string {
	all := c.grouped + c.single + c.alone
	if !c.ok || all == 0 {
		return ""
	}
	avg := 0.0
	if c.groups > 0 {
		avg = float64(c.grouped) / float64(c.groups)
	}
	return fmt.Sprintf("groups of %.1f on average; %.0f%% alone, %.0f%% sent alone", avg,
		100*float64(c.single)/float64(all), 100*float64(c.alone)/float64(all))
}
