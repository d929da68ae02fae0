package http_test

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/server/storetest"
	"github.com/melonsync/melonsync/sqlite"
)

// backupStore is a store that can be opened again (a new process), backed up and
// restored the way docs/operations.md says.
type backupStore struct {
	open    func(t *testing.T) server.Store
	backup  func(t *testing.T)
	restore func(t *testing.T) // with every store closed
}

// eachBackupStore runs fn on a SQLite file (backed up with VACUUM INTO, restored by
// copying the file back) and, when MELONSYNC_TEST_POSTGRES is set, on a PostgreSQL
// schema (pg_dump, then DROP SCHEMA and pg_restore).
func eachBackupStore(t *testing.T, fn func(t *testing.T, b backupStore)) {
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		path, saved := filepath.Join(dir, "s.db"), filepath.Join(dir, "backup.db")
		fn(t, backupStore{
			open: func(t *testing.T) server.Store {
				s, err := sqlite.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
			backup: func(t *testing.T) {
				db, err := sql.Open("sqlite", path)
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				if _, err := db.Exec(`VACUUM INTO ?`, saved); err != nil {
					t.Fatal(err)
				}
			},
			restore: func(t *testing.T) {
				b, err := os.ReadFile(saved)
				if err != nil {
					t.Fatal(err)
				}
				os.Remove(path + "-wal")
				os.Remove(path + "-shm")
				if err := os.WriteFile(path, b, 0o600); err != nil {
					t.Fatal(err)
				}
			},
		})
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := testutil.PostgresDSN(t)
		for _, tool := range []string{"pg_dump", "pg_restore"} {
			if _, err := exec.LookPath(tool); err != nil {
				t.Skip(tool, "is not installed")
			}
		}
		name, _ := testutil.PostgresSchema(t, dsn, "melon_test_restore")
		saved := filepath.Join(t.TempDir(), "backup.dump")
		run := func(t *testing.T, cmd string, args ...string) {
			if out, err := exec.Command(cmd, args...).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", cmd, err, out)
			}
		}
		fn(t, backupStore{
			open: func(t *testing.T) server.Store {
				s, err := postgres.Open(context.Background(), dsn, postgres.WithSchema(name))
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
			backup: func(t *testing.T) { run(t, "pg_dump", "-Fc", "-n", name, "-f", saved, "-d", dsn) },
			restore: func(t *testing.T) {
				conn, err := pgx.Connect(context.Background(), dsn)
				if err != nil {
					t.Fatal(err)
				}
				_, err = conn.Exec(context.Background(), `DROP SCHEMA "`+name+`" CASCADE`)
				conn.Close(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				run(t, "pg_restore", "-d", dsn, saved)
			},
		})
	})
}

// TestRestoredBackupForcesReplacement: a backup is restored and the server started
// again, with no operator step; another user writes. A device that synced after the
// backup was taken must get a replacement (today's code gave it an incremental pull:
// the record the restore lost stayed "synced" on it), a device that last synced
// before the backup goes on incrementally, and the replaced device's next pull is
// incremental again. With Resume (what "melonsync serve" does on start) and without
// (the first push marks the gap).
func TestRestoredBackupForcesReplacement(t *testing.T) {
	for _, resume := range []bool{false, true} {
		name := "first push"
		if resume {
			name = "resume on start"
		}
		t.Run(name, func(t *testing.T) {
			eachBackupStore(t, func(t *testing.T, b backupStore) {
				s1 := b.open(t)
				h := storetest.NewHarness(t, s1)
				h.MustPush("alice", "d1", 0, `{"projects":{"created":[{"id":"kept","name":"x"}]}}`)
				early := h.PullFrom("alice", "d2", 0).Timestamp // d2 last syncs before the backup
				b.backup(t)
				h.MustPush("alice", "d1", 0, `{"projects":{"created":[{"id":"lost","name":"x"}]}}`)
				late := h.PullFrom("alice", "d1", 0).Timestamp // d1 holds a timestamp of the lost history
				s1.Close()

				b.restore(t)
				h = storetest.NewHarness(t, b.open(t)) // the server started again
				if resume {
					if _, err := h.Svc.Resume(context.Background()); err != nil {
						t.Fatal(err)
					}
				}
				h.MustPush("bob", "b1", 0, `{"projects":{"created":[{"id":"bob-after","name":"x"}]}}`)

				r := h.PullFrom("alice", "d1", late)
				if r.Strategy != melonsync.StrategyReplacement {
					t.Fatalf("a device that synced after the backup pulled without replacement (strategy %q): it keeps %q, which the server lost", r.Strategy, "lost")
				}
				pr := r.Changes["projects"]
				if ids := storetest.IDs(append(pr.Created, pr.Updated...)); !slices.Equal(ids, []string{"kept"}) {
					t.Errorf("the replacement holds %v; want [kept]", ids)
				}
				if again := h.PullFrom("alice", "d1", r.Timestamp); again.Strategy != "" {
					t.Errorf("the pull after the replacement: strategy %q; want incremental", again.Strategy)
				}
				if e := h.PullFrom("alice", "d2", early); e.Strategy != "" {
					t.Errorf("a device that last synced before the backup: strategy %q; want incremental", e.Strategy)
				}
			})
		})
	}
}

// TestStoreGoingBackUnderARunningServer: the store loses its latest writes while the
// server runs (a failover to a replica that lagged; simulated on a SQLite file by a
// second connection taking the clock back and the last write away). The next write
// notices the clock below the highest the process saw and marks the gap: the device
// that pulled the lost write gets a replacement, the one from before does not.
func TestStoreGoingBackUnderARunningServer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	h := storetest.NewHarness(t, s)
	kept := h.MustPush("alice", "d1", 0, `{"projects":{"created":[{"id":"kept","name":"x"}]}}`).Timestamp
	early := h.PullFrom("alice", "d2", 0).Timestamp
	h.MustPush("alice", "d1", 0, `{"projects":{"created":[{"id":"lost","name":"x"}]}}`)
	late := h.PullFrom("alice", "d1", 0).Timestamp

	db, err := sql.Open("sqlite", sqlite.DSN(path, "immediate"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`DELETE FROM "projects" WHERE "id" = 'lost'`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE "__melon_meta" SET "value" = ? WHERE "key" = 'clock'`, kept); err != nil {
		t.Fatal(err)
	}

	h.MustPush("bob", "b1", 0, `{"projects":{"created":[{"id":"bob-after","name":"x"}]}}`)
	if r := h.PullFrom("alice", "d1", late); r.Strategy != melonsync.StrategyReplacement {
		t.Fatalf("the device holding the lost write pulled with strategy %q; want a replacement", r.Strategy)
	}
	if r := h.PullFrom("alice", "d2", early); r.Strategy != "" {
		t.Errorf("the device from before pulled with strategy %q; want incremental", r.Strategy)
	}
}
