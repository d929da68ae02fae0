package server

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/schema"
)

// checkRefusal fails t unless err is an invalid_request *melonsync.Error with a
// message.
func checkRefusal(t *testing.T, err error) {
	t.Helper()
	var me *melonsync.Error
	if !errors.As(err, &me) || me.Code != melonsync.EInvalid || me.Message == "" {
		t.Fatalf("refused with %T %v, want an invalid_request error", err, err)
	}
}

// checkValue fails t unless v is what Sanitize makes for column c.
func checkValue(t *testing.T, table string, c schema.Column, v any) {
	t.Helper()
	switch x := v.(type) {
	case nil:
		if !c.IsOptional {
			t.Fatalf("%s.%s: null in a non-optional column", table, c.Name)
		}
	case string:
		if c.Type != schema.String {
			t.Fatalf("%s.%s: string %q in a %s column", table, c.Name, x, c.Type)
		}
	case float64:
		if c.Type != schema.Number || math.IsNaN(x) || math.IsInf(x, 0) {
			t.Fatalf("%s.%s: number %v in a %s column", table, c.Name, x, c.Type)
		}
	case bool:
		if c.Type != schema.Boolean {
			t.Fatalf("%s.%s: boolean in a %s column", table, c.Name, c.Type)
		}
	default:
		t.Fatalf("%s.%s: value of type %T", table, c.Name, v)
	}
}

// FuzzDecodePush: any body either is refused with invalid_request, or decodes to a
// push that only names schema tables, valid unique-per-list ids, and values of the
// columns' types; and the checked decoder agrees with the result.
func FuzzDecodePush(f *testing.F) {
	s := todo(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := DecodePush(s, body)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if p.LastPulledAt < 0 || p.LastPulledAt >= 1<<53 {
			t.Fatalf("lastPulledAt %d accepted", p.LastPulledAt)
		}
		seen := map[string]bool{}
		for _, tp := range p.Tables {
			if tp.Table == nil || s.Table(tp.Table.Name) != tp.Table {
				t.Fatalf("a table not of the schema: %v", tp.Table)
			}
			if seen[tp.Table.Name] {
				t.Fatalf("table %s twice", tp.Table.Name)
			}
			seen[tp.Table.Name] = true
			for _, list := range [][]PushedRecord{tp.Created, tp.Updated} {
				for _, r := range list {
					if !melonsync.ValidID(r.ID) {
						t.Fatalf("id %q accepted", r.ID)
					}
					if len(r.Values) != len(tp.Table.Columns) || (r.Set != nil && len(r.Set) != len(tp.Table.Columns)) {
						t.Fatalf("%s#%s: %d values, %d set flags for %d columns", tp.Table.Name, r.ID, len(r.Values), len(r.Set), len(tp.Table.Columns))
					}
					for i, c := range tp.Table.Columns {
						if r.Set == nil || r.Set[i] {
							checkValue(t, tp.Table.Name, c, r.Values[i])
						}
					}
				}
			}
			for _, id := range tp.Deleted {
				if !melonsync.ValidID(id) {
					t.Fatalf("deleted id %q accepted", id)
				}
			}
		}
		// Re-encoding what was decoded and decoding it again gives the same push.
		again, err := DecodePush(s, encodePush(p))
		if err != nil {
			t.Fatalf("a decoded push, encoded again, is refused: %v", err)
		}
		if a, b := string(encodePush(p)), string(encodePush(again)); a != b {
			t.Fatalf("decode(encode(p)) differs:\n%s\n%s", a, b)
		}
	})
}

// encodePush writes p back as a push body.
func encodePush(p *PushParams) []byte {
	changes := map[string]any{}
	for _, tp := range p.Tables {
		rec := func(r PushedRecord) map[string]any {
			m := map[string]any{"id": r.ID}
			for i, c := range tp.Table.Columns {
				if r.Set == nil || r.Set[i] {
					m[c.Name] = r.Values[i]
				}
			}
			return m
		}
		created, updated := []any{}, []any{}
		for _, r := range tp.Created {
			created = append(created, rec(r))
		}
		for _, r := range tp.Updated {
			updated = append(updated, rec(r))
		}
		deleted := append([]string{}, tp.Deleted...)
		changes[tp.Table.Name] = map[string]any{"created": created, "updated": updated, "deleted": deleted}
	}
	b, _ := json.Marshal(map[string]any{"lastPulledAt": p.LastPulledAt, "changes": changes})
	return b
}

// FuzzDecodePull: any pull body is refused with invalid_request or gives sane
// parameters.
func FuzzDecodePull(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := DecodePull(body)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if p.LastPulledAt < 0 || p.LastPulledAt >= 1<<53 || p.SchemaVersion < 0 {
			t.Fatalf("accepted %+v", p)
		}
		// Names in a migration need not be valid: the service honours only the
		// schema's tables and columns (FuzzPullHandler in package http checks that).
		if m := p.Migration; m != nil && m.From < 0 {
			t.Fatalf("migration from %d accepted", m.From)
		}
	})
}

// FuzzParseTimestamp: a URL timestamp is refused or is a JavaScript-safe integer
// that prints back as given.
func FuzzParseTimestamp(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		n, isNull, err := ParseTimestamp(s)
		if err != nil {
			return
		}
		if isNull {
			if n != 0 || (s != "" && s != "null" && s != "undefined") {
				t.Fatalf("%q: null with %d", s, n)
			}
			return
		}
		if n < 0 || n >= 1<<53 || strings.TrimLeft(s, "0") != strings.TrimLeft(jsonInt(n), "0") {
			t.Fatalf("%q parsed as %d", s, n)
		}
	})
}

func jsonInt(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
