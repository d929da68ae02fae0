package reliability_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/sqlite"
)

// TestAccessPlainSQLRevocation: the app's backend removes a member with a plain SQL
// DELETE and adds them back with an INSERT; the member's pulls see the revocation
// (every row of the team in deleted) and then the rejoin, on both stores.
func TestAccessPlainSQLRevocation(t *testing.T) {
	sch, err := schema.Load("../examples/teams/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	type backend struct {
		store server.Store
		exec  func(q string) error
	}
	stores := map[string]func(t *testing.T) backend{
		"sqlite": func(t *testing.T) backend {
			path := filepath.Join(t.TempDir(), "s.db")
			st, err := sqlite.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return backend{st, func(q string) error { _, err := db.Exec(q); return err }}
		},
		"postgres": func(t *testing.T) backend {
			dsn := testutil.PostgresDSN(t)
			_, sdsn := testutil.PostgresSchema(t, dsn, "melon_revoke")
			st, err := postgres.Open(context.Background(), sdsn)
			if err != nil {
				t.Fatal(err)
			}
			return backend{st, func(q string) error {
				conn, err := pgx.Connect(context.Background(), sdsn)
				if err != nil {
					return err
				}
				defer conn.Close(context.Background())
				_, err = conn.Exec(context.Background(), q)
				return err
			}}
		},
	}
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			b := stores[name](t)
			defer b.store.Close()
			ctx := context.Background()
			if err := b.store.Prepare(ctx, sch); err != nil {
				t.Fatal(err)
			}
			svc := server.New(b.store, sch)
			p, err := server.DecodePush(sch, []byte(`{"lastPulledAt":0,"changes":{"teams":{"created":[{"id":"t1","name":"T"}]},"team_members":{"created":[{"id":"m_a","team_id":"t1","user_id":"alice"}]},"tasks":{"created":[{"id":"k1","team_id":"t1","name":"x"}]}}}`))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Push(ctx, server.Caller{User: "alice", Device: "a"}, p); err != nil {
				t.Fatal(err)
			}
			sqlDo := func(q string) {
				if err := b.exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			pull := func(since int64) (*melonsync.PullResponse, string) {
				var buf bytes.Buffer
				if err := svc.Pull(ctx, server.Caller{User: "bob", Device: "b"}, server.PullParams{LastPulledAt: since}, &buf); err != nil {
					t.Fatal(err)
				}
				var pr melonsync.PullResponse
				if err := json.Unmarshal(buf.Bytes(), &pr); err != nil {
					t.Fatal(err)
				}
				return &pr, summarizeKinds(&pr)
			}
			sqlDo(`INSERT INTO team_members (id, __owner, team_id, user_id, role) VALUES ('bm1', 'backend', 't1', 'bob', 'r')`)
			first, got := pull(0)
			if want := "created: tasks/k1 team_members/bm1 team_members/m_a teams/t1"; got != want {
				t.Fatalf("bob's first sync after the backend added him: %s, want %s", got, want)
			}
			sqlDo(`DELETE FROM team_members WHERE id = 'bm1'`)
			if _, got := pull(first.Timestamp); got != "deleted: tasks/k1 team_members/bm1 team_members/m_a teams/t1" {
				t.Errorf("bob's pull after the backend removed him (SQL DELETE): %q, want every row of t1 in deleted", got)
			}
			sqlDo(`INSERT INTO team_members (id, __owner, team_id, user_id, role) VALUES ('bm2', 'backend', 't1', 'bob', 'r')`)
			if _, got := pull(first.Timestamp); got != "created: team_members/bm2; deleted: team_members/bm1" {
				t.Errorf("bob's pull from before his removal, after the backend added him back: %q, want bm2 created and bm1 deleted (he stayed a member)", got)
			}
		})
	}
}

// summarizeKinds lists a pull's ids as "created: t/id …; updated: …; deleted: …".
func summarizeKinds(pr *melonsync.PullResponse) string {
	kinds := map[string][]string{}
	for table, tc := range pr.Changes {
		for _, r := range tc.Created {
			kinds["created"] = append(kinds["created"], table+"/"+fmt.Sprint(r["id"]))
		}
		for _, r := range tc.Updated {
			kinds["updated"] = append(kinds["updated"], table+"/"+fmt.Sprint(r["id"]))
		}
		for _, id := range tc.Deleted {
			kinds["deleted"] = append(kinds["deleted"], table+"/"+id)
		}
	}
	var parts []string
	for _, k := range []string{"created", "updated", "deleted"} {
		if ids := kinds[k]; len(ids) > 0 {
			sort.Strings(ids)
			parts = append(parts, k+": "+strings.Join(ids, " "))
		}
	}
	return strings.Join(parts, "; ")
}
