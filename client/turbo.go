package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
)

// The streamed first sync (UnsafeTurbo) runs on two goroutines: one decodes the pull
// answer into batches of rows (rowDecoder), the other — the write transaction's —
// inserts each batch with one multi-row INSERT. A few batches circulate between them,
// so memory does not grow with the answer. Secondary indexes are dropped before the
// load and built again from their own SQL text, each table's once the stream has
// moved on to the next table, so the file keeps its layout. DESIGN.md, "Pull answers
// are applied while they are read", says why.

const (
	turboRowArgs  = 1000 // arguments of one multi-row INSERT, at most
	turboMaxRows  = 100  // rows of one multi-row INSERT, at most
	turboBatches  = 4    // batches circulating between the goroutines
	progressEvery = 1000 // records between two progress reports
)

// rowsPerInsert is how many rows of ti one INSERT carries.
func (ti *tableInfo) rowsPerInsert() int { return max(1, min(turboMaxRows, turboRowArgs/ti.width())) }

// multiInsertSQL is the INSERT of n synced rows of ti, each given by width
// arguments: the id and the columns.
func (ti *tableInfo) multiInsertSQL(n int) string {
	one := "(?, '" + StatusSynced + "', ''" + strings.Repeat(", ?", ti.width()-1) + ")"
	return "insert into \"" + ti.t.Name + "\" (" + ti.selectCols + ") values " + one + strings.Repeat(", "+one, n-1)
}

// turboLoad streams the answer r into the empty tables of tx — every record inserted
// as synced, deletions ignored (an empty database has nothing to delete), tables the
// schema does not have skipped with a warning — and returns what the answer held
// besides records.
func (tx *Tx) turboLoad(ctx context.Context, r io.Reader, log *SyncLog, progress func(Progress)) (*streamResult, error) {
	dropped, err := tx.dropIndexes()
	if err != nil {
		return nil, err
	}
	// A table's indexes are built again as soon as the stream moves on to another
	// table (while the next table's rows are still arriving), the others at the end.
	// A table the stream comes back to gets its later rows indexed one by one.
	build := func(table string) error {
		for _, ddl := range dropped[table] {
			if _, err := tx.tx.ExecContext(ctx, ddl); err != nil {
				return fmt.Errorf("client: create index: %w", err)
			}
		}
		delete(dropped, table)
		return nil
	}
	res, err := tx.turboPipeline(ctx, r, log, progress, build)
	if err != nil {
		return nil, err
	}
	for _, t := range tx.db.schema.Tables {
		if err := build(t.Name); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// dropIndexes drops the secondary indexes of the schema's tables and returns, for
// each table, the SQL that creates them again.
func (tx *Tx) dropIndexes() (map[string][]string, error) {
	var names []string
	ddls := map[string][]string{}
	for _, t := range tx.db.schema.Tables {
		rows, err := tx.tx.QueryContext(tx.ctx, `select "name", "sql" from sqlite_master where "type" = 'index' and "tbl_name" = ? and "sql" is not null`, t.Name)
		if err != nil {
			return nil, fmt.Errorf("client: list indexes: %w", err)
		}
		for rows.Next() {
			var name, ddl string
			if err := rows.Scan(&name, &ddl); err != nil {
				rows.Close()
				return nil, fmt.Errorf("client: list indexes: %w", err)
			}
			names, ddls[t.Name] = append(names, name), append(ddls[t.Name], ddl)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("client: list indexes: %w", err)
		}
	}
	for _, name := range names {
		if _, err := tx.tx.ExecContext(tx.ctx, `drop index "`+strings.ReplaceAll(name, `"`, `""`)+`"`); err != nil {
			return nil, fmt.Errorf("client: drop index %s: %w", name, err)
		}
	}
	return ddls, nil
}

// turboPipeline runs the decoding goroutine and inserts the batches it hands over;
// done is called with a table's name when the stream moves on to another table.
func (tx *Tx) turboPipeline(ctx context.Context, r io.Reader, log *SyncLog, progress func(Progress), done func(table string) error) (*streamResult, error) {
	maxWidth := 1
	for _, ti := range tx.db.tables {
		maxWidth = max(maxWidth, ti.width()*ti.rowsPerInsert())
	}
	free := make(chan *rowBatch, turboBatches)
	for range turboBatches {
		free <- &rowBatch{args: make([]any, 0, maxWidth), ids: make([]string, 0, turboMaxRows)}
	}
	full := make(chan *rowBatch, turboBatches)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		decodeRows(ctx, r, tx.db, log, free, full, stop)
	}()
	defer wg.Wait()
	defer close(stop)

	n, reported := 0, 0
	var last *tableInfo
	for b := range full {
		if b.end {
			if b.err != nil {
				return nil, b.err
			}
			return b.res, nil
		}
		if last != nil && b.ti != last {
			if err := done(last.t.Name); err != nil {
				return nil, err
			}
		}
		last = b.ti
		if err := tx.insertBatch(b); err != nil {
			return nil, err
		}
		n += len(b.ids)
		b.ti, b.args, b.ids = nil, b.args[:0], b.ids[:0]
		free <- b
		for n-reported >= progressEvery {
			reported += progressEvery
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if progress != nil {
				progress(Progress{Phase: phaseInsertingTurboPrefx, Records: reported, Total: -1})
			}
		}
	}
	return nil, fmt.Errorf("client: the decoder stopped without an outcome")
}

// decodeRows is the decoding goroutine: it fills batches taken from free and hands
// them to full in stream order, then one end item with the outcome. It stops early
// when stop is closed.
func decodeRows(ctx context.Context, r io.Reader, db *DB, log *SyncLog, free <-chan *rowBatch, full chan<- *rowBatch, stop <-chan struct{}) {
	var cur *rowBatch
	send := func(b *rowBatch) bool {
		select {
		case full <- b:
			return true
		case <-stop:
			return false
		}
	}
	take := func() (*rowBatch, bool) {
		select {
		case b := <-free:
			return b, true
		case <-stop:
			return nil, false
		}
	}
	warned := map[string]bool{}
	src := &recordingReader{r: r}
	d := &rowDecoder{ctx: ctx, lx: newLexer(src), src: src}
	d.want = func(table string) *tableInfo {
		if ti := db.tables[table]; ti != nil {
			return ti
		}
		if !warned[table] {
			warned[table] = true
			log.warn("the server sent changes of table %q, which the local schema does not have; skipped", table)
		}
		return nil
	}
	d.batch = func(ti *tableInfo) (*rowBatch, error) {
		if cur != nil && (cur.ti != ti || len(cur.ids) >= ti.rowsPerInsert()) {
			if !send(cur) {
				return nil, errStopped
			}
			cur = nil
		}
		if cur == nil {
			b, ok := take()
			if !ok {
				return nil, errStopped
			}
			cur, b.ti = b, ti
		}
		return cur, nil
	}
	res, err := d.run()
	if errors.Is(err, errStopped) {
		return
	}
	if err != nil {
		err = d.classify(err)
	}
	if err == nil && cur != nil && len(cur.ids) > 0 {
		if !send(cur) {
			return
		}
	}
	send(&rowBatch{end: true, err: err, res: res})
}

// errStopped ends the decoding goroutine when the inserting one has stopped.
var errStopped = errors.New("client: stopped")

// insertBatch inserts the rows of b with one statement; when it fails, the rows are
// inserted one by one to report the record at fault (a failed statement leaves the
// transaction as it was before it).
func (tx *Tx) insertBatch(b *rowBatch) error {
	ti, n := b.ti, len(b.ids)
	q := ti.bulkInsertSQL
	if n != ti.rowsPerInsert() {
		q = ti.multiInsertSQL(n)
	}
	_, err := tx.exec(q, b.args...)
	if err != nil && isPrimaryKeyConflict(err) {
		w := ti.width()
		for i := range n {
			if _, err := tx.exec(ti.syncedInsertSQL, b.args[i*w:(i+1)*w]...); err != nil {
				if isPrimaryKeyConflict(err) {
					err = fmt.Errorf("%w: %s#%s", ErrExists, ti.t.Name, b.ids[i])
				}
				return fmt.Errorf("insert %s#%s: %w", ti.t.Name, b.ids[i], err)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("insert into %s: %w", ti.t.Name, err)
	}
	for _, id := range b.ids {
		tx.note(ti.t.Name, id, ChangeCreated, true)
	}
	return nil
}
