package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/sqlite"
)

const dumpUsers = 10

// fillStore writes about n records for dumpUsers users through the service: creates in
// big pushes, then updates and deletes (tombstones), and a plain-SQL insert. It
// returns a timestamp between the bulk and the later changes (where a client's
// last pull left off).
func fillStore(t *testing.T, svc *server.Service, sch *schema.Schema, path string, n int) int64 {
	t.Helper()
	ctx := context.Background()
	push := func(user, device string, since int64, changes map[string]any) int64 {
		t.Helper()
		b, _ := json.Marshal(map[string]any{"lastPulledAt": since, "changes": changes})
		p, err := server.DecodePush(sch, b)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := svc.Push(ctx, server.Caller{User: user, Device: device}, p)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Timestamp
	}
	const batch = 5000
	per := n / dumpUsers
	var ts int64
	for u := 0; u < dumpUsers; u++ {
		user := fmt.Sprintf("user%d", u)
		for start := 0; start < per; start += batch {
			var projects, tasks, comments []map[string]any
			for i := start; i < min(start+batch, per); i++ {
				id := fmt.Sprintf("u%d-%d", u, i)
				switch i % 10 {
				case 0:
					projects = append(projects, map[string]any{"id": "p" + id, "name": "Project " + id, "is_favorite": i%20 == 0, "position": float64(i) / 3})
				case 1, 2:
					comments = append(comments, map[string]any{"id": "c" + id, "task_id": "t" + id, "body": strings.Repeat("b", i%40)})
				default:
					t := map[string]any{"id": "t" + id, "project_id": "p" + id, "name": "Task " + id, "is_done": i%3 == 0, "position": i}
					if i%4 == 0 {
						t["description"] = "desc " + id
					}
					tasks = append(tasks, t)
				}
			}
			ts = push(user, "dev"+user, ts, map[string]any{"projects": map[string]any{"created": projects},
				"tasks": map[string]any{"created": tasks}, "comments": map[string]any{"created": comments}})
		}
	}
	mid := ts
	for u := 0; u < dumpUsers; u++ {
		user := fmt.Sprintf("user%d", u)
		var upd, del []any
		for i := 3; i < 200; i += 10 {
			upd = append(upd, map[string]any{"id": fmt.Sprintf("tu%d-%d", u, i), "name": "renamed", "is_done": true})
			del = append(del, fmt.Sprintf("tu%d-%d", u, i+1))
		}
		ts = push(user, "other"+user, ts, map[string]any{"tasks": map[string]any{"updated": upd, "deleted": del}})
	}
	app := openAppDB(t, path)
	if _, err := app.Exec(`INSERT INTO projects (id, __owner, name) VALUES ('from-sql', 'user0', 'written by the backend')`); err != nil {
		t.Fatal(err)
	}
	// A bookkeeping row (access-rule membership history), which must travel as it is.
	if _, err := app.Exec(`INSERT INTO __melon_moves (tbl, id, version, from_grp, to_grp, from_usr, to_usr) VALUES ('projects', 'moved', 7, 'g1', 'g2', '', 'user3')`); err != nil {
		t.Fatal(err)
	}
	return mid
}

// pullJSON pulls as user from since and returns the answer normalized: records
// sorted by id in every list.
func pullJSON(t *testing.T, svc *server.Service, user, device string, since int64) string {
	t.Helper()
	var buf bytes.Buffer
	if err := svc.Pull(context.Background(), server.Caller{User: user, Device: device}, server.PullParams{LastPulledAt: since}, &buf); err != nil {
		t.Fatal(err)
	}
	var r map[string]any
	if err := json.Unmarshal(buf.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	for _, tc := range r["changes"].(map[string]any) {
		for kind, list := range tc.(map[string]any) {
			l := list.([]any)
			sort.Slice(l, func(i, j int) bool { return fmt.Sprint(idOf(l[i])) < fmt.Sprint(idOf(l[j])) })
			tc.(map[string]any)[kind] = l
		}
	}
	b, _ := json.Marshal(r)
	return string(b)
}

func idOf(v any) any {
	if m, ok := v.(map[string]any); ok {
		return m["id"]
	}
	return v
}

// pulls returns, for every user, a first sync and the incremental pull from since.
func pulls(t *testing.T, store server.Store, sch *schema.Schema, since int64) []string {
	t.Helper()
	svc := server.New(store, sch)
	var out []string
	for u := 0; u < dumpUsers; u++ {
		user := fmt.Sprintf("user%d", u)
		out = append(out, pullJSON(t, svc, user, "fresh", 0), pullJSON(t, svc, user, "dev"+user, since))
	}
	return out
}

// TestExportImportRoundTrip moves a store of over 100k records SQLite → PostgreSQL →
// SQLite with melonsync export and import: every user's first sync and incremental
// pull answer the same on all three, the secret travels when asked, a client goes
// on syncing incrementally (no replacement), and a store that holds data is refused.
func TestExportImportRoundTrip(t *testing.T) {
	t.Setenv("MELONSYNC_JWT_SECRET", "")
	dsn := testutil.PostgresDSN(t)
	_, pgURL := testutil.PostgresSchema(t, dsn, "melon_dump")
	dir := t.TempDir()
	ctx := context.Background()
	sch := testutil.TodoSchema(t)
	schemaPath := testutil.TodoSchemaPath()
	// 100k records by default (CI); MELONSYNC_DUMP_RECORDS=N for another size.
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	if v := os.Getenv("MELONSYNC_DUMP_RECORDS"); v != "" {
		fmt.Sscan(v, &n)
	}

	srcPath := filepath.Join(dir, "src.db")
	src, err := sqlite.Open(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Prepare(ctx, sch); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	mid := fillStore(t, server.New(src, sch), sch, srcPath, n)
	t.Logf("filled %d records in %s", n, time.Since(start).Round(time.Millisecond))
	secret, _ := src.Secret(ctx)
	want := pulls(t, src, sch, mid)
	src.Close()

	step := func(name string, args ...string) {
		t.Helper()
		var stderr bytes.Buffer
		start := time.Now()
		if err := run(ctx, args, &bytes.Buffer{}, &stderr); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, stderr.String())
		}
		t.Logf("%s: %s (%s)", name, time.Since(start).Round(time.Millisecond), strings.TrimSpace(lastLine(stderr.String())))
	}
	dump1 := filepath.Join(dir, "one.ndjson")
	dump2 := filepath.Join(dir, "two.ndjson")
	dstPath := filepath.Join(dir, "dst.db")
	total := time.Now()
	step("export sqlite", "export", "--db", srcPath, "--schema", schemaPath, "--out", dump1, "--with-secret")
	step("import postgres", "import", "--db", pgURL, "--schema", schemaPath, "--in", dump1)
	step("export postgres", "export", "--db", pgURL, "--schema", schemaPath, "--out", dump2, "--with-secret")
	step("import sqlite", "import", "--db", dstPath, "--schema", schemaPath, "--in", dump2)
	t.Logf("round trip of %d records: %s", n, time.Since(total).Round(time.Millisecond))

	pg, err := postgres.Open(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	dst, err := sqlite.Open(dstPath)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	for name, st := range map[string]server.Store{"postgres": pg, "sqlite again": dst} {
		if err := st.Prepare(ctx, sch); err != nil {
			t.Fatal(err)
		}
		got := pulls(t, st, sch, mid)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: pull %d differs from the original store:\n got %.300s…\nwant %.300s…", name, i, got[i], want[i])
			}
		}
		if s2, _ := st.Secret(ctx); !bytes.Equal(s2, secret) {
			t.Errorf("%s: the secret did not travel", name)
		}
	}
	var move string
	if err := openAppDB(t, dstPath).QueryRow(`SELECT tbl || id || version || from_grp || to_grp || from_usr || to_usr FROM __melon_moves`).Scan(&move); err != nil || move != "projectsmoved7g1g2user3" {
		t.Errorf("the bookkeeping row did not travel: %q %v", move, err)
	}
	// A client that last pulled at the end goes on incrementally on the new store.
	svc := server.New(dst, sch)
	var first map[string]any
	json.Unmarshal([]byte(pullJSON(t, svc, "user0", "devuser0", 0)), &first)
	last := int64(first["timestamp"].(float64))
	b, _ := json.Marshal(map[string]any{"lastPulledAt": last, "changes": map[string]any{"tasks": map[string]any{
		"created": []any{map[string]any{"id": "after-move", "name": "new"}}, "updated": []any{map[string]any{"id": "tu0-5", "name": "edited"}}}}})
	p, _ := server.DecodePush(sch, b)
	if _, err := svc.Push(ctx, server.Caller{User: "user0", Device: "phone"}, p); err != nil {
		t.Fatalf("push after the move: %v", err)
	}
	inc := pullJSON(t, svc, "user0", "devuser0", last)
	if strings.Contains(inc, "experimentalStrategy") || !strings.Contains(inc, `"after-move"`) || !strings.Contains(inc, `"edited"`) || strings.Count(inc, `"id"`) != 2 {
		t.Errorf("incremental pull after the move: %.500s", inc)
	}

	// A store that holds data is refused, and left as it was.
	err = run(ctx, []string{"import", "--db", pgURL, "--schema", schemaPath, "--in", dump1}, &bytes.Buffer{}, &bytes.Buffer{})
	if !errors.Is(err, server.ErrNotEmpty) {
		t.Errorf("import into a store with data: want ErrNotEmpty, got %v", err)
	}
	// A cut-off export is refused, nothing written.
	raw, _ := os.ReadFile(dump1)
	cut := filepath.Join(dir, "cut.ndjson")
	os.WriteFile(cut, raw[:len(raw)/2], 0o644)
	empty := filepath.Join(dir, "empty.db")
	if err := run(ctx, []string{"import", "--db", empty, "--schema", schemaPath, "--in", cut}, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
		t.Errorf("a cut-off export was imported")
	}
	st, _ := sqlite.Open(empty)
	st.Prepare(ctx, sch)
	if got := pullJSON(t, server.New(st, sch), "user0", "x", 0); strings.Count(got, `"id"`) != 0 {
		t.Errorf("a failed import left records behind")
	}
	st.Close()
	// Without --with-secret, no secret.
	var out bytes.Buffer
	if err := run(ctx, []string{"export", "--db", dstPath, "--schema", schemaPath}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out.Bytes(), []byte(`"secret"`)) {
		t.Errorf("the secret was exported without --with-secret")
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		return s[i+1:]
	}
	return s
}
