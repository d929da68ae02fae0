package postgres

import (
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
)

// groupTx is one member's view of its group's transaction (group.go). It answers
// what a push asks; anything else sends the member away to run alone (errRegroup).
type groupTx struct {
	g       *group
	m       *member
	clock   int64
	version int64 // its writes' version, once committed
}

// ask hands c to the leader and waits for the answer.
func (t *groupTx) ask(c *groupCall) error {
	c.m = t.m
	t.g.calls <- c
	err := <-t.m.reply
	if err == nil && c.clock != 0 {
		t.clock = c.clock
	}
	return err
}

// Clock is the clock the group's transaction read with its BEGIN (its version once
// the member's writes committed).
func (t *groupTx) Clock() (int64, error) {
	if t.clock == 0 {
		if err := t.ask(&groupCall{kind: callQueue, queue: func(*pgx.Batch) {}}); err != nil {
			return 0, err
		}
	}
	return t.clock, nil
}

func (t *groupTx) Lookup(tb *schema.Table, ids []string) (map[string]server.Meta, error) {
	return lookupOne(t, tb, ids)
}

func (t *groupTx) LookupTables(tables []*schema.Table, ids [][]string) ([]map[string]server.Meta, error) {
	c := &groupCall{kind: callLookup, tables: tables, ids: ids}
	if err := t.ask(c); err != nil {
		return nil, err
	}
	return c.metas, nil
}

// ApplyTablesAndCommit hands the member's writes to the group's commit and returns
// once it committed.
func (t *groupTx) ApplyTablesAndCommit(tables []*schema.Table, ops [][]server.Op) error {
	c := &groupCall{kind: callFinal, tables: tables, ops: ops}
	if err := t.ask(c); err != nil {
		return err
	}
	t.version = c.clock
	return nil
}

// Version answers once the member's writes committed; before, the member runs alone.
func (t *groupTx) Version() (int64, error) {
	if t.version == 0 {
		return 0, errRegroup
	}
	return t.version, nil
}

func (t *groupTx) Memberships(g *schema.Group, user string) ([]string, error) {
	t.m.reads[groupKey{kind: g.Name, user: user}] = true
	var groups []string
	err := t.ask(&groupCall{kind: callQueue, queue: func(b *pgx.Batch) { queueMemberships(b, g, user, &groups) }})
	if err != nil {
		return nil, err
	}
	return groups, nil
}

func (t *groupTx) Unclaimed(g *schema.Group, id string) (bool, error) {
	t.m.reads[groupKey{kind: g.Name, id: id}] = true
	var taken bool
	err := t.ask(&groupCall{kind: callQueue, queue: func(b *pgx.Batch) { t.g.s.queueUnclaimed(b, g, id, &taken) }})
	if err != nil {
		return false, err
	}
	return !taken, nil
}

func (t *groupTx) Values(tb *schema.Table, cols []schema.Column, ids []string) (map[string][]any, error) {
	var out map[string][]any
	err := t.ask(&groupCall{kind: callQueue, queue: func(b *pgx.Batch) { out = queueValues(b, tb, cols, ids) }})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// What a push does not ask of its transaction: the member runs alone.

func (t *groupTx) PurgedThrough() (int64, error) { return 0, errRegroup }
func (t *groupTx) InGap(int64) (bool, error)     { return false, errRegroup }
func (t *groupTx) MarkGap(int64) error           { return errRegroup }
func (t *groupTx) Apply(*schema.Table, []server.Op) error {
	return errRegroup
}
func (t *groupTx) ApplyTables([]*schema.Table, [][]server.Op) error { return errRegroup }
func (t *groupTx) Scan(*schema.Table, []schema.Column, server.Filter, func(*server.Row) error) error {
	return errRegroup
}
func (t *groupTx) Count(*schema.Table, server.Filter) (int64, error) { return 0, errRegroup }
func (t *groupTx) Moves(*schema.Table, server.MoveFilter, func(server.Move) error) error {
	return errRegroup
}

// mergeOps returns the tables the calls write, in the order they first appear, and
// every call's ops of each. A table's ops are ordered by kind (and, for updates, the
// columns they set; for deletes, the device) so that they go in few statements,
// unless an id repeats among them (then their order matters and is kept).
func mergeOps(calls []*groupCall) ([]*schema.Table, [][]server.Op) {
	tables, ops := gather(calls, func(c *groupCall, i int) []server.Op { return c.ops[i] })
	for _, list := range ops {
		seen := make(map[string]bool, len(list))
		repeats := false
		for _, op := range list {
			repeats = repeats || seen[op.ID]
			seen[op.ID] = true
		}
		if repeats {
			continue
		}
		keys := make([]string, len(list))
		for i, op := range list {
			keys[i] = opKey(op)
		}
		sort.Stable(byKey{list, keys})
	}
	return tables, ops
}

// opKey orders ops that can share a statement next to each other (sameBatch).
func opKey(op server.Op) string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(int(op.Kind)))
	switch op.Kind {
	case server.OpUpdate:
		for _, set := range op.Set {
			if set {
				b.WriteByte('1')
			} else {
				b.WriteByte('0')
			}
		}
	case server.OpDelete:
		b.WriteString(op.Device)
	}
	return b.String()
}

type byKey struct {
	ops  []server.Op
	keys []string
}

func (s byKey) Len() int           { return len(s.ops) }
func (s byKey) Less(i, j int) bool { return s.keys[i] < s.keys[j] }
func (s byKey) Swap(i, j int) {
	s.ops[i], s.ops[j] = s.ops[j], s.ops[i]
	s.keys[i], s.keys[j] = s.keys[j], s.keys[i]
}
