package postgres_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/melonsync/melonsync/internal/testutil"
)

// TestVacuumFindsChurnedTables: plain-SQL updates churn a synced table with autovacuum
// off for it; Vacuum finds the dead rows in the statistics and vacuums and analyzes
// that table, and leaves the untouched ones alone.
func TestVacuumFindsChurnedTables(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
	if err := s.Prepare(ctx, testutil.TodoSchema(t)); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.ConnectConfig(ctx, s.Pool().Config().ConnConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	// Whatever this server's setting, autovacuum does not look after this table.
	exec(`ALTER TABLE projects SET (autovacuum_enabled = false)`)
	exec(`INSERT INTO projects (id, __owner, name) SELECT 'p' || i, 'alice', 'x' FROM generate_series(1, 200) i`)
	churn := func() {
		for i := 0; i < 20; i++ {
			exec(`UPDATE projects SET name = $1`, strconv.Itoa(i))
		}
		exec(`SELECT pg_stat_force_next_flush()`)
	}
	stat := func() (dead int64) {
		t.Helper()
		if err := conn.QueryRow(ctx, `SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'projects'::regclass`).Scan(&dead); err != nil {
			t.Fatal(err)
		}
		return dead
	}
	churn()
	// The statistics reach the shared counters when the writing session is idle.
	for deadline := time.Now().Add(20 * time.Second); stat() < 1000 && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
	}
	if d := stat(); d < 1000 {
		t.Fatalf("%d dead rows counted after 4,000 updates", d)
	}
	done, err := s.Vacuum(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(done, "projects") {
		t.Fatalf("vacuumed %v, not projects", done)
	}
	// What the vacuum frees depends on the oldest snapshot in the database (other
	// sessions'), so the test checks that it ran, and ran only where needed.
	var vacuums, analyzes int64
	if err := conn.QueryRow(ctx, `SELECT vacuum_count, analyze_count FROM pg_stat_user_tables WHERE relid = 'projects'::regclass`).Scan(&vacuums, &analyzes); err != nil {
		t.Fatal(err)
	}
	if vacuums < 1 || analyzes < 1 {
		t.Errorf("projects: %d vacuums, %d analyzes", vacuums, analyzes)
	}
	if slices.Contains(done, "tasks") {
		t.Errorf("vacuumed tasks, which nothing changed: %v", done)
	}
}
