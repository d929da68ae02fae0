// Command clientdb measures the Go client's local database against raw SQLite through
// the same driver (modernc.org/sqlite) on the same file layout: N creates in one write,
// N reads by id, a full scan, queries by an indexed column, and the two first-sync paths
// (ApplyRemoteChanges and InsertSynced). It prints one table.
//
//	go run ./bench/clientdb [-n 100000] [-projects 100] [-dir DIR]
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/client"
	"github.com/melonsync/melonsync/schema"
)

const schemaJSON = `{"version": 1, "tables": [{"name": "tasks", "columns": [
  {"name": "project_id", "type": "string", "isIndexed": true},
  {"name": "name", "type": "string"},
  {"name": "is_done", "type": "boolean"},
  {"name": "position", "type": "number"},
  {"name": "description", "type": "string", "isOptional": true}
]}]}`

type result struct {
	op         string
	rows       int
	client     time.Duration
	raw        time.Duration
	haveClient bool
	haveRaw    bool
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "clientdb:", err)
		os.Exit(1)
	}
}

func run() error {
	n := flag.Int("n", 100000, "number of records")
	projects := flag.Int("projects", 100, "number of distinct values of the indexed column")
	dir := flag.String("dir", "", "directory for the database files (default: a temporary one)")
	flag.Parse()
	if *dir == "" {
		d, err := os.MkdirTemp("", "clientdb-bench")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	s, err := schema.Parse([]byte(schemaJSON))
	if err != nil {
		return err
	}
	ctx := context.Background()
	ids := make([]string, *n)
	rows := make([]map[string]any, *n)
	for i := range rows {
		ids[i] = client.NewID()
		rows[i] = map[string]any{
			"id": ids[i], "project_id": "project-" + strconv.Itoa(i%*projects), "name": "Task number " + strconv.Itoa(i),
			"is_done": i%3 == 0, "position": float64(i), "description": nil,
		}
	}
	var results []*result

	// --- client
	db, err := client.Open(filepath.Join(*dir, "client.db"), s)
	if err != nil {
		return err
	}
	defer db.Close()
	create := &result{op: "create (one write)", rows: *n, haveClient: true, haveRaw: true}
	start := time.Now()
	err = db.Write(ctx, func(tx *client.Tx) error {
		for _, r := range rows {
			if _, err := tx.Create("tasks", r); err != nil {
				return err
			}
		}
		return nil
	})
	create.client = time.Since(start)
	if err != nil {
		return err
	}
	find := &result{op: "find by id (one read)", rows: *n, haveClient: true, haveRaw: true}
	start = time.Now()
	err = db.Read(ctx, func(tx *client.Tx) error {
		for _, id := range ids {
			if _, err := tx.Find("tasks", id); err != nil {
				return err
			}
		}
		return nil
	})
	find.client = time.Since(start)
	if err != nil {
		return err
	}
	scan := &result{op: "full scan", rows: *n, haveClient: true, haveRaw: true}
	start = time.Now()
	err = db.Read(ctx, func(tx *client.Tx) error {
		recs, err := tx.Query("tasks", client.Query{})
		if err == nil && len(recs) != *n {
			err = fmt.Errorf("scan found %d records", len(recs))
		}
		return err
	})
	scan.client = time.Since(start)
	if err != nil {
		return err
	}
	byIndex := &result{op: fmt.Sprintf("query by indexed column (%d queries)", *projects), rows: *n, haveClient: true, haveRaw: true}
	start = time.Now()
	got := 0
	err = db.Read(ctx, func(tx *client.Tx) error {
		for p := 0; p < *projects; p++ {
			recs, err := tx.Query("tasks", client.Where(client.Eq("project_id", "project-"+strconv.Itoa(p))))
			if err != nil {
				return err
			}
			got += len(recs)
		}
		return nil
	})
	byIndex.client = time.Since(start)
	if err != nil {
		return err
	}
	if got != *n {
		return fmt.Errorf("indexed queries found %d records", got)
	}

	// first-sync paths into empty tables
	apply := &result{op: "ApplyRemoteChanges, created (first sync)", rows: *n, haveClient: true}
	db2, err := client.Open(filepath.Join(*dir, "apply.db"), s)
	if err != nil {
		return err
	}
	defer db2.Close()
	remote := make([]melonsync.RawRecord, len(rows))
	copy(remote, rows)
	start = time.Now()
	err = db2.Write(ctx, func(tx *client.Tx) error {
		return tx.ApplyRemoteChanges(melonsync.Changes{"tasks": {Created: remote}}, client.ApplyOptions{})
	})
	apply.client = time.Since(start)
	if err != nil {
		return err
	}
	turbo := &result{op: "InsertSynced (streaming first sync)", rows: *n, haveClient: true}
	db3, err := client.Open(filepath.Join(*dir, "turbo.db"), s)
	if err != nil {
		return err
	}
	defer db3.Close()
	start = time.Now()
	err = db3.Write(ctx, func(tx *client.Tx) error {
		for _, r := range rows {
			if err := tx.InsertSynced("tasks", r); err != nil {
				return err
			}
		}
		return nil
	})
	turbo.client = time.Since(start)
	if err != nil {
		return err
	}

	// --- raw SQLite, same driver, same layout and settings
	if err := rawBaseline(filepath.Join(*dir, "raw.db"), s, rows, ids, *projects, create, find, scan, byIndex); err != nil {
		return err
	}
	results = append(results, create, find, scan, byIndex, apply, turbo)

	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "operation\trecords\tclient\tclient rows/s\traw SQLite\traw rows/s\tclient/raw\t\n")
	for _, r := range results {
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t\n", r.op, r.rows, dur(r.client, r.haveClient), rate(r.rows, r.client, r.haveClient),
			dur(r.raw, r.haveRaw), rate(r.rows, r.raw, r.haveRaw), ratio(r))
	}
	return w.Flush()
}

func dur(d time.Duration, ok bool) string {
	if !ok {
		return "-"
	}
	return d.Round(time.Millisecond / 10).String()
}

func rate(n int, d time.Duration, ok bool) string {
	if !ok || d <= 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(n)/d.Seconds(), 'f', 0, 64)
}

func ratio(r *result) string {
	if !r.haveClient || !r.haveRaw || r.raw <= 0 {
		return "-"
	}
	return strconv.FormatFloat(r.client.Seconds()/r.raw.Seconds(), 'f', 2, 64) + "x"
}

// rawBaseline does the same work with plain database/sql: a prepared insert in one
// transaction, prepared point reads, a scan and the indexed queries, scanning every
// column of every row.
func rawBaseline(path string, s *schema.Schema, rows []map[string]any, ids []string, projects int, create, find, scan, byIndex *result) error {
	// create the same layout with the client, then reopen with plain SQLite
	db, err := client.Open(path, s)
	if err != nil {
		return err
	}
	db.Close()
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=synchronous(FULL)&_txlock=immediate")
	if err != nil {
		return err
	}
	defer raw.Close()
	raw.SetMaxOpenConns(1)
	cols := []string{"id", "_status", "_changed", "project_id", "name", "is_done", "position", "description"}
	quoted := `"` + strings.Join(cols, `", "`) + `"`

	start := time.Now()
	tx, err := raw.Begin()
	if err != nil {
		return err
	}
	st, err := tx.Prepare(`insert into "tasks" (` + quoted + `) values (?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	for _, r := range rows {
		done := int64(0)
		if r["is_done"].(bool) {
			done = 1
		}
		if _, err := st.Exec(r["id"], "created", "", r["project_id"], r["name"], done, r["position"], r["description"]); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	create.raw = time.Since(start)

	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	start = time.Now()
	tx, err = raw.Begin()
	if err != nil {
		return err
	}
	st, err = tx.Prepare(`select ` + quoted + ` from "tasks" where "id" is ? limit 1`)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := st.QueryRow(id).Scan(ptrs...); err != nil {
			return err
		}
	}
	tx.Rollback()
	find.raw = time.Since(start)

	count := func(q string, args ...any) (int, error) {
		rs, err := raw.Query(q, args...)
		if err != nil {
			return 0, err
		}
		defer rs.Close()
		n := 0
		for rs.Next() {
			if err := rs.Scan(ptrs...); err != nil {
				return 0, err
			}
			n++
		}
		return n, rs.Err()
	}
	start = time.Now()
	if n, err := count(`select ` + quoted + ` from "tasks"`); err != nil || n != len(rows) {
		return fmt.Errorf("raw scan: %d %v", n, err)
	}
	scan.raw = time.Since(start)
	start = time.Now()
	total := 0
	for p := 0; p < projects; p++ {
		n, err := count(`select `+quoted+` from "tasks" where "project_id" is ?`, "project-"+strconv.Itoa(p))
		if err != nil {
			return err
		}
		total += n
	}
	byIndex.raw = time.Since(start)
	if total != len(rows) {
		return fmt.Errorf("raw indexed queries found %d", total)
	}
	return nil
}
