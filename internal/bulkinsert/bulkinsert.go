// Package bulkinsert is the baseline the first-sync benchmarks (bench/firstsync,
// bench/sqlitedrivers, the client's turbo benchmark) print beside their figures: n
// rows shaped like a first sync of the todo example, written into WatermelonDB's
// table layout in one transaction with prepared statements. It is the floor for any
// first sync into SQLite with the same driver.
package bulkinsert

import (
	"database/sql"
	"fmt"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// tables is the todo example's schema in WatermelonDB's layout, with its indexes.
var tables = []string{
	`create table projects (id text primary key, _status text, _changed text, name text, is_favorite integer, position real)`,
	`create table tasks (id text primary key, _status text, _changed text, project_id text, name text, is_done integer, position real, description text)`,
	`create index tasks_project_id on tasks (project_id)`,
	`create table comments (id text primary key, _status text, _changed text, task_id text, body text)`,
	`create index comments_task_id on comments (task_id)`,
}

// Counts splits n records the way the benchmarks' servers hold them: a tenth
// projects, six tenths tasks, the rest comments.
func Counts(n int) (projects, tasks, comments int) {
	projects, tasks = n/10, n*6/10
	return projects, tasks, n - projects - tasks
}

// Run creates the tables in db, which must be empty, and inserts n rows.
func Run(db *sql.DB, n int) error {
	for _, ddl := range tables {
		if _, err := db.Exec(ddl); err != nil {
			return err
		}
	}
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	projects, tasks, comments := Counts(n)
	insert := func(sql string, rows int, args func(i int) []any) error {
		st, err := tx.Prepare(sql)
		if err != nil {
			return err
		}
		defer st.Close()
		for i := range rows {
			if _, err := st.Exec(args(i)...); err != nil {
				return err
			}
		}
		return nil
	}
	if err := insert(`insert into projects values (?, 'synced', '', ?, ?, ?)`, projects, func(i int) []any {
		return []any{fmt.Sprintf("p%d", i), fmt.Sprintf("Project %d", i), i%3 == 0, float64(i)}
	}); err != nil {
		return err
	}
	if err := insert(`insert into tasks values (?, 'synced', '', ?, ?, ?, ?, ?)`, tasks, func(i int) []any {
		return []any{fmt.Sprintf("t%d", i), fmt.Sprintf("p%d", i%max(projects, 1)), fmt.Sprintf("Task number %d", i),
			i%2 == 0, float64(i), fmt.Sprintf("Something to do, item %d", i)}
	}); err != nil {
		return err
	}
	if err := insert(`insert into comments values (?, 'synced', '', ?, ?)`, comments, func(i int) []any {
		return []any{fmt.Sprintf("c%d", i), fmt.Sprintf("t%d", i%max(tasks, 1)), fmt.Sprintf("A comment with a few words in it, number %d", i)}
	}); err != nil {
		return err
	}
	return tx.Commit()
}

// IntoFile runs Run on a new SQLite file at path, opened as the client opens its
// files (modernc.org/sqlite, WAL, synchronous FULL).
func IntoFile(path string, n int) error {
	db, err := sql.Open("sqlite", path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)")
	if err != nil {
		return err
	}
	defer db.Close()
	return Run(db, n)
}
