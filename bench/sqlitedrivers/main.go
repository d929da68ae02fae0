// Command sqlitedrivers measures the floor of a first sync — the bulk insert of
// bench/firstsync's rows in one transaction with prepared statements — with the two
// Go SQLite drivers in the same run: modernc.org/sqlite (pure Go, melonsync's) and
// github.com/mattn/go-sqlite3 (cgo, SQLite's C code). It is a module of its own so
// that the cgo driver never enters melonsync's build; it needs a C compiler.
//
//	cd bench/sqlitedrivers && go run . [-n 100000] [-runs 3]
package main

import (
	"database/sql"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"syscall"
	"time"

	_ "github.com/mattn/go-sqlite3" // "sqlite3"
	"github.com/melonsync/melonsync/internal/bulkinsert"
	_ "modernc.org/sqlite" // "sqlite"
)

func main() {
	n := flag.Int("n", 100000, "rows (a tenth projects, 60% tasks, 30% comments)")
	runs := flag.Int("runs", 3, "runs of each driver, alternating (the best is shown)")
	flag.Parse()
	dir, err := os.MkdirTemp("", "sqlitedrivers-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	best := map[string][2]time.Duration{}
	for r := 0; r < *runs; r++ {
		for _, d := range []struct{ name, dsn string }{
			{"sqlite", "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)"},
			{"sqlite3", "?_journal_mode=WAL&_synchronous=FULL"},
		} {
			path := filepath.Join(dir, fmt.Sprintf("%s-%d.db", d.name, r))
			c0, t0 := cpu(), time.Now()
			if err := rawInsert(d.name, path+d.dsn, *n); err != nil {
				log.Fatalf("%s: %v", d.name, err)
			}
			wall, used := time.Since(t0), cpu()-c0
			if b, ok := best[d.name]; !ok || used < b[1] {
				best[d.name] = [2]time.Duration{wall, used}
			}
		}
	}
	fmt.Printf("bulk insert of %d rows, one transaction, prepared statements (best of %d)\n", *n, *runs)
	fmt.Printf("%-40s %10s %10s\n", "", "time", "CPU")
	m, c := best["sqlite"], best["sqlite3"]
	fmt.Printf("%-40s %10s %10s\n", "modernc.org/sqlite (pure Go)", m[0].Round(time.Millisecond), m[1].Round(time.Millisecond))
	fmt.Printf("%-40s %10s %10s\n", "github.com/mattn/go-sqlite3 (cgo)", c[0].Round(time.Millisecond), c[1].Round(time.Millisecond))
	fmt.Printf("cgo driver CPU: %.2f× the pure-Go driver's\n", c[1].Seconds()/m[1].Seconds())
}

func cpu() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rawInsert is bench/firstsync's baseline (internal/bulkinsert), with the driver given.
func rawInsert(driver, dsn string, n int) error {
	db, err := sql.Open(driver, "file:"+dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	return bulkinsert.Run(db, n)
}
