package sqlite

import (
	"fmt"
	"strings"

	"github.com/melonsync/melonsync/internal/sqlitedb"
	"github.com/melonsync/melonsync/schema"
)

// Values returns, for the live rows of t with these ids, the values of cols in order
// (what a conflict policy compares). Ids of missing rows and tombstones are absent.
func (w *writeTx) Values(t *schema.Table, cols []schema.Column, ids []string) (map[string][]any, error) {
	out := make(map[string][]any, len(ids))
	var sel strings.Builder
	for _, c := range cols {
		sel.WriteString(", " + quote(c.Name))
	}
	for start := 0; start < len(ids); start += lookupChunk {
		chunk := ids[start:min(start+lookupChunk, len(ids))]
		q := `SELECT "id"` + sel.String() + ` FROM ` + quote(t.Name) +
			` WHERE "__deleted" = 0 AND "id" IN (?` + strings.Repeat(",?", len(chunk)-1) + `)`
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		if err := w.scanValues(q, args, cols, out); err != nil {
			return nil, fmt.Errorf("sqlite: values %s: %w", t.Name, err)
		}
	}
	return out, nil
}

func (w *writeTx) scanValues(q string, args []any, cols []schema.Column, out map[string][]any) error {
	rows, err := w.tx.QueryContext(w.ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	raw := make([]any, 1+len(cols))
	ptrs := make([]any, len(raw))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		vals := make([]any, len(cols))
		for i, c := range cols {
			vals[i] = sqlitedb.Value(c.Type, raw[1+i])
		}
		out[sqlitedb.Text(raw[0])] = vals
	}
	return rows.Err()
}
