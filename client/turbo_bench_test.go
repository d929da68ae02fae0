package client

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/melonsync/melonsync/internal/bulkinsert"
	"github.com/melonsync/melonsync/schema"
)

// benchAnswer is a first-sync pull answer of n records of the todo example's schema,
// shaped as bench/firstsync's server sends them (a tenth projects, 60% tasks, 30%
// comments).
func benchAnswer(n int) []byte {
	projects, tasks := n/10, n*6/10
	comments := n - projects - tasks
	var b bytes.Buffer
	b.WriteString(`{"changes":{"projects":{"created":[`)
	for i := range projects {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"p%d","name":"Project %d","is_favorite":%v,"position":%d}`, i, i, i%3 == 0, i)
	}
	b.WriteString(`],"updated":[],"deleted":[]},"tasks":{"created":[`)
	for i := range tasks {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"t%d","project_id":"p%d","name":"Task number %d","is_done":%v,"position":%d,"description":"Something to do, item %d"}`, i, i%max(projects, 1), i, i%2 == 0, i, i)
	}
	b.WriteString(`],"updated":[],"deleted":[]},"comments":{"created":[`)
	for i := range comments {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"c%d","task_id":"t%d","body":"A comment with a few words in it, number %d"}`, i, i%max(tasks, 1), i)
	}
	b.WriteString(`],"updated":[],"deleted":[]}},"timestamp":1700000000000}`)
	return b.Bytes()
}

// BenchmarkTurboFirstSync measures the streamed first sync of an answer held in memory
// (no server, no HTTP) into a fresh file, next to the floor of bulk-inserting the same
// rows with one prepared single-row INSERT per table in one transaction.
//
//	go test ./client -run '^$' -bench TurboFirstSync -benchtime 3x
func BenchmarkTurboFirstSync(b *testing.B) {
	sch, err := schema.Load(filepath.Join("..", "examples", "todo", "schema.json"))
	if err != nil {
		b.Fatal(err)
	}
	const n = 100000
	answer := benchAnswer(n)
	b.Run("streamed", func(b *testing.B) {
		var cpu time.Duration
		for i := range b.N {
			b.StopTimer()
			db, err := Open(filepath.Join(b.TempDir(), fmt.Sprintf("t%d.db", i)), sch)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			c0 := cpuTime()
			err = Synchronize(context.Background(), db, SyncOptions{UnsafeTurbo: true, PullChanges: func(context.Context, PullArgs) (*PullResult, error) {
				return &PullResult{Body: io.NopCloser(bytes.NewReader(answer))}, nil
			}})
			b.StopTimer()
			cpu += cpuTime() - c0
			if err != nil {
				b.Fatal(err)
			}
			if got := ldbCountAll(b, db, "projects", "tasks", "comments"); got != n {
				b.Fatalf("%d records, want %d", got, n)
			}
			db.Close()
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rec/s")
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	})
	b.Run("baseline-insert", func(b *testing.B) {
		var cpu time.Duration
		for i := range b.N {
			b.StopTimer()
			path := filepath.Join(b.TempDir(), fmt.Sprintf("r%d.db", i))
			b.StartTimer()
			c0 := cpuTime()
			if err := bulkinsert.IntoFile(path, n); err != nil {
				b.Fatal(err)
			}
			cpu += cpuTime() - c0
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rec/s")
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	})
}

// cpuTime is the process's user + system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
