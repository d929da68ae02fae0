package server

import (
	"fmt"
	"sort"
	"strings"

	"github.com/melonsync/melonsync/schema"
)

// SchemaChanges says what a store's Prepare may do with data that the schema no
// longer describes. Without them, Prepare refuses to start on such a store (an
// EvolveError naming every column at fault and the flag to pass).
type SchemaChanges struct {
	// Drop: tables and columns the schema no longer has are dropped from the store,
	// with their data (serve --allow-drop).
	Drop bool
	// Convert: columns whose type changed have their values converted to the new
	// type, and the converted records reach clients as updates (serve --convert).
	Convert bool
}

// SchemaPreparer is a store whose Prepare can be told what to do with data the
// schema no longer describes.
type SchemaPreparer interface {
	SetSchemaChanges(SchemaChanges)
}

// StoredTable describes a synced table as a store holds it, for PlanSchema.
type StoredTable struct {
	Name string
	// LiveRows is how many live (not deleted) records it holds; counted only for
	// tables the schema no longer has (-1 when not counted).
	LiveRows int64
	Columns  []StoredColumn
}

// StoredColumn is one column of a StoredTable (melonsync's own "__" columns and id
// excluded).
type StoredColumn struct {
	Name string
	// Type is the schema type the store's column holds ("" when its SQL type maps to
	// none); SQLType is the SQL type, for messages.
	Type    schema.Type
	SQLType string
	// HasData: a live record holds a non-default value in it. Stores compute it only
	// for columns the schema dropped or changed (HasData asks for them).
	HasData bool
}

// Conversion is a column to convert to the schema's type.
type Conversion struct {
	Table string
	From  StoredColumn
	To    schema.Column
}

// SchemaPlan is what Prepare does beyond adding tables, columns and indexes.
type SchemaPlan struct {
	DropTables  []string
	DropColumns map[string][]string // table → columns
	Convert     []Conversion
}

// EvolveError is the refusal to start on a store whose data the schema no longer
// describes: each problem names the table and column and says what to do.
type EvolveError struct {
	Problems []string
}

// Error implements error.
func (e *EvolveError) Error() string {
	return "the schema does not match the data in the store:\n  - " + strings.Join(e.Problems, "\n  - ") +
		"\n(melonsync export keeps a copy of the whole store first)"
}

// PlanSchema compares the schema with what the store holds and returns what Prepare
// must do, or an EvolveError. storeVersion is the highest schema version the store
// was prepared for (0: unknown): when it is above sch's, this process is older than
// the store's schema (a rolling upgrade, a rollback) and tables and columns it does
// not know belong to the newer schema — they are left alone, never dropped.
func PlanSchema(sch *schema.Schema, stored []StoredTable, storeVersion int, opts SchemaChanges) (*SchemaPlan, error) {
	plan := &SchemaPlan{DropColumns: map[string][]string{}}
	var problems []string
	older := storeVersion > sch.Version
	sort.Slice(stored, func(i, j int) bool { return stored[i].Name < stored[j].Name })
	for _, st := range stored {
		t := sch.Table(st.Name)
		if t == nil {
			switch {
			case older:
			case opts.Drop:
				plan.DropTables = append(plan.DropTables, st.Name)
			case st.LiveRows > 0:
				problems = append(problems, fmt.Sprintf("table %s is not in the schema but holds %d record(s): start with --allow-drop to drop it with its data, or put it back in the schema", st.Name, st.LiveRows))
			}
			continue
		}
		for _, sc := range st.Columns {
			c := t.Column(sc.Name)
			switch {
			case c == nil && older:
			case c == nil && opts.Drop:
				plan.DropColumns[st.Name] = append(plan.DropColumns[st.Name], sc.Name)
			case c == nil && sc.HasData:
				problems = append(problems, fmt.Sprintf("column %s.%s is not in the schema but records hold values in it: start with --allow-drop to drop it with its data, or put it back in the schema", st.Name, sc.Name))
			case c == nil:
			case sc.Type == c.Type:
			case older:
				problems = append(problems, fmt.Sprintf("column %s.%s is %s in this schema (version %d) but %s in the store, which a newer schema (version %d) prepared: run the newer schema", st.Name, sc.Name, c.Type, sch.Version, describe(sc), storeVersion))
			case opts.Convert || !sc.HasData:
				plan.Convert = append(plan.Convert, Conversion{Table: st.Name, From: sc, To: *c})
			default:
				problems = append(problems, fmt.Sprintf("column %s.%s is %s in the schema but the store holds %s values in it: start with --convert to convert them (values that do not convert become %s), or put the type back", st.Name, sc.Name, c.Type, describe(sc), fallback(c)))
			}
		}
	}
	if len(problems) > 0 {
		return nil, &EvolveError{Problems: problems}
	}
	return plan, nil
}

func describe(sc StoredColumn) string {
	if sc.Type == "" {
		return sc.SQLType
	}
	return string(sc.Type) + " (" + sc.SQLType + ")"
}

func fallback(c *schema.Column) string {
	if c.IsOptional {
		return "null"
	}
	switch c.Type {
	case schema.String:
		return `""`
	case schema.Number:
		return "0"
	default:
		return "false"
	}
}

// NeedsData says whether PlanSchema needs to know if column name of table holds data
// (it was dropped from the schema, or changed type), so that stores count only those.
func NeedsData(sch *schema.Schema, table string, name string, typ schema.Type) bool {
	t := sch.Table(table)
	if t == nil {
		return false
	}
	c := t.Column(name)
	return c == nil || c.Type != typ
}
