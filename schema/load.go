package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
)

// Load reads a schema file. It accepts the output of JSON.stringify(appSchema(...)) of
// a WatermelonDB app and the hand-written form {"version": n, "tables": [...]}; a
// top-level "migrations" key, in either migrations form, is read too.
func Load(path string) (*Schema, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	s, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// LoadWithMigrations reads a schema file and, when migrationsPath is not empty, a
// migrations file that replaces any migrations in the schema file.
func LoadWithMigrations(schemaPath, migrationsPath string) (*Schema, error) {
	s, err := Load(schemaPath)
	if err != nil {
		return nil, err
	}
	if migrationsPath == "" {
		return s, nil
	}
	data, err := os.ReadFile(migrationsPath)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	m, err := ParseMigrations(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", migrationsPath, err)
	}
	if err := s.SetMigrations(m); err != nil {
		return nil, fmt.Errorf("%s: %w", migrationsPath, err)
	}
	return s, nil
}

// Parse decodes a schema in either JSON form (see Load).
func Parse(data []byte) (*Schema, error) {
	var top struct {
		Version    json.RawMessage `json:"version"`
		Tables     json.RawMessage `json:"tables"`
		Migrations json.RawMessage `json:"migrations"`
		Access     json.RawMessage `json:"access"`
		Conflicts  json.RawMessage `json:"conflicts"`
	}
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("schema: not a JSON object: %v", err)
	}
	var version int
	if err := json.Unmarshal(top.Version, &version); err != nil || len(top.Version) == 0 {
		return nil, fmt.Errorf("schema: \"version\" must be a positive integer")
	}
	tables, err := parseTables(top.Tables)
	if err != nil {
		return nil, err
	}
	var migs *Migrations
	if len(top.Migrations) > 0 && string(top.Migrations) != "null" {
		if migs, err = ParseMigrations(top.Migrations); err != nil {
			return nil, err
		}
	}
	s, err := New(version, tables, migs)
	if err != nil {
		return nil, err
	}
	if err := s.ParseAccess(top.Access); err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	policies, err := ParsePolicies(top.Conflicts)
	if err != nil {
		return nil, err
	}
	if err := s.SetPolicies(policies); err != nil {
		return nil, err
	}
	return s, nil
}

// parseTables accepts an array of tables or an object of tables keyed by name.
func parseTables(raw json.RawMessage) ([]*Table, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, fmt.Errorf("schema: \"tables\" is missing")
	}
	var items []json.RawMessage
	var names []string
	switch raw[0] {
	case '[':
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, fmt.Errorf("schema: \"tables\": %v", err)
		}
	case '{':
		keys, vals, err := orderedObject(raw)
		if err != nil {
			return nil, fmt.Errorf("schema: \"tables\": %v", err)
		}
		names, items = keys, vals
	default:
		return nil, fmt.Errorf("schema: \"tables\" must be an array or an object")
	}
	tables := make([]*Table, 0, len(items))
	for i, item := range items {
		t, err := parseTable(item)
		if err != nil {
			return nil, fmt.Errorf("schema: %w", err)
		}
		if names != nil && t.Name == "" {
			t.Name = names[i]
		}
		if names != nil && t.Name != names[i] {
			return nil, fmt.Errorf("schema: table keyed %q is named %q", names[i], t.Name)
		}
		tables = append(tables, t)
	}
	return tables, nil
}

// parseTable accepts {"name", "columns": [...]} or WatermelonDB's
// {"name", "columns": {name: column}, "columnArray": [...]}.
func parseTable(raw json.RawMessage) (*Table, error) {
	var t struct {
		Name        *string         `json:"name"`
		Columns     json.RawMessage `json:"columns"`
		ColumnArray json.RawMessage `json:"columnArray"`
	}
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, fmt.Errorf("a table must be an object with a name and columns: %v", err)
	}
	name := ""
	if t.Name != nil {
		name = *t.Name
	}
	cols := t.ColumnArray
	if len(bytes.TrimSpace(cols)) == 0 || string(cols) == "null" {
		cols = t.Columns
	}
	columns, err := parseColumns(cols)
	if err != nil {
		return nil, fmt.Errorf("table %q: %v", name, err)
	}
	return &Table{Name: name, Columns: columns}, nil
}

func parseColumns(raw json.RawMessage) ([]Column, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var items []json.RawMessage
	var names []string
	switch raw[0] {
	case '[':
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, fmt.Errorf("\"columns\": %v", err)
		}
	case '{':
		keys, vals, err := orderedObject(raw)
		if err != nil {
			return nil, fmt.Errorf("\"columns\": %v", err)
		}
		names, items = keys, vals
	default:
		return nil, fmt.Errorf("\"columns\" must be an array or an object")
	}
	out := make([]Column, 0, len(items))
	for i, item := range items {
		var c struct {
			Name       string `json:"name"`
			Type       Type   `json:"type"`
			IsOptional bool   `json:"isOptional"`
			IsIndexed  bool   `json:"isIndexed"`
		}
		if err := json.Unmarshal(item, &c); err != nil {
			return nil, fmt.Errorf("column %d: %v", i, err)
		}
		if c.Name == "" && names != nil {
			c.Name = names[i]
		}
		out = append(out, Column{Name: c.Name, Type: c.Type, IsOptional: c.IsOptional, IsIndexed: c.IsIndexed})
	}
	return out, nil
}

// ParseMigrations decodes migrations in any of these forms: the output of
// JSON.stringify(schemaMigrations(...)) ({"sortedMigrations": [...]}), the argument
// of schemaMigrations ({"migrations": [...]}), or a bare list [{"toVersion", "steps"}].
func ParseMigrations(data []byte) (*Migrations, error) {
	data = bytes.TrimSpace(data)
	var list []json.RawMessage
	if len(data) > 0 && data[0] == '{' {
		var obj struct {
			Sorted     []json.RawMessage `json:"sortedMigrations"`
			Migrations []json.RawMessage `json:"migrations"`
		}
		if err := json.Unmarshal(data, &obj); err != nil {
			return nil, fmt.Errorf("migrations: %v", err)
		}
		list = obj.Sorted
		if list == nil {
			list = obj.Migrations
		}
	} else if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("migrations: must be a list or a schemaMigrations object: %v", err)
	}
	migs := make([]Migration, 0, len(list))
	for _, item := range list {
		var m struct {
			ToVersion *int              `json:"toVersion"`
			Steps     []json.RawMessage `json:"steps"`
		}
		if err := json.Unmarshal(item, &m); err != nil {
			return nil, fmt.Errorf("migrations: %v", err)
		}
		if m.ToVersion == nil {
			return nil, fmt.Errorf("migrations: a migration has no \"toVersion\"")
		}
		mig := Migration{ToVersion: *m.ToVersion}
		for _, rs := range m.Steps {
			st, err := parseStep(rs)
			if err != nil {
				return nil, fmt.Errorf("migrations: version %d: %v", mig.ToVersion, err)
			}
			mig.Steps = append(mig.Steps, st)
		}
		migs = append(migs, mig)
	}
	return NewMigrations(migs)
}

func parseStep(raw json.RawMessage) (Step, error) {
	var s struct {
		Type    string          `json:"type"`
		Schema  json.RawMessage `json:"schema"`
		Name    string          `json:"name"`
		Table   string          `json:"table"`
		Columns json.RawMessage `json:"columns"`
		SQL     string          `json:"sql"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return Step{}, fmt.Errorf("step: %v", err)
	}
	switch s.Type {
	case StepCreateTable:
		src := s.Schema
		if len(src) == 0 || string(src) == "null" {
			src = raw // hand-written: {"type":"create_table","name":..,"columns":[..]}
		}
		t, err := parseTable(src)
		if err != nil {
			return Step{}, fmt.Errorf("create_table: %v", err)
		}
		return Step{Type: s.Type, Table: t}, nil
	case StepAddColumns:
		cols, err := parseColumns(s.Columns)
		if err != nil {
			return Step{}, fmt.Errorf("add_columns on %q: %v", s.Table, err)
		}
		return Step{Type: s.Type, TableName: s.Table, Columns: cols}, nil
	case StepSQL:
		return Step{Type: s.Type, SQL: s.SQL}, nil
	default:
		return Step{}, fmt.Errorf("unknown step type %q (valid: create_table, add_columns, sql)", s.Type)
	}
}

// orderedObject decodes a JSON object into its keys (in order) and raw values.
func orderedObject(raw []byte) ([]string, []json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, fmt.Errorf("expected an object")
	}
	var keys []string
	var vals []json.RawMessage
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, err
		}
		keys = append(keys, key)
		vals = append(vals, v)
	}
	return keys, vals, nil
}

// MarshalJSON writes the hand-written form of the schema (tables, version and the
// conflict policies; the migrations are not written).
func (s *Schema) MarshalJSON() ([]byte, error) {
	type col struct {
		Name       string `json:"name"`
		Type       Type   `json:"type"`
		IsOptional bool   `json:"isOptional"`
		IsIndexed  bool   `json:"isIndexed"`
	}
	type tbl struct {
		Name    string `json:"name"`
		Columns []col  `json:"columns"`
	}
	out := struct {
		Version   int            `json:"version"`
		Tables    []tbl          `json:"tables"`
		Conflicts map[string]any `json:"conflicts,omitempty"`
	}{Version: s.Version, Tables: []tbl{}, Conflicts: s.marshalPolicies()}
	for _, t := range s.Tables {
		tt := tbl{Name: t.Name, Columns: []col{}}
		for _, c := range t.Columns {
			tt.Columns = append(tt.Columns, col{c.Name, c.Type, c.IsOptional, c.IsIndexed})
		}
		out.Tables = append(out.Tables, tt)
	}
	return json.Marshal(out)
}
