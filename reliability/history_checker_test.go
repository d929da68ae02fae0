package reliability_test

import (
	"strings"
	"testing"
	"time"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/internal/testutil"
)

// Small hand-made histories the checker must pass or refuse.

func pullOp(device string, call, ret, since, ts int64, created, updated []melonsync.RawRecord, deleted ...string) *hOp {
	tc := &melonsync.TableChanges{Created: created, Updated: updated, Deleted: deleted}
	return &hOp{user: "u", device: device, kind: "pull", call: call, ret: ret, since: since,
		pull: &melonsync.PullResponse{Changes: melonsync.Changes{"projects": tc}, Timestamp: ts}}
}

func pushOp(device string, call, ret, lastPulledAt, ts int64, created, updated []melonsync.RawRecord) *hOp {
	return &hOp{user: "u", device: device, kind: "push", call: call, ret: ret, since: lastPulledAt, outcome: outOK, pushTS: ts,
		changes: melonsync.Changes{"projects": &melonsync.TableChanges{Created: created, Updated: updated}}}
}

func conflictOp(op *hOp, ids ...string) *hOp {
	op.outcome, op.conflicts, op.pushTS = outConflict, map[string][]string{"projects": ids}, 0
	return op
}

func project(id, name string) melonsync.RawRecord {
	return melonsync.RawRecord{"id": id, "name": name, "is_favorite": false, "position": 0.0}
}

func recs(r ...melonsync.RawRecord) []melonsync.RawRecord { return r }

func TestHistoryChecker(t *testing.T) {
	sch := testutil.TodoSchema(t)
	for _, tc := range []struct {
		name string
		ops  []*hOp
		want string // "" when the history must pass, else part of the message
	}{
		{"a serial history", []*hOp{
			pullOp("A", 0, 1, 0, 10, nil, nil),
			pushOp("A", 2, 3, 10, 20, recs(project("x", "a")), nil),
			pullOp("B", 4, 5, 0, 20, recs(project("x", "a")), nil),
			pushOp("B", 6, 7, 20, 30, nil, recs(project("x", "b"))),
			// x was created after 10 by A itself: "updated" for A.
			pullOp("A", 8, 9, 10, 30, nil, recs(project("x", "b"))),
		}, ""},
		{"a pull concurrent with a push may miss it", []*hOp{
			pullOp("B", 0, 1, 0, 10, nil, nil),
			pushOp("A", 2, 10, 0, 20, recs(project("x", "a")), nil),
			pullOp("B", 3, 4, 10, 10, nil, nil),
			pullOp("B", 11, 12, 10, 20, recs(project("x", "a")), nil),
		}, ""},
		{"a pull misses a push acknowledged before it", []*hOp{
			pullOp("B", 0, 1, 0, 10, nil, nil),
			pushOp("A", 2, 3, 0, 20, recs(project("x", "a")), nil),
			pullOp("B", 4, 5, 10, 25, nil, nil),
		}, "not explained"},
		{"a change reported as created to the device that created it", []*hOp{
			pullOp("A", 0, 1, 0, 10, nil, nil),
			pushOp("A", 2, 3, 10, 20, recs(project("x", "a")), nil),
			pullOp("A", 4, 5, 10, 20, recs(project("x", "a")), nil),
		}, "not explained"},
		{"a lost update: the second push should have got 409", []*hOp{
			pushOp("A", 0, 1, 0, 10, recs(project("x", "a")), nil),
			pullOp("A", 2, 3, 0, 10, recs(project("x", "a")), nil),
			pullOp("B", 2, 3, 0, 10, recs(project("x", "a")), nil),
			pushOp("A", 4, 5, 10, 20, nil, recs(project("x", "b"))),
			pushOp("B", 6, 7, 10, 30, nil, recs(project("x", "c"))),
		}, "not explained"},
		{"the same with a 409", []*hOp{
			pushOp("A", 0, 1, 0, 10, recs(project("x", "a")), nil),
			pullOp("A", 2, 3, 0, 10, recs(project("x", "a")), nil),
			pullOp("B", 2, 3, 0, 10, recs(project("x", "a")), nil),
			pushOp("A", 4, 5, 10, 20, nil, recs(project("x", "b"))),
			conflictOp(pushOp("B", 6, 7, 10, 0, nil, recs(project("x", "c"))), "x"),
		}, ""},
		{"a 409 without a reason", []*hOp{
			pushOp("A", 0, 1, 0, 10, recs(project("x", "a")), nil),
			pullOp("B", 2, 3, 0, 10, recs(project("x", "a")), nil),
			conflictOp(pushOp("B", 6, 7, 10, 0, nil, recs(project("x", "c"))), "x"),
		}, "not explained"},
		{"one timestamp for two states", []*hOp{
			pullOp("B", 0, 1, 0, 10, nil, nil),
			pushOp("A", 2, 3, 0, 10, recs(project("x", "a")), nil),
			pullOp("B", 4, 5, 0, 10, recs(project("x", "a")), nil),
		}, "not explained"},
		{"a timestamp smaller than one handed out before", []*hOp{
			pullOp("A", 0, 1, 0, 20, nil, nil),
			pullOp("B", 2, 3, 0, 15, nil, nil),
		}, "smaller than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := checkHistory(sch, tc.ops, 10*time.Second)
			switch {
			case tc.want == "" && got != "":
				t.Fatalf("refused a history SPEC §3 allows: %s", got)
			case tc.want != "" && !strings.Contains(got, tc.want):
				t.Fatalf("want a message with %q, got %q", tc.want, got)
			}
		})
	}
}
