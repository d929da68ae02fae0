package postgres

import (
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/melonsync/melonsync/schema"
)

// Values returns, for the live rows of t with these ids, the values of cols in order
// (what a conflict policy compares). Ids of missing rows and tombstones are absent.
// The rows were locked by Lookup, so the values stay true until the commit.
func (w *writeTx) Values(t *schema.Table, cols []schema.Column, ids []string) (map[string][]any, error) {
	b := &pgx.Batch{}
	out := queueValues(b, t, cols, ids)
	if b.Len() == 0 {
		return out, nil
	}
	if err := w.tx.SendBatch(w.ctx, b).Close(); err != nil {
		return nil, wrap("values "+t.Name, err)
	}
	return out, nil
}

// queueValues queues Values' statement; its answer fills the map returned.
func queueValues(b *pgx.Batch, t *schema.Table, cols []schema.Column, ids []string) map[string][]any {
	out := make(map[string][]any, len(ids))
	if len(ids) == 0 {
		return out
	}
	var sel strings.Builder
	for _, c := range cols {
		sel.WriteString(", " + quoteIdent(c.Name))
	}
	b.Queue(`SELECT id`+sel.String()+` FROM `+quoteIdent(t.Name)+` WHERE id = ANY($1)`, ids).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				return err
			}
			id, _ := vals[0].(string)
			out[id] = normalize(cols, vals[1:])
		}
		return rows.Err()
	})
	return out
}

// normalize turns pgx's values into the server's forms: string, float64, bool or nil.
func normalize(cols []schema.Column, vals []any) []any {
	out := make([]any, len(cols))
	for i, c := range cols {
		switch x := vals[i].(type) {
		case string:
			if c.Type == schema.String {
				out[i] = x
			}
		case float64:
			if c.Type == schema.Number {
				out[i] = x
			}
		case float32:
			if c.Type == schema.Number {
				out[i] = float64(x)
			}
		case int64:
			if c.Type == schema.Number {
				out[i] = float64(x)
			}
		case int32:
			if c.Type == schema.Number {
				out[i] = float64(x)
			}
		case bool:
			if c.Type == schema.Boolean {
				out[i] = x
			}
		}
	}
	return out
}
