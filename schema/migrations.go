package schema

import (
	"fmt"
	"sort"
	"strings"

	"github.com/melonsync/melonsync"
)

// Migration step types, as WatermelonDB names them.
const (
	StepCreateTable = "create_table"
	StepAddColumns  = "add_columns"
	StepSQL         = "sql"
)

// Step is one migration step.
type Step struct {
	Type string
	// Table is the new table of a create_table step.
	Table *Table
	// TableName and Columns describe an add_columns step.
	TableName string
	Columns   []Column
	// SQL is the statement(s) of a sql step (run by clients only; the server ignores it).
	SQL string
}

// Migration takes a database from ToVersion-1 to ToVersion.
type Migration struct {
	ToVersion int
	Steps     []Step
}

// Migrations is WatermelonDB's SchemaMigrations: migrations sorted by version,
// without gaps, covering MinVersion..MaxVersion.
type Migrations struct {
	Min, Max int
	Sorted   []Migration
}

// NewMigrations sorts and validates a list of migrations: versions start at 2 or
// more, have no gaps or duplicates, and every step is well formed.
func NewMigrations(list []Migration) (*Migrations, error) {
	sorted := append([]Migration(nil), list...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].ToVersion < sorted[j].ToVersion })
	m := &Migrations{Min: 1, Max: 1, Sorted: sorted}
	for i, mig := range sorted {
		if mig.ToVersion < 2 {
			return nil, fmt.Errorf("migrations: invalid migration to version %d; the minimum is 2", mig.ToVersion)
		}
		if i > 0 && mig.ToVersion != sorted[i-1].ToVersion+1 {
			return nil, fmt.Errorf("migrations: versions must have no gaps or duplicates, but %d follows %d", mig.ToVersion, sorted[i-1].ToVersion)
		}
		for _, st := range mig.Steps {
			switch st.Type {
			case StepCreateTable:
				if st.Table == nil {
					return nil, fmt.Errorf("migrations: version %d: create_table without a table", mig.ToVersion)
				}
				if err := validateTable(st.Table); err != nil {
					return nil, fmt.Errorf("migrations: version %d: %w", mig.ToVersion, err)
				}
				st.Table.reindex()
			case StepAddColumns:
				if err := ValidName(st.TableName); err != nil {
					return nil, fmt.Errorf("migrations: version %d: add_columns: table %q: %v", mig.ToVersion, st.TableName, err)
				}
				for _, c := range st.Columns {
					if err := validateColumn(st.TableName, c); err != nil {
						return nil, fmt.Errorf("migrations: version %d: add_columns: %w", mig.ToVersion, err)
					}
				}
			case StepSQL:
			default:
				return nil, fmt.Errorf("migrations: version %d: unknown step type %q (valid: create_table, add_columns, sql)", mig.ToVersion, st.Type)
			}
		}
	}
	if len(sorted) > 0 {
		m.Min = sorted[0].ToVersion - 1
		m.Max = sorted[len(sorted)-1].ToVersion
	}
	return m, nil
}

// Steps returns the steps that take a database from version from to version to, or
// an error when the migrations do not cover that range.
func (m *Migrations) Steps(from, to int) ([]Step, error) {
	if from == to {
		return nil, nil
	}
	if m == nil || from > to || from < m.Min || to > m.Max {
		min, max := 1, 1
		if m != nil {
			min, max = m.Min, m.Max
		}
		return nil, fmt.Errorf("migrations cover versions %d to %d, not %d to %d", min, max, from, to)
	}
	var steps []Step
	for _, mig := range m.Sorted {
		if mig.ToVersion > from && mig.ToVersion <= to {
			steps = append(steps, mig.Steps...)
		}
	}
	return steps, nil
}

// SyncChanges answers what WatermelonDB's getSyncChanges answers: the tables created and
// the columns added (to tables that existed before) between version from and the
// schema's version. It returns nil when from equals the schema version.
func (s *Schema) SyncChanges(from int) (*melonsync.Migration, error) {
	if from == s.Version {
		return nil, nil
	}
	steps, err := s.Migrations.Steps(from, s.Version)
	if err != nil {
		return nil, err
	}
	out := &melonsync.Migration{From: from, Tables: []string{}, Columns: []melonsync.MigrationColumns{}}
	created := map[string]bool{}
	for _, st := range steps {
		if st.Type == StepCreateTable && !created[st.Table.Name] {
			created[st.Table.Name] = true
			out.Tables = append(out.Tables, st.Table.Name)
		}
	}
	idx := map[string]int{}
	for _, st := range steps {
		if st.Type != StepAddColumns || created[st.TableName] {
			continue
		}
		i, ok := idx[st.TableName]
		if !ok {
			i = len(out.Columns)
			idx[st.TableName] = i
			out.Columns = append(out.Columns, melonsync.MigrationColumns{Table: st.TableName})
		}
		for _, c := range st.Columns {
			if !contains(out.Columns[i].Columns, c.Name) {
				out.Columns[i].Columns = append(out.Columns[i].Columns, c.Name)
			}
		}
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// String describes the migrations briefly, for logs.
func (m *Migrations) String() string {
	if m == nil || len(m.Sorted) == 0 {
		return "no migrations"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "migrations %d→%d", m.Min, m.Max)
	return b.String()
}
