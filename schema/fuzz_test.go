package schema

import (
	"encoding/json"
	"os"
	"testing"
)

// FuzzParse: any text is refused with an error, or is a schema whose names are valid
// and unique, whose columns have a valid type, which writes itself out and parses back
// to the same tables, and whose migration questions have answers.
func FuzzParse(f *testing.F) {
	for _, path := range []string{"../examples/todo/schema.json", "testdata/appschema.json"} {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"version":1,"tables":[{"name":"a","columns":[{"name":"b","type":"string"}]}]}`))
	f.Add([]byte(`{"version":2,"tables":{"a":{"name":"a","columns":{"b":{"name":"b","type":"number","isOptional":true}}}},"migrations":[{"toVersion":2,"steps":[{"type":"add_columns","table":"a","columns":[{"name":"b","type":"number"}]}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		checkSchema(t, s)
		out, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("a schema written out does not parse back: %v\n%s", err, out)
		}
		if again.Version != s.Version || len(again.Tables) != len(s.Tables) {
			t.Fatalf("round trip changed the schema:\n%s", out)
		}
		for i, tbl := range s.Tables {
			a := again.Tables[i]
			if a.Name != tbl.Name || len(a.Columns) != len(tbl.Columns) {
				t.Fatalf("round trip changed table %q", tbl.Name)
			}
			for j, c := range tbl.Columns {
				d := a.Columns[j]
				if d.Name != c.Name || d.Type != c.Type || d.IsOptional != c.IsOptional || d.IsIndexed != c.IsIndexed {
					t.Fatalf("round trip changed %s.%s: %+v → %+v", tbl.Name, c.Name, c, d)
				}
			}
		}
	})
}

func checkSchema(t *testing.T, s *Schema) {
	t.Helper()
	if s.Version < 1 {
		t.Fatalf("version %d accepted", s.Version)
	}
	seen := map[string]bool{}
	for _, tbl := range s.Tables {
		if ValidName(tbl.Name) != nil || seen[tbl.Name] || s.Table(tbl.Name) != tbl {
			t.Fatalf("table %q accepted", tbl.Name)
		}
		seen[tbl.Name] = true
		if tbl.Since < 1 || tbl.Since > s.Version {
			t.Fatalf("table %q since version %d of %d", tbl.Name, tbl.Since, s.Version)
		}
		cols := map[string]bool{}
		for _, c := range tbl.Columns {
			if ValidName(c.Name) != nil || cols[c.Name] || tbl.Column(c.Name) == nil || tbl.Column(c.Name).Name != c.Name {
				t.Fatalf("column %s.%s accepted", tbl.Name, c.Name)
			}
			cols[c.Name] = true
			if c.Type != String && c.Type != Number && c.Type != Boolean {
				t.Fatalf("column %s.%s of type %q", tbl.Name, c.Name, c.Type)
			}
			if c.Since < tbl.Since || c.Since > s.Version {
				t.Fatalf("column %s.%s since version %d (table since %d, schema %d)", tbl.Name, c.Name, c.Since, tbl.Since, s.Version)
			}
			if d := c.Default(); (d == nil) != c.IsOptional || c.Sanitize(d) != d {
				t.Fatalf("column %s.%s: default %v", tbl.Name, c.Name, d)
			}
		}
	}
	for v := 1; v <= s.Version && v <= 64; v++ {
		for _, tbl := range s.TablesAt(v) {
			tbl.ColumnsAt(v)
		}
		if s.Migrations != nil {
			s.SyncChanges(v) // may refuse; must not panic
		}
	}
}

// FuzzParseMigrations: any text is refused or gives migrations whose versions
// increase and whose steps name valid tables and columns.
func FuzzParseMigrations(f *testing.F) {
	b, err := os.ReadFile("testdata/migrations.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`[{"toVersion":2,"steps":[{"type":"create_table","schema":{"name":"c","columns":[{"name":"x","type":"boolean"}]}},{"type":"sql","sql":"DROP TABLE x"}]}]`))
	f.Add([]byte(`{"sortedMigrations":[{"toVersion":3,"steps":[{"type":"add_columns","table":"t","columns":[{"name":"y","type":"string","isIndexed":true}]}]}],"minVersion":2,"maxVersion":3}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMigrations(data)
		if err != nil {
			return
		}
		_ = m.String()
		for i, mig := range m.Sorted {
			if mig.ToVersion < 2 || (i > 0 && mig.ToVersion != m.Sorted[i-1].ToVersion+1) {
				t.Fatalf("versions %d accepted at %d", mig.ToVersion, i)
			}
			for _, st := range mig.Steps {
				switch st.Type {
				case StepCreateTable:
					if st.Table == nil || validateTable(st.Table) != nil {
						t.Fatalf("create_table %+v accepted", st.Table)
					}
				case StepAddColumns:
					if ValidName(st.TableName) != nil {
						t.Fatalf("add_columns to %q accepted", st.TableName)
					}
					for _, c := range st.Columns {
						if validateColumn(st.TableName, c) != nil {
							t.Fatalf("column %+v accepted", c)
						}
					}
				case StepSQL:
				default:
					t.Fatalf("step %q accepted", st.Type)
				}
			}
		}
		if len(m.Sorted) > 0 && (m.Min != m.Sorted[0].ToVersion-1 || m.Max != m.Sorted[len(m.Sorted)-1].ToVersion) {
			t.Fatalf("range %d..%d for %d migrations", m.Min, m.Max, len(m.Sorted))
		}
		for from := m.Min; from <= m.Max && from < m.Min+64; from++ {
			if _, err := m.Steps(from, m.Max); err != nil {
				t.Fatalf("steps %d→%d: %v", from, m.Max, err)
			}
		}
	})
}
