// Package schema reads WatermelonDB schemas and migrations from JSON, validates them and
// answers the questions sync asks of them: a column's default value, which tables and
// columns a given schema version has, and what changed between two versions.
package schema

import (
	"fmt"
	"regexp"
	"strings"
)

// Type is a column type: "string", "number" or "boolean".
type Type string

// Column types.
const (
	String  Type = "string"
	Number  Type = "number"
	Boolean Type = "boolean"
)

// Column is one column of a table.
type Column struct {
	Name       string `json:"name"`
	Type       Type   `json:"type"`
	IsOptional bool   `json:"isOptional,omitempty"`
	IsIndexed  bool   `json:"isIndexed,omitempty"`
	// Since is the schema version that added the column (1 when it was always there).
	Since int `json:"-"`
}

// Default returns the column's "null value" as WatermelonDB's nullValue does:
// nil for optional columns, else "", 0.0 or false.
func (c *Column) Default() any {
	if c.IsOptional {
		return nil
	}
	switch c.Type {
	case String:
		return ""
	case Number:
		return float64(0)
	default:
		return false
	}
}

// Sanitize coerces v to the column's type exactly as WatermelonDB's sanitizedRaw does:
// a value of the wrong type becomes the column's default; booleans also accept 1 and 0;
// NaN and infinities are not numbers. Numbers arrive as float64 (or any Go integer).
// U+0000 in a string becomes U+FFFD (PostgreSQL cannot store it; both stores agree).
func (c *Column) Sanitize(v any) any {
	switch c.Type {
	case String:
		if s, ok := v.(string); ok {
			// U+0000 becomes U+FFFD on every store: PostgreSQL's text cannot hold
			// it, and SQLite must store what PostgreSQL would.
			if strings.IndexByte(s, 0) >= 0 {
				s = strings.ReplaceAll(s, "\x00", "\uFFFD")
			}
			return s
		}
	case Boolean:
		switch b := v.(type) {
		case bool:
			return b
		default:
			if f, ok := toFloat(v); ok && (f == 0 || f == 1) {
				return f == 1
			}
		}
	case Number:
		if f, ok := toFloat(v); ok {
			if f == 0 {
				return float64(0) // -0 → 0, as `value || 0`
			}
			return f
		}
	}
	return c.Default()
}

func toFloat(v any) (float64, bool) {
	var f float64
	switch n := v.(type) {
	case float64:
		f = n
	case float32:
		f = float64(n)
	case int:
		f = float64(n)
	case int64:
		f = float64(n)
	case int32:
		f = float64(n)
	case interface{ Float64() (float64, error) }: // json.Number
		x, err := n.Float64()
		if err != nil {
			return 0, false
		}
		f = x
	default:
		return 0, false
	}
	if f != f || f > 1.7976931348623157e308 || f < -1.7976931348623157e308 {
		return 0, false
	}
	return f, true
}

// Table is one table: a name and its columns in declaration order.
type Table struct {
	Name    string   `json:"name"`
	Columns []Column `json:"columns"`
	// Since is the schema version that created the table (1 when it was always there).
	Since int `json:"-"`
	// Rule says who reads and writes the table's rows (SPEC §6; the owner rule unless
	// the schema's access object says otherwise).
	Rule Rule `json:"-"`

	index map[string]int
}

// Column returns the named column, or nil.
func (t *Table) Column(name string) *Column {
	if i, ok := t.index[name]; ok {
		return &t.Columns[i]
	}
	return nil
}

// ColumnsAt returns the columns the table has at schema version v.
func (t *Table) ColumnsAt(v int) []Column {
	out := make([]Column, 0, len(t.Columns))
	for _, c := range t.Columns {
		if c.Since <= v {
			out = append(out, c)
		}
	}
	return out
}

func (t *Table) reindex() {
	t.index = make(map[string]int, len(t.Columns))
	for i, c := range t.Columns {
		t.index[c.Name] = i
	}
}

// Schema is a WatermelonDB app schema: a version and its tables, plus the migrations
// that lead to it (possibly none).
type Schema struct {
	Version    int
	Tables     []*Table
	Migrations *Migrations
	// Access holds the access object's groups (nil when the schema has none); each
	// table's own rule is in Table.Rule.
	Access *Access

	byName map[string]*Table
	// conflicts holds the tables' conflict policies (conflicts.go).
	conflicts map[string]Policy
}

// Table returns the named table, or nil.
func (s *Schema) Table(name string) *Table { return s.byName[name] }

// TablesAt returns the tables a client at schema version v has.
func (s *Schema) TablesAt(v int) []*Table {
	var out []*Table
	for _, t := range s.Tables {
		if t.Since <= v {
			out = append(out, t)
		}
	}
	return out
}

var nameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// ValidName reports whether name may be used for a table or a column:
// it matches ^[a-z_][a-z0-9_]*$ and is not reserved (id, _status, _changed,
// local_storage, or anything starting with "__").
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("name %q must match ^[a-z_][a-z0-9_]*$", name)
	}
	switch name {
	case "id", "_status", "_changed", "local_storage":
		return fmt.Errorf("name %q is reserved", name)
	}
	if strings.HasPrefix(name, "__") {
		return fmt.Errorf("name %q is reserved (names starting with __ are)", name)
	}
	if len(name) > 63 {
		return fmt.Errorf("name %q is longer than 63 characters", name)
	}
	return nil
}

func validateTable(t *Table) error {
	if err := ValidName(t.Name); err != nil {
		return fmt.Errorf("table %q: %v", t.Name, err)
	}
	seen := map[string]bool{}
	for _, c := range t.Columns {
		if err := validateColumn(t.Name, c); err != nil {
			return err
		}
		if seen[c.Name] {
			return fmt.Errorf("table %q: column %q is declared twice", t.Name, c.Name)
		}
		seen[c.Name] = true
	}
	return nil
}

func validateColumn(table string, c Column) error {
	if err := ValidName(c.Name); err != nil {
		return fmt.Errorf("table %q, column %q: %v", table, c.Name, err)
	}
	switch c.Type {
	case String, Number, Boolean:
	default:
		return fmt.Errorf("table %q, column %q: invalid type %q (valid: string, number, boolean)", table, c.Name, c.Type)
	}
	return nil
}

// New builds and validates a schema from a version, tables and optional migrations.
// It fills in each table's and column's Since version from the migrations.
func New(version int, tables []*Table, migrations *Migrations) (*Schema, error) {
	if version < 1 {
		return nil, fmt.Errorf("schema: version must be a positive integer, got %d", version)
	}
	s := &Schema{Version: version, Tables: tables, byName: map[string]*Table{}}
	for _, t := range tables {
		if err := validateTable(t); err != nil {
			return nil, fmt.Errorf("schema: %w", err)
		}
		if s.byName[t.Name] != nil {
			return nil, fmt.Errorf("schema: table %q is declared twice", t.Name)
		}
		t.reindex()
		t.Since = 1
		for i := range t.Columns {
			t.Columns[i].Since = 1
		}
		s.byName[t.Name] = t
	}
	if err := s.SetMigrations(migrations); err != nil {
		return nil, err
	}
	return s, nil
}

// SetMigrations attaches migrations to s after checking that they agree with it: they
// may not go past the schema's version, and every table and column they create must
// be in the schema with the same type.
func (s *Schema) SetMigrations(m *Migrations) error {
	for _, t := range s.Tables {
		t.Since = 1
		for i := range t.Columns {
			t.Columns[i].Since = 1
		}
	}
	s.Migrations = m
	if m == nil || len(m.Sorted) == 0 {
		return nil
	}
	if m.Max > s.Version {
		return fmt.Errorf("migrations: they go up to version %d but the schema is version %d", m.Max, s.Version)
	}
	for _, mig := range m.Sorted {
		for _, st := range mig.Steps {
			switch st.Type {
			case StepCreateTable:
				t := s.Table(st.Table.Name)
				if t == nil {
					return fmt.Errorf("migrations: version %d creates table %q, which the schema does not have", mig.ToVersion, st.Table.Name)
				}
				if t.Since == 1 {
					t.Since = mig.ToVersion
				}
				for _, c := range st.Table.Columns {
					sc := t.Column(c.Name)
					if sc == nil {
						return fmt.Errorf("migrations: version %d creates column %q.%q, which the schema does not have", mig.ToVersion, t.Name, c.Name)
					}
					if sc.Type != c.Type {
						return fmt.Errorf("migrations: version %d creates column %q.%q as %s but the schema says %s", mig.ToVersion, t.Name, c.Name, c.Type, sc.Type)
					}
					if sc.Since == 1 {
						sc.Since = mig.ToVersion
					}
				}
			case StepAddColumns:
				t := s.Table(st.TableName)
				if t == nil {
					return fmt.Errorf("migrations: version %d adds columns to table %q, which the schema does not have", mig.ToVersion, st.TableName)
				}
				for _, c := range st.Columns {
					sc := t.Column(c.Name)
					if sc == nil {
						return fmt.Errorf("migrations: version %d adds column %q.%q, which the schema does not have", mig.ToVersion, t.Name, c.Name)
					}
					if sc.Type != c.Type {
						return fmt.Errorf("migrations: version %d adds column %q.%q as %s but the schema says %s", mig.ToVersion, t.Name, c.Name, c.Type, sc.Type)
					}
					if sc.Since == 1 || sc.Since < t.Since {
						sc.Since = mig.ToVersion
					}
				}
			}
		}
	}
	// A column of a table created by a migration cannot predate the table.
	for _, t := range s.Tables {
		for i := range t.Columns {
			if t.Columns[i].Since < t.Since {
				t.Columns[i].Since = t.Since
			}
		}
	}
	return nil
}
