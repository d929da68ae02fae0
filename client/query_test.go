package client

import (
	"context"
	"errors"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func ldbQueryFixture(t *testing.T) *DB {
	db := ldbOpen(t)
	ldbWrite(t, db, func(tx *Tx) error {
		rows := []map[string]any{
			{"id": "t1", "name": "Buy milk", "position": 1, "is_completed": true, "description": "2 liters", "project_id": "home"},
			{"id": "t2", "name": "Write report", "position": 2, "is_completed": false, "project_id": "work"},
			{"id": "t3", "name": "Call Bob", "position": 3, "is_completed": false, "description": "about the report", "project_id": "work"},
			{"id": "t4", "name": "buy bread", "position": 4, "is_completed": true, "project_id": "home"},
			{"id": "t5", "name": "Gone", "position": 5, "project_id": "home"},
		}
		for _, r := range rows {
			if _, err := tx.Create("mock_tasks", r); err != nil {
				return err
			}
		}
		return tx.MarkAsDeleted("mock_tasks", "t5")
	})
	return db
}

func TestQueryConditions(t *testing.T) {
	db := ldbQueryFixture(t)
	cases := []struct {
		name string
		q    Query
		want []string
	}{
		{"all (deleted hidden)", Query{}, []string{"t1", "t2", "t3", "t4"}},
		{"with deleted", Query{IncludeDeleted: true}, []string{"t1", "t2", "t3", "t4", "t5"}},
		{"eq string", Where(Eq("project_id", "work")), []string{"t2", "t3"}},
		{"eq bool", Where(Eq("is_completed", true)), []string{"t1", "t4"}},
		{"eq number", Where(Eq("position", 2)), []string{"t2"}},
		{"noteq", Where(NotEq("project_id", "work")), []string{"t1", "t4"}},
		{"is null", Where(IsNull("description")), []string{"t2", "t4"}},
		{"is not null", Where(IsNotNull("description")), []string{"t1", "t3"}},
		{"noteq matches null", Where(NotEq("description", "2 liters")), []string{"t2", "t3", "t4"}},
		{"gt", Where(Gt("position", 2)), []string{"t3", "t4"}},
		{"gte", Where(Gte("position", 2.0)), []string{"t2", "t3", "t4"}},
		{"lt", Where(Lt("position", 2)), []string{"t1"}},
		{"lte", Where(Lte("position", 2)), []string{"t1", "t2"}},
		{"between", Where(Between("position", 2, 3)), []string{"t2", "t3"}},
		{"one of", Where(OneOf("id", "t1", "t3", "t5", "zz")), []string{"t1", "t3"}},
		{"one of nothing", Where(OneOf("id")), nil},
		{"not in", Where(NotIn("project_id", "home")), []string{"t2", "t3"}},
		{"not in skips null", Where(NotIn("description", "x")), []string{"t1", "t3"}},
		{"like (case-insensitive)", Where(Like("name", "buy%")), []string{"t1", "t4"}},
		{"not like", Where(NotLike("name", "%r%")), []string{"t1", "t3"}},
		{"includes (case-sensitive)", Where(Includes("name", "Bo")), []string{"t3"}},
		{"and", Where(Eq("project_id", "home"), Eq("is_completed", true), Gt("position", 1)), []string{"t4"}},
		{"or", Where(Or(Eq("id", "t1"), Like("description", "%report%"))), []string{"t1", "t3"}},
		{"nested", Where(Or(And(Eq("project_id", "work"), Gt("position", 2)), Eq("id", "t1"))), []string{"t1", "t3"}},
		{"empty and", Where(And()), []string{"t1", "t2", "t3", "t4"}},
		{"empty or", Where(Or()), nil},
		{"status", Query{Where: []Condition{Eq("_status", "deleted")}, IncludeDeleted: true}, []string{"t5"}},
		{"sort desc", Query{SortBy: []Sort{Desc("position")}}, []string{"t4", "t3", "t2", "t1"}},
		{"sort two keys", Query{}.OrderBy(Asc("project_id"), Desc("position")), []string{"t4", "t1", "t3", "t2"}},
		{"limit", Query{}.OrderBy(Asc("position")).Take(2), []string{"t1", "t2"}},
		{"limit offset", Query{}.OrderBy(Asc("position")).Take(2).Skip(1), []string{"t2", "t3"}},
		{"offset only", Query{}.OrderBy(Asc("position")).Skip(3), []string{"t4"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			var count int
			err := db.Read(context.Background(), func(tx *Tx) error {
				recs, err := tx.Query("mock_tasks", c.q)
				if err != nil {
					return err
				}
				for _, r := range recs {
					got = append(got, r["id"].(string))
				}
				count, err = tx.Count("mock_tasks", c.q)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(c.q.SortBy) == 0 {
				sort.Strings(got)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if count != len(c.want) {
				t.Errorf("Count = %d, want %d", count, len(c.want))
			}
		})
	}
}

func TestQueryReturnsSanitizedRecords(t *testing.T) {
	db := ldbQueryFixture(t)
	var recs []Record
	db.Read(context.Background(), func(tx *Tx) (err error) {
		recs, err = tx.Query("mock_tasks", Where(Eq("id", "t1")))
		return err
	})
	want := []Record{{"id": "t1", "_status": "created", "_changed": "", "name": "Buy milk", "position": 1.0, "is_completed": true,
		"description": "2 liters", "project_id": "home", "project_section_id": nil}}
	if diff := cmp.Diff(want, recs); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestQueryErrors(t *testing.T) {
	db := ldbQueryFixture(t)
	bad := map[string]Query{
		"unknown column":    Where(Eq("nope", 1)),
		"unknown sort":      Query{SortBy: []Sort{Asc("nope")}},
		"nil comparison":    Where(Gt("position", nil)),
		"unsupported value": Where(Eq("name", []string{"x"})),
		"zero condition":    Where(Condition{}),
		"negative limit":    Query{Limit: -1},
		"nested unknown":    Where(Or(Eq("id", "t1"), Eq("nope", 2))),
	}
	for name, q := range bad {
		err := db.Read(context.Background(), func(tx *Tx) error { _, err := tx.Query("mock_tasks", q); return err })
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	err := db.Read(context.Background(), func(tx *Tx) error { _, err := tx.Query("nope", Query{}); return err })
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown table: %v", err)
	}
}

func TestQueryValuesAreBoundNotInlined(t *testing.T) {
	db := ldbQueryFixture(t)
	var n int
	err := db.Read(context.Background(), func(tx *Tx) (err error) {
		n, err = tx.Count("mock_tasks", Where(Eq("name", `x" or 1=1 --`), Like("name", `%' or '1'='1`)))
		return err
	})
	if err != nil || n != 0 {
		t.Errorf("%d %v", n, err)
	}
}

func TestSanitizeLikeString(t *testing.T) {
	if got := SanitizeLikeString("a%b_c d!é9"); got != "a_b_c_d__9" {
		t.Errorf("got %q", got)
	}
}

func TestLocalStorage(t *testing.T) {
	ctx := context.Background()
	db := ldbOpen(t)
	if _, ok, err := db.GetLocal(ctx, "k"); ok || err != nil {
		t.Fatalf("missing key: %v %v", ok, err)
	}
	if err := db.SetLocal(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	ldbWrite(t, db, func(tx *Tx) error {
		if err := tx.SetLocal("k", "v2"); err != nil {
			return err
		}
		if v, ok, err := tx.GetLocal("k"); v != "v2" || !ok || err != nil {
			t.Errorf("in the same tx: %q %v %v", v, ok, err)
		}
		return errors.Join(tx.SetLocal("__watermelon_last_pulled_at", "1700000000000"), tx.SetLocal("empty", ""), tx.RemoveLocal("never-set"))
	})
	for k, want := range map[string]string{"k": "v2", "__watermelon_last_pulled_at": "1700000000000", "empty": ""} {
		if v, ok, _ := db.GetLocal(ctx, k); !ok || v != want {
			t.Errorf("%s = %q %v, want %q", k, v, ok, want)
		}
	}
	ldbWrite(t, db, func(tx *Tx) error { return tx.RemoveLocal("k") })
	if _, ok, _ := db.GetLocal(ctx, "k"); ok {
		t.Error("removed key is still there")
	}
	// local storage changes are not record changes
	if ok, _ := db.HasUnsyncedChanges(ctx); ok {
		t.Error("local storage counts as unsynced")
	}
}
