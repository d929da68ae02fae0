package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
)

// Group commit (DESIGN.md "Group commit"): small pushes that queue up while every
// group slot is busy run together in one transaction. Each still runs its own
// function, in its own goroutine, against a groupTx; the group's leader (run) waits
// until every member is blocked on a call and then answers all the calls in one
// round trip: the look-ups of every member in one statement per table, and at the
// end every member's writes in one statement per table, with one version and one
// COMMIT. A push then costs the database a share of one transaction's statements
// instead of a transaction of its own.
//
// Each member reads before any member writes (writes are a member's last call), so
// every member decides on the state committed before the group's writes, as it would
// alone. The group is equivalent to its members run one after the other as long as
// no member writes what another read: a member whose look-ups overlap another's is
// sent to run alone, and so is one whose writes touch the memberships or the groups
// another member's rights rested on (conflicts). A member that needs anything else
// of the transaction (MarkGap, its own Version, Apply without commit, scans) runs
// alone too; so do all of them when the group's transaction fails.
//
// Running alone happens after the group's transaction ended (its locks released).

// groupMax bounds the members of one group.
const groupMax = 32

// groupLockWait bounds each lock wait of a group's transaction: a group waiting for a
// row another transaction holds would hold back every member (and the pushes queued
// behind it). Past it the group's transaction fails and its members run alone, where
// only the push that needs the row waits for it.
const groupLockWait = 100 * time.Millisecond

// errRegroup tells a member's function to return: its write runs again alone.
var errRegroup = errors.New("postgres: this write runs again on its own")

// grouper hands out group slots: each slot is one write transaction in flight through
// WriteGrouped. A write that finds a free slot leads a group of itself and whatever
// queued meanwhile; one that finds none queues for the next leader.
type grouper struct {
	slots chan struct{}
	queue chan *member

	waiting                       atomic.Int32 // writes waiting for a slot or a leader
	groups, grouped, sent, single atomic.Int64 // GroupStats
}

// GroupStats says what group commit did (zero when it is off).
func (s *Store) GroupStats() server.GroupStats {
	if s.groups == nil {
		return server.GroupStats{}
	}
	return server.GroupStats{Groups: s.groups.groups.Load(), Grouped: s.groups.grouped.Load(), Alone: s.groups.sent.Load(),
		Single: s.groups.single.Load()}
}

// DefaultGroupSlots is the number of group transactions a store runs at once unless
// WithGroupSlots says otherwise: one per two CPUs, at least one. Fewer slots make
// larger groups, which is what saves the database's work; measured with bench/push
// on 2 CPUs, 1 slot beat 2, 4 and 8.
func DefaultGroupSlots() int { return max(1, runtime.NumCPU()/2) }

func newGrouper(slots int) *grouper {
	if slots <= 0 {
		return nil
	}
	return &grouper{slots: make(chan struct{}, slots), queue: make(chan *member)}
}

// member is one WriteGrouped call.
type member struct {
	ctx      context.Context
	deadline time.Time // when the store's write limit ends it (zero: none)
	fn       func(server.WriteTx) error
	start    chan *groupTx // its transaction, from the leader
	reply    chan error    // answers to its calls
	panicked any

	looked map[string]map[string]server.Meta // what its look-ups found, by table and id
	reads  map[groupKey]bool                 // memberships and groups its rights rest on
	writes *groupCall                        // its final call, once made
}

// groupKey names what a member's rights rested on: the memberships of a user of a
// group kind (user set) or the founding of a group (id set).
type groupKey struct{ kind, user, id string }

// WriteGrouped is Write for a push's function (server.GroupWriter): it may run in one
// transaction with other pushes (see above). Its answer is the one Write would give.
func (s *Store) WriteGrouped(ctx context.Context, fn func(server.WriteTx) error) error {
	gr := s.groups
	if gr == nil {
		return s.Write(ctx, fn)
	}
	m := &member{ctx: ctx, fn: fn, start: make(chan *groupTx, 1), reply: make(chan error, 1),
		looked: map[string]map[string]server.Meta{}, reads: map[groupKey]bool{}}
	// The write limit counts from here, the wait for a slot included.
	var expired <-chan time.Time
	if s.writeLimit > 0 {
		m.deadline = time.Now().Add(s.writeLimit)
		t := time.NewTimer(s.writeLimit)
		defer t.Stop()
		expired = t.C
	}
	gr.waiting.Add(1)
	select {
	case gr.slots <- struct{}{}:
		gr.waiting.Add(-1)
		members := gr.drain(m)
		if len(members) == 1 {
			gr.single.Add(1)
			defer func() { <-gr.slots }()
			return s.Write(ctx, fn)
		}
		g := &group{s: s, stats: gr, calls: make(chan *groupCall), ended: make(chan struct{}), claims: map[string]map[string]*member{}}
		gr.groups.Add(1)
		g.leave = sync.OnceFunc(func() { <-gr.slots })
		go func() {
			defer g.leave()
			g.run(members)
		}()
	case gr.queue <- m:
		gr.waiting.Add(-1)
	case <-ctx.Done():
		gr.waiting.Add(-1)
		return fmt.Errorf("postgres: begin write: %w", ctx.Err())
	case <-expired:
		gr.waiting.Add(-1)
		return fmt.Errorf("postgres: write: %w: no answer from the database within %v", melonsync.ErrUnavailable, s.writeLimit)
	}
	return m.run(s)
}

// drain returns first and the writes queued for a leader, at most groupMax.
func (gr *grouper) drain(first *member) []*member {
	members := []*member{first}
	for len(members) < groupMax {
		select {
		case m := <-gr.queue:
			members = append(members, m)
		default:
			return members
		}
	}
	return members
}

// run waits for the member's transaction, runs its function and tells the leader;
// a member sent away runs alone once the group's transaction ended.
func (m *member) run(s *Store) error {
	t := <-m.start
	err := m.call(t)
	t.g.calls <- &groupCall{m: m, kind: callDone}
	if m.panicked != nil {
		panic(m.panicked)
	}
	if errors.Is(err, errRegroup) {
		t.g.stats.sent.Add(1)
		<-t.g.ended
		return s.Write(m.ctx, m.fn)
	}
	return err
}

func (m *member) call(t *groupTx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			m.panicked = p
			err = fmt.Errorf("postgres: write panicked: %v", p)
		}
	}()
	return m.fn(t)
}

// callKind says what a member asks of the group.
type callKind int

const (
	callDone   callKind = iota // its function returned
	callLookup                 // LookupTables
	callQueue                  // statements of its own (queue), answered in the next round
	callFinal                  // ApplyTablesAndCommit
)

// groupCall is one call of a member, blocked until the leader answers on m.reply.
type groupCall struct {
	m    *member
	kind callKind
	// callLookup and callFinal: the tables, and the ids looked up or the ops.
	tables []*schema.Table
	ids    [][]string
	metas  []map[string]server.Meta
	ops    [][]server.Op
	// callQueue: queue adds the call's statements to a round's batch (again from
	// the start when the batch is sent again on another connection).
	queue func(b *pgx.Batch)
	// clock is the answer's clock: the transaction's, or its version once committed.
	clock int64
}

// group is one group transaction and its members' calls.
type group struct {
	s      *Store
	w      *writeTx
	cancel context.CancelFunc
	calls  chan *groupCall
	ended  chan struct{} // closed once the transaction is over
	failed error         // the transaction failed: what every call answers (fail)
	claims map[string]map[string]*member
	stats  *grouper
	// leave gives the group's slot back: at the latest when the group ends, and as
	// soon as it sends its commit, so that the next group forms and reads while
	// this one's COMMIT is on its way (at most one group forms at a time per slot).
	leave func()
}

// run starts the members and answers their calls, a round at a time, until every
// member's function returned; then it ends the transaction.
func (g *group) run(members []*member) {
	defer close(g.ended)
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if d := earliest(members); !d.IsZero() {
		ctx, cancel = context.WithDeadline(ctx, d)
	}
	defer cancel()
	l := &lazyTx{s: g.s, pool: g.s.pool, beginSQL: `BEGIN ISOLATION LEVEL READ COMMITTED`}
	defer l.release(ctx)
	g.w = &writeTx{readTx: readTx{ctx: ctx, tx: l, s: g.s}, lazy: l, looked: map[string]map[string]server.Meta{}, noNotes: true}
	for _, m := range members {
		m.start <- &groupTx{g: g, m: m}
	}
	active := len(members)
	var pending []*groupCall
	for active > 0 {
		c := <-g.calls
		switch {
		case c.kind == callDone:
			active--
		case g.failed != nil:
			c.m.reply <- g.failed
		default:
			pending = append(pending, c)
		}
		if len(pending) == active && active > 0 {
			pending = g.serve(pending)
		}
	}
}

// gather merges the calls' lists of each table (list(c, i): c's list of its i-th
// table): the tables in the order they first appear, each with its lists joined.
func gather[T any](calls []*groupCall, list func(c *groupCall, i int) []T) ([]*schema.Table, [][]T) {
	var tables []*schema.Table
	var lists [][]T
	at := map[string]int{}
	for _, c := range calls {
		for i, t := range c.tables {
			l := list(c, i)
			if len(l) == 0 {
				continue
			}
			k, ok := at[t.Name]
			if !ok {
				k = len(tables)
				at[t.Name] = k
				tables, lists = append(tables, t), append(lists, nil)
			}
			lists[k] = append(lists[k], l...)
		}
	}
	return tables, lists
}

// earliest returns the earliest deadline of the members (zero when they have none).
func earliest(members []*member) time.Time {
	var d time.Time
	for _, m := range members {
		if !m.deadline.IsZero() && (d.IsZero() || m.deadline.Before(d)) {
			d = m.deadline
		}
	}
	return d
}

// serve answers the calls of a round in which every member waits: all but the final
// ones, or, when only final calls wait, the commit. It returns the calls still
// waiting.
func (g *group) serve(pending []*groupCall) []*groupCall {
	var now, finals []*groupCall
	for _, c := range pending {
		if c.kind == callFinal {
			finals = append(finals, c)
		} else {
			now = append(now, c)
		}
	}
	if len(now) > 0 {
		g.round(now)
		return finals
	}
	g.commit(finals)
	return nil
}

// fail ends the group's transaction, which err broke: the calls waiting and to come
// answer errRegroup when a member alone may fare otherwise (regroupable), else the
// error a write alone would have returned.
func (g *group) fail(calls []*groupCall, err error) {
	g.failed = errRegroup
	if !regroupable(err) {
		g.failed = g.s.noAnswer("write", g.s.writeLimit, context.Background(), g.w.ctx, err)
	}
	for _, c := range calls {
		c.m.reply <- g.failed
	}
}

// regroupable tells the failures of a group's transaction after which its members
// run alone: it raced (racedErr), the database refused a member's data (refused.go),
// it was a deadlock victim or a serialization failure, or it waited for a lock longer
// than groupLockWait. Nothing was committed. Any other failure (the database gone or
// silent, a statement timeout, a full disk) would befall a member alone as well.
func regroupable(err error) bool {
	if errors.As(err, new(*racedErr)) || isRefusal(err) {
		return true
	}
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001" || pgErr.Code == "55P03")
}

// round answers the look-ups and queued statements of every waiting member in one
// round trip (with the BEGIN and the clock when it is the transaction's first): the
// look-ups of one table in one statement pair. A member whose look-ups overlap
// another's is sent away first.
func (g *group) round(calls []*groupCall) {
	var lookups, queued []*groupCall
	for _, c := range calls {
		switch {
		case c.kind == callQueue:
			queued = append(queued, c)
		case g.claim(c):
			lookups = append(lookups, c)
		default:
			c.m.reply <- errRegroup
		}
	}
	calls = append(lookups, queued...)
	tables, ids := g.mergeLookups(lookups)
	var found []map[string]server.Meta
	w := g.w
	if len(tables)+len(queued) > 0 || !w.lazy.begun {
		err := w.lazy.sendFirst(w.ctx, func(b *pgx.Batch) {
			if !w.lazy.begun {
				b.Queue(`SELECT set_config('lock_timeout', $1, true)`, strconv.FormatInt(groupLockWait.Milliseconds(), 10))
				b.Queue(clockSQL).QueryRow(func(row pgx.Row) error { return row.Scan(&w.clock) })
			}
			found = make([]map[string]server.Meta, len(tables))
			for i, t := range tables {
				found[i] = make(map[string]server.Meta, len(ids[i]))
				w.queueLookup(b, t, ids[i], found[i])
			}
			for _, c := range queued {
				c.queue(b)
			}
		})
		if err != nil {
			g.fail(calls, wrap("lookup", err))
			return
		}
	}
	byTable := make(map[string]map[string]server.Meta, len(tables))
	for i, t := range tables {
		byTable[t.Name] = found[i]
		if w.looked[t.Name] == nil {
			w.looked[t.Name] = map[string]server.Meta{}
		}
		for id, m := range found[i] {
			w.looked[t.Name][id] = m
		}
	}
	for _, c := range lookups {
		c.metas = make([]map[string]server.Meta, len(c.tables))
		for i, t := range c.tables {
			c.metas[i] = make(map[string]server.Meta, len(c.ids[i]))
			if c.m.looked[t.Name] == nil {
				c.m.looked[t.Name] = map[string]server.Meta{}
			}
			for _, id := range c.ids[i] {
				if m, ok := byTable[t.Name][id]; ok {
					c.metas[i][id] = m
					c.m.looked[t.Name][id] = m
				}
			}
		}
	}
	for _, c := range calls {
		c.clock = w.clock
		c.m.reply <- nil
	}
}

// claim reserves the ids c looks up for its member; it reports false, reserving
// nothing, when another member looked any of them up.
func (g *group) claim(c *groupCall) bool {
	for i, t := range c.tables {
		for _, id := range c.ids[i] {
			if by := g.claims[t.Name][id]; by != nil && by != c.m {
				return false
			}
		}
	}
	for i, t := range c.tables {
		if g.claims[t.Name] == nil {
			g.claims[t.Name] = map[string]*member{}
		}
		for _, id := range c.ids[i] {
			g.claims[t.Name][id] = c.m
		}
	}
	return true
}

// mergeLookups returns the tables the calls look up, in the schema's order (a push's
// own order: the locks are taken in one global order), with every id looked up in
// each.
func (g *group) mergeLookups(calls []*groupCall) ([]*schema.Table, [][]string) {
	tables, ids := gather(calls, func(c *groupCall, i int) []string { return c.ids[i] })
	pos := map[string]int{}
	if sch := g.s.app.Load(); sch != nil {
		for i, t := range sch.Tables {
			pos[t.Name] = i
		}
	}
	order := make([]int, len(tables))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return pos[tables[order[a]].Name] < pos[tables[order[b]].Name] })
	sortedTables, sortedIDs := make([]*schema.Table, len(tables)), make([][]string, len(tables))
	for i, k := range order {
		sortedTables[i], sortedIDs[i] = tables[k], ids[k]
	}
	return sortedTables, sortedIDs
}

// commit writes the final calls' ops, each table's in as few statements as their
// kinds allow, with one version, and commits, in one round trip. Members whose
// writes touch what another's rights rested on are sent away first (admit). When the
// database refuses the batch (nothing was committed) every member runs alone.
func (g *group) commit(finals []*groupCall) {
	admitted := g.admit(finals)
	if len(admitted) == 0 {
		return
	}
	tables, ops := mergeOps(admitted)
	w := g.w
	g.leave()
	if err := w.applyTables(tables, ops, true); err != nil {
		// Not regroupable: whether the COMMIT took effect may be unknown, as for a
		// write alone.
		g.fail(admitted, err)
		return
	}
	for _, c := range admitted {
		notes := &writeTx{readTx: readTx{s: g.s}, looked: c.m.looked, version: w.version}
		for i, t := range c.tables {
			for _, op := range c.ops[i] {
				notes.noteOp(t, op)
				notes.device = cmp.Or(notes.device, op.Device)
			}
		}
		g.s.notes.add(notes.notes())
		c.clock = w.version
		c.m.reply <- nil
	}
	g.stats.grouped.Add(int64(len(admitted)))
	g.s.noteClock(w.version)
}

// admit returns the final calls that may commit together, in order, and sends the
// others away: a call is admitted unless it writes a membership or a group that an
// admitted member's rights rested on, or an admitted member wrote what its own
// rights rested on. The admitted members read nothing another wrote, so committing
// them together equals running them one after the other.
func (g *group) admit(finals []*groupCall) []*groupCall {
	read, written := map[groupKey]bool{}, map[groupKey]bool{}
	var out []*groupCall
	for _, c := range finals {
		writes := groupWrites(c)
		clash := false
		for k := range writes {
			clash = clash || read[k]
		}
		for k := range c.m.reads {
			clash = clash || written[k]
		}
		if clash {
			c.m.reply <- errRegroup
			continue
		}
		for k := range writes {
			written[k] = true
		}
		for k := range c.m.reads {
			read[k] = true
		}
		out = append(out, c)
	}
	return out
}

// groupWrites returns the memberships and groups c's ops change: every group a row
// leaves or joins, every user a membership row names before or after.
func groupWrites(c *groupCall) map[groupKey]bool {
	out := map[groupKey]bool{}
	for i, t := range c.tables {
		kind := t.Rule.Group
		if kind == nil {
			kind = t.Rule.MembersOf
		}
		for _, op := range c.ops[i] {
			for _, id := range []string{op.OldGroup, op.Group} {
				if kind != nil && id != "" {
					out[groupKey{kind: kind.Name, id: id}] = true
				}
				if mg := t.Rule.MembersOf; mg != nil && id != "" {
					out[groupKey{kind: mg.Name, id: id}] = true
				}
			}
			if mg := t.Rule.MembersOf; mg != nil {
				for _, u := range []string{op.OldUser, op.User} {
					if u != "" {
						out[groupKey{kind: mg.Name, user: u}] = true
					}
				}
			}
		}
	}
	return out
}
