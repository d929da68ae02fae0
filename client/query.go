package client

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/melonsync/melonsync/internal/sqlitedb"
)

// Query selects records of one table, with WatermelonDB's common query conditions
// (Q.where with eq/notEq/gt/gte/lt/lte/oneOf/notIn/between/like/notLike/includes,
// Q.and, Q.or, Q.sortBy, Q.take, Q.skip). The zero Query selects every record that is
// not marked as deleted. Conditions compare the stored values the way WatermelonDB's
// SQLite adapter does (booleans are 1 and 0; Eq(column, nil) matches NULL).
type Query struct {
	// Where lists conditions that must all hold.
	Where []Condition
	// SortBy orders the result, first key first. Without it the order is unspecified.
	SortBy []Sort
	// Limit is the maximum number of records (0: no limit); Offset skips records
	// first.
	Limit, Offset int
	// IncludeDeleted also returns records marked as deleted.
	IncludeDeleted bool
}

// Where returns a Query with the given conditions (all must hold).
func Where(conds ...Condition) Query { return Query{Where: conds} }

// OrderBy returns a copy of q sorted by the given keys.
func (q Query) OrderBy(s ...Sort) Query {
	q.SortBy = append(append([]Sort(nil), q.SortBy...), s...)
	return q
}

// Take returns a copy of q limited to n records.
func (q Query) Take(n int) Query { q.Limit = n; return q }

// Skip returns a copy of q that skips the first n records.
func (q Query) Skip(n int) Query { q.Offset = n; return q }

// Condition is one condition of a Query; build it with Eq, NotEq, Gt, Gte, Lt, Lte,
// OneOf, NotIn, Between, Like, NotLike, Includes, IsNull, IsNotNull, And and Or.
type Condition struct {
	op     string
	column string
	values []any
	sub    []Condition
}

// Eq matches records whose column equals value (nil: is NULL).
func Eq(column string, value any) Condition { return newComparison("is", column, value) }

// NotEq matches records whose column differs from value (nil: is not NULL). As in
// WatermelonDB's SQLite adapter, NULL differs from every non-NULL value.
func NotEq(column string, value any) Condition { return newComparison("is not", column, value) }

// Gt matches records whose column is greater than value.
func Gt(column string, value any) Condition { return newComparison(">", column, value) }

// Gte matches records whose column is greater than or equal to value.
func Gte(column string, value any) Condition { return newComparison(">=", column, value) }

// Lt matches records whose column is less than value.
func Lt(column string, value any) Condition { return newComparison("<", column, value) }

// Lte matches records whose column is less than or equal to value.
func Lte(column string, value any) Condition { return newComparison("<=", column, value) }

// Like matches records whose column matches the SQL LIKE pattern (% and _ wildcards,
// ASCII case-insensitive).
func Like(column, pattern string) Condition { return newComparison("like", column, pattern) }

// NotLike matches records whose column does not match the LIKE pattern.
func NotLike(column, pattern string) Condition { return newComparison("not like", column, pattern) }

// Includes matches records whose (string) column contains substr (case-sensitive).
func Includes(column, substr string) Condition { return newComparison("includes", column, substr) }

// IsNull matches records whose column is NULL.
func IsNull(column string) Condition { return Eq(column, nil) }

// IsNotNull matches records whose column is not NULL.
func IsNotNull(column string) Condition { return NotEq(column, nil) }

// OneOf matches records whose column equals one of values (none: matches nothing).
func OneOf(column string, values ...any) Condition {
	return Condition{op: "in", column: column, values: values}
}

// NotIn matches records whose column is not NULL and equals none of values.
func NotIn(column string, values ...any) Condition {
	return Condition{op: "not in", column: column, values: values}
}

// Between matches records whose column is between low and high, inclusive.
func Between(column string, low, high any) Condition {
	return Condition{op: "between", column: column, values: []any{low, high}}
}

// And matches records that match every one of conds.
func And(conds ...Condition) Condition { return Condition{op: "and", sub: conds} }

// Or matches records that match at least one of conds.
func Or(conds ...Condition) Condition { return Condition{op: "or", sub: conds} }

func newComparison(op, column string, value any) Condition {
	return Condition{op: op, column: column, values: []any{value}}
}

// Sort is one sort key of a Query.
type Sort struct {
	Column string
	Desc   bool
}

// Asc sorts by column, smallest first.
func Asc(column string) Sort { return Sort{Column: column} }

// Desc sorts by column, largest first.
func Desc(column string) Sort { return Sort{Column: column, Desc: true} }

// SanitizeLikeString replaces every character other than ASCII letters and digits with
// "_", so that user input can be put in a Like pattern (WatermelonDB's
// Q.sanitizeLikeString).
func SanitizeLikeString(s string) string {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			out = append(out, byte(r))
		} else {
			out = append(out, '_')
		}
	}
	return string(out)
}

// sql returns " where … order by … limit …" and its arguments.
func (q Query) sql(ti *tableInfo) (string, []any, error) {
	var b strings.Builder
	var args []any
	conds := q.Where
	if !q.IncludeDeleted {
		conds = append(append([]Condition(nil), conds...), Condition{op: "is not", column: "_status", values: []any{StatusDeleted}})
	}
	if len(conds) > 0 {
		b.WriteString(" where ")
		if err := encodeConds(&b, &args, ti, conds, " and "); err != nil {
			return "", nil, err
		}
	}
	for i, s := range q.SortBy {
		if err := checkColumn(ti, s.Column); err != nil {
			return "", nil, err
		}
		if i == 0 {
			b.WriteString(" order by ")
		} else {
			b.WriteString(", ")
		}
		b.WriteString(`"` + s.Column + `"`)
		if s.Desc {
			b.WriteString(" desc")
		} else {
			b.WriteString(" asc")
		}
	}
	if q.Limit < 0 || q.Offset < 0 {
		return "", nil, fmt.Errorf("%w: negative limit or offset", ErrInvalid)
	}
	if q.Limit > 0 || q.Offset > 0 {
		limit := q.Limit
		if limit == 0 {
			limit = -1
		}
		b.WriteString(" limit " + strconv.Itoa(limit) + " offset " + strconv.Itoa(q.Offset))
	}
	return b.String(), args, nil
}

func checkColumn(ti *tableInfo, column string) error {
	switch column {
	case "id", "_status", "_changed":
		return nil
	}
	if ti.t.Column(column) == nil {
		return fmt.Errorf("%w: table %q has no column %q", ErrInvalid, ti.t.Name, column)
	}
	return nil
}

func encodeConds(b *strings.Builder, args *[]any, ti *tableInfo, conds []Condition, joiner string) error {
	for i, c := range conds {
		if i > 0 {
			b.WriteString(joiner)
		}
		if err := encodeCond(b, args, ti, c); err != nil {
			return err
		}
	}
	return nil
}

func encodeCond(b *strings.Builder, args *[]any, ti *tableInfo, c Condition) error {
	switch c.op {
	case "and", "or":
		if len(c.sub) == 0 {
			if c.op == "and" {
				b.WriteString("1")
			} else {
				b.WriteString("0")
			}
			return nil
		}
		b.WriteString("(")
		if err := encodeConds(b, args, ti, c.sub, " "+c.op+" "); err != nil {
			return err
		}
		b.WriteString(")")
		return nil
	case "":
		return fmt.Errorf("%w: empty query condition (build conditions with Eq, Gt, … )", ErrInvalid)
	}
	if err := checkColumn(ti, c.column); err != nil {
		return err
	}
	col := `"` + c.column + `"`
	vals := make([]any, len(c.values))
	for i, v := range c.values {
		ev, err := queryValue(v)
		if err != nil {
			return fmt.Errorf("%w: condition on %q: %v", ErrInvalid, c.column, err)
		}
		if ev == nil && c.op != "is" && c.op != "is not" {
			return fmt.Errorf("%w: condition %q on %q compares with nil; use IsNull or IsNotNull", ErrInvalid, c.op, c.column)
		}
		vals[i] = ev
	}
	switch c.op {
	case "in", "not in":
		b.WriteString(col + " " + c.op + " (")
		for i, v := range vals {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("?")
			*args = append(*args, v)
		}
		b.WriteString(")")
	case "between":
		b.WriteString(col + " between ? and ?")
		*args = append(*args, vals...)
	case "includes":
		if _, ok := vals[0].(string); !ok {
			return fmt.Errorf("%w: Includes on %q needs a string", ErrInvalid, c.column)
		}
		b.WriteString("instr(" + col + ", ?)")
		*args = append(*args, vals[0])
	case "like", "not like":
		b.WriteString(col + " " + c.op + " ?")
		*args = append(*args, vals[0])
	default:
		b.WriteString(col + " " + c.op + " ?")
		*args = append(*args, vals[0])
	}
	return nil
}

// queryValue converts a query value to what is bound: strings, float64, 1/0 for
// booleans, nil.
func queryValue(v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		return x, nil
	case bool:
		return sqlitedb.Bind(x), nil
	case float64:
		return x, nil
	case float32:
		return float64(x), nil
	case int:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case int32:
		return float64(x), nil
	case uint:
		return float64(x), nil
	case uint32:
		return float64(x), nil
	case uint64:
		return float64(x), nil
	}
	return nil, fmt.Errorf("unsupported value type %T (use string, a number, bool or nil)", v)
}
