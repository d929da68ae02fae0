package schema

import (
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/melonsync/melonsync"
)

func TestLoadBothFormsAgree(t *testing.T) {
	hand, err := Load("../examples/todo/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	wm, err := LoadWithMigrations("testdata/appschema.json", "testdata/migrations.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Schema{hand, wm} {
		if s.Version != 3 || len(s.Tables) != 3 {
			t.Fatalf("version %d tables %d", s.Version, len(s.Tables))
		}
		if got := s.Table("comments").Since; got != 2 {
			t.Errorf("comments since %d, want 2", got)
		}
		if got := s.Table("tasks").Column("description").Since; got != 3 {
			t.Errorf("description since %d, want 3", got)
		}
		if got := s.Table("tasks").Column("name").Since; got != 1 {
			t.Errorf("name since %d, want 1", got)
		}
		if got := len(s.TablesAt(1)); got != 2 {
			t.Errorf("tables at v1: %d", got)
		}
		if got := len(s.Table("tasks").ColumnsAt(2)); got != 4 {
			t.Errorf("tasks columns at v2: %d", got)
		}
	}
	if diff := cmp.Diff(hand.Tables, wm.Tables, cmp.AllowUnexported(Table{})); diff != "" {
		t.Errorf("forms disagree: %s", diff)
	}
}

func TestSyncChanges(t *testing.T) {
	s, err := Load("../examples/todo/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		from int
		want *melonsync.Migration
	}{
		{3, nil},
		{2, &melonsync.Migration{From: 2, Tables: []string{}, Columns: []melonsync.MigrationColumns{{Table: "tasks", Columns: []string{"description"}}}}},
		{1, &melonsync.Migration{From: 1, Tables: []string{"comments"}, Columns: []melonsync.MigrationColumns{{Table: "tasks", Columns: []string{"description"}}}}},
	}
	for _, c := range cases {
		got, err := s.SyncChanges(c.from)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("from %d: %s", c.from, diff)
		}
	}
	if _, err := s.SyncChanges(0); err == nil {
		t.Error("from 0 should not be covered")
	}
}

func TestInvalidSchemas(t *testing.T) {
	cases := map[string]struct{ json, wantIn string }{
		"bad table name":   {`{"version":1,"tables":[{"name":"Tasks","columns":[]}]}`, `"Tasks"`},
		"reserved column":  {`{"version":1,"tables":[{"name":"t","columns":[{"name":"_status","type":"string"}]}]}`, `"_status"`},
		"id column":        {`{"version":1,"tables":[{"name":"t","columns":[{"name":"id","type":"string"}]}]}`, `"id"`},
		"dunder":           {`{"version":1,"tables":[{"name":"__x","columns":[]}]}`, `"__x"`},
		"bad type":         {`{"version":1,"tables":[{"name":"t","columns":[{"name":"c","type":"date"}]}]}`, `column "c"`},
		"dup column":       {`{"version":1,"tables":[{"name":"t","columns":[{"name":"c","type":"string"},{"name":"c","type":"number"}]}]}`, `twice`},
		"dup table":        {`{"version":1,"tables":[{"name":"t","columns":[]},{"name":"t","columns":[]}]}`, `twice`},
		"no version":       {`{"tables":[]}`, `version`},
		"zero version":     {`{"version":0,"tables":[]}`, `version`},
		"sql injection":    {`{"version":1,"tables":[{"name":"t\"; drop table x; --","columns":[]}]}`, `must match`},
		"migration gap":    {`{"version":4,"tables":[],"migrations":[{"toVersion":2,"steps":[]},{"toVersion":4,"steps":[]}]}`, `gaps`},
		"migration past":   {`{"version":2,"tables":[],"migrations":[{"toVersion":3,"steps":[]},{"toVersion":2,"steps":[]}]}`, `version 3`},
		"unknown step":     {`{"version":2,"tables":[],"migrations":[{"toVersion":2,"steps":[{"type":"drop_table"}]}]}`, `drop_table`},
		"migration table?": {`{"version":2,"tables":[],"migrations":[{"toVersion":2,"steps":[{"type":"add_columns","table":"x","columns":[{"name":"a","type":"string"}]}]}]}`, `"x"`},
		"not json":         {`{`, `JSON`},
	}
	for name, c := range cases {
		_, err := Parse([]byte(c.json))
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if !strings.Contains(err.Error(), c.wantIn) {
			t.Errorf("%s: error %q does not mention %s", name, err, c.wantIn)
		}
	}
}

func TestSanitize(t *testing.T) {
	str := &Column{Name: "s", Type: String}
	ostr := &Column{Name: "s", Type: String, IsOptional: true}
	num := &Column{Name: "n", Type: Number}
	onum := &Column{Name: "n", Type: Number, IsOptional: true}
	boo := &Column{Name: "b", Type: Boolean}
	oboo := &Column{Name: "b", Type: Boolean, IsOptional: true}
	cases := []struct {
		c    *Column
		in   any
		want any
	}{
		{str, "x", "x"}, {str, 5.0, ""}, {str, nil, ""}, {ostr, 5.0, nil}, {ostr, true, nil},
		{num, 5.5, 5.5}, {num, "5", 0.0}, {num, nil, 0.0}, {onum, "x", nil}, {num, math.Inf(1), 0.0}, {onum, math.NaN(), nil},
		{num, math.Copysign(0, -1), 0.0},
		{boo, true, true}, {boo, 1.0, true}, {boo, 0.0, false}, {boo, 2.0, false}, {oboo, "true", nil}, {oboo, 1.0, true},
		{str, []any{"a"}, ""}, {onum, map[string]any{}, nil},
	}
	for i, c := range cases {
		got := c.c.Sanitize(c.in)
		if got != c.want {
			t.Errorf("%d: Sanitize(%v) on %s optional=%v = %#v, want %#v", i, c.in, c.c.Type, c.c.IsOptional, got, c.want)
		}
	}
}
