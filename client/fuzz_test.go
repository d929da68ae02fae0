package client

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/schema"
)

var errRollback = errors.New("rollback")

// fuzzBase fills db with records in every local state: synced, created, updated
// (with _changed) and marked as deleted.
func fuzzBase(t testing.TB, db *DB) {
	err := db.Write(context.Background(), func(tx *Tx) error {
		for _, r := range []struct {
			table, id string
			vals      map[string]any
		}{
			{"projects", "p1", map[string]any{"name": "Home", "is_favorite": true, "position": 1.0}},
			{"projects", "p2", map[string]any{"name": "Work"}},
			{"tasks", "s1", map[string]any{"name": "synced", "project_id": "p1", "position": 2.0}},
			{"tasks", "u1", map[string]any{"name": "to update", "description": "d"}},
			{"tasks", "d1", map[string]any{"name": "to delete"}},
			{"comments", "m1", map[string]any{"body": "hi", "task_id": "s1"}},
		} {
			vals := map[string]any{"id": r.id}
			for k, v := range r.vals {
				vals[k] = v
			}
			if err := tx.InsertSynced(r.table, vals); err != nil {
				return err
			}
		}
		if _, err := tx.Create("tasks", map[string]any{"id": "c1", "name": "created here", "is_done": true}); err != nil {
			return err
		}
		if err := tx.Update("tasks", "u1", map[string]any{"name": "changed here", "position": 5.0}); err != nil {
			return err
		}
		if err := tx.Update("projects", "p2", map[string]any{"is_favorite": true}); err != nil {
			return err
		}
		return tx.MarkAsDeleted("tasks", "d1")
	})
	if err != nil {
		t.Fatal(err)
	}
}

// fuzzDump returns every record, deleted ones included, by table and id.
func fuzzDump(tx *Tx) (map[string]Record, error) {
	out := map[string]Record{}
	for _, t := range tx.db.schema.Tables {
		recs, err := tx.Query(t.Name, Query{IncludeDeleted: true})
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			out[t.Name+"/"+r["id"].(string)] = r
		}
	}
	return out, nil
}

// FuzzApplyRemoteChanges applies any pulled changes to a database holding records in
// every local state. Either the call fails and the database is as before, or every
// record mentioned once ends as WatermelonDB's rules say (SPEC §4), records not
// mentioned are untouched, and every _status/_changed is consistent.
func FuzzApplyRemoteChanges(f *testing.F) {
	s, err := schema.Load("../examples/todo/schema.json")
	if err != nil {
		f.Fatal(err)
	}
	db, err := Open(filepath.Join(f.TempDir(), "fuzz.db"), s)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	fuzzBase(f, db)
	var base map[string]Record
	if err := db.Read(context.Background(), func(tx *Tx) error { base, err = fuzzDump(tx); return err }); err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		`{"tasks":{"created":[{"id":"n1","name":"new","is_done":1,"position":"7"}],"updated":[{"id":"u1","name":"remote","description":"r","position":9}],"deleted":["s1"]}}`,
		`{"tasks":{"created":[{"id":"d1","name":"back"}],"updated":[{"id":"c1","is_done":false}],"deleted":["c1x"]},"projects":{"updated":[{"id":"p2","is_favorite":false,"name":"W"}]}}`,
		`{"tasks":{"updated":[{"id":"d1","name":"skipped"},{"id":"gone","name":"made"}]},"nope":{"created":[{"id":"x"}]}}`,
		`{"comments":{"created":[{"id":"m1","body":null,"is_spam":"yes"}],"deleted":["u1"]},"projects":null}`,
		`{"tasks":{"created":[{"id":"bad","_status":"synced"}]}}`,
		`{"tasks":{"created":[{"name":"no id"}]}}`,
		`{"tasks":{"created":[{"id":"x","name":"\u0000\u00e9"}],"updated":[],"deleted":[]}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var changes melonsync.Changes
		if json.Unmarshal(data, &changes) != nil {
			return
		}
		var applyErr error
		err := db.Write(context.Background(), func(tx *Tx) error {
			if applyErr = tx.ApplyRemoteChanges(changes, ApplyOptions{}); applyErr != nil {
				return applyErr
			}
			after, err := fuzzDump(tx)
			if err != nil {
				return err
			}
			checkApplied(t, s, changes, base, after)
			return errRollback
		})
		if applyErr != nil {
			if !errors.Is(err, applyErr) {
				t.Fatalf("Write returned %v, apply failed with %v", err, applyErr)
			}
			var now map[string]Record
			if err := db.Read(context.Background(), func(tx *Tx) error { now, err = fuzzDump(tx); return err }); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(now, base) {
				t.Fatalf("a failed apply (%v) changed the database", applyErr)
			}
			return
		}
		if !errors.Is(err, errRollback) {
			t.Fatalf("Write: %v", err)
		}
	})
}

func checkApplied(t *testing.T, s *schema.Schema, changes melonsync.Changes, base, after map[string]Record) {
	t.Helper()
	mentioned := map[string]int{}
	for table, tc := range changes {
		if tc == nil || s.Table(table) == nil {
			continue
		}
		for _, r := range append(append([]melonsync.RawRecord{}, tc.Created...), tc.Updated...) {
			id, _ := r["id"].(string)
			mentioned[table+"/"+id]++
		}
		for _, id := range tc.Deleted {
			mentioned[table+"/"+id]++
		}
	}
	for key, r := range after {
		table := strings.SplitN(key, "/", 2)[0]
		checkStatus(t, s.Table(table), r)
		if mentioned[key] == 0 && !reflect.DeepEqual(r, base[key]) {
			t.Fatalf("%s was not in the changes but changed: %v → %v", key, base[key], r)
		}
	}
	for key := range base {
		if mentioned[key] == 0 && after[key] == nil {
			t.Fatalf("%s was not in the changes but is gone", key)
		}
	}
	for table, tc := range changes {
		tbl := s.Table(table)
		if tc == nil || tbl == nil {
			continue
		}
		for _, id := range tc.Deleted {
			if mentioned[table+"/"+id] == 1 && after[table+"/"+id] != nil {
				t.Fatalf("%s/%s deleted remotely but still here: %v", table, id, after[table+"/"+id])
			}
		}
		for i, list := range [][]melonsync.RawRecord{tc.Created, tc.Updated} {
			for _, remote := range list {
				id, _ := remote["id"].(string)
				key := table + "/" + id
				if mentioned[key] != 1 {
					continue
				}
				local, got := base[key], after[key]
				if got == nil {
					t.Fatalf("%s pulled but missing", key)
				}
				switch {
				case local != nil && local["_status"] == StatusDeleted && i == 1:
					// updated, deleted locally: skipped; the deletion will be pushed
					if !reflect.DeepEqual(got, local) {
						t.Fatalf("%s deleted locally, yet changed by a remote update: %v", key, got)
					}
				case local == nil || local["_status"] == StatusDeleted:
					// new, or created remotely over a local deletion: remote values, synced
					if got["_status"] != StatusSynced || got["_changed"] != "" {
						t.Fatalf("%s: %v/%q, want synced", key, got["_status"], got["_changed"])
					}
					for _, c := range tbl.Columns {
						want := c.Default()
						if v, ok := remote[c.Name]; ok {
							want = c.Sanitize(v)
						}
						if !reflect.DeepEqual(got[c.Name], want) {
							t.Fatalf("%s.%s = %#v, want %#v", key, c.Name, got[c.Name], want)
						}
					}
				default:
					// per-column merge, client wins on its changed columns
					if got["_status"] != local["_status"] || got["_changed"] != local["_changed"] {
						t.Fatalf("%s: status %v/%q → %v/%q", key, local["_status"], local["_changed"], got["_status"], got["_changed"])
					}
					changed := strings.Split(local["_changed"].(string), ",")
					for _, c := range tbl.Columns {
						want := local[c.Name]
						if v, ok := remote[c.Name]; ok && !contains(changed, c.Name) {
							want = c.Sanitize(v)
						}
						if !reflect.DeepEqual(got[c.Name], want) {
							t.Fatalf("%s.%s = %#v, want %#v (local %v, remote %v)", key, c.Name, got[c.Name], want, local, remote)
						}
					}
				}
			}
		}
	}
}

// checkStatus fails t unless r's _status is a known one, _changed names only columns
// of its table, and a synced record has nothing changed.
func checkStatus(t *testing.T, tbl *schema.Table, r Record) {
	t.Helper()
	st, _ := r["_status"].(string)
	ch, _ := r["_changed"].(string)
	switch st {
	case StatusSynced:
		if ch != "" {
			t.Fatalf("%s/%v synced with _changed %q", tbl.Name, r["id"], ch)
		}
	case StatusCreated, StatusUpdated, StatusDeleted:
	default:
		t.Fatalf("%s/%v: _status %q", tbl.Name, r["id"], st)
	}
	if ch == "" {
		return
	}
	for _, c := range strings.Split(ch, ",") {
		if tbl.Column(c) == nil {
			t.Fatalf("%s/%v: _changed names %q", tbl.Name, r["id"], c)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
