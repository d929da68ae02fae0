package client

// WatermelonDB's synchronize-partialRejections.test.js and
// synchronize-replacement.test.js.

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/melonsync/melonsync"
)

func TestSyncPartialRejection(t *testing.T) {
	db := ldbOpen(t)
	local := ldbMakeLocalChanges(t, db)
	rejected := map[string][]string{"mock_tasks": {"tCreated", "tUpdated"}, "mock_comments": {"cDeleted"}}
	log := &SyncLog{}
	push := &stPusher{fn: func(context.Context, melonsync.PushRequest) (*melonsync.PushResponse, error) {
		return &melonsync.PushResponse{OK: true, Timestamp: 1600, RejectedIDs: rejected}, nil
	}}
	if err := Synchronize(context.Background(), db, SyncOptions{PullChanges: stEmptyPull(1500).Pull, PushChanges: push.Push, Log: log}); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"mock_tasks": {"+tCreated", "~tUpdated"}, "mock_comments": {"-cDeleted"}}
	left := stLocalChanges(t, db)
	if diff := cmp.Diff(want, stSummary(left)); diff != "" {
		t.Errorf("left to push (-want +got):\n%s", diff)
	}
	// The rejected records are untouched.
	ldbMatch(t, ldbGetRaw(t, db, "mock_tasks", "tCreated"), local["tCreated"])
	ldbMatch(t, ldbGetRaw(t, db, "mock_tasks", "tUpdated"), local["tUpdated"])
	if !cmp.Equal(log.RejectedIDs, rejected) {
		t.Errorf("log rejected ids %v", log.RejectedIDs)
	}
}

func TestSyncPartialRejectionWithChangesDuringPush(t *testing.T) {
	db := ldbOpen(t)
	local := ldbMakeLocalChanges(t, db)
	var newComment Record
	push := func(ctx context.Context, _ melonsync.PushRequest) (*melonsync.PushResponse, error) {
		err := db.Write(ctx, func(tx *Tx) error {
			if err := tx.Update("mock_projects", "pCreated1", map[string]any{"name": "updated!"}); err != nil {
				return err
			}
			var err error
			newComment, err = tx.Create("mock_comments", map[string]any{"body": "bazinga"})
			return err
		})
		return &melonsync.PushResponse{OK: true, RejectedIDs: map[string][]string{"mock_tasks": {"tUpdated"}, "mock_comments": {"cDeleted"}}}, err
	}
	if err := Synchronize(context.Background(), db, SyncOptions{PullChanges: stEmptyPull(1500).Pull, PushChanges: push}); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"mock_projects": {"+pCreated1"},
		"mock_tasks":    {"~tUpdated"},
		"mock_comments": {"+" + newComment["id"].(string), "-cDeleted"},
	}
	if diff := cmp.Diff(want, stSummary(stLocalChanges(t, db))); diff != "" {
		t.Errorf("left to push (-want +got):\n%s", diff)
	}
	p := ldbGetRaw(t, db, "mock_projects", "pCreated1")
	wantP := cloneRec(local["pCreated1"])
	wantP["name"], wantP["_changed"] = "updated!", "name"
	if !cmp.Equal(map[string]any(p), wantP) {
		t.Errorf("pCreated1 = %v, want %v", p, wantP)
	}
}

func stCountAll(t *testing.T, db *DB) int {
	t.Helper()
	n := 0
	err := db.Read(context.Background(), func(tx *Tx) error {
		for _, table := range ldbAllMockTables {
			c, err := tx.Count(table, Query{})
			if err != nil {
				return err
			}
			n += c
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSyncReplacement(t *testing.T) {
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	pull := &stPuller{fn: func(context.Context, PullArgs) (*PullResult, error) {
		return &PullResult{
			Changes: stChangeSet(map[string]melonsync.TableChanges{
				"mock_projects": {Updated: []melonsync.RawRecord{{"id": "pSynced"}}},
				"mock_tasks": {Updated: []melonsync.RawRecord{
					{"id": "tSynced", "name": "remote", "description": "remote"},
					{"id": "new_task", "name": "remote"},
				}},
			}),
			Timestamp: 1500,
			Strategy:  Strategy{Default: StrategyReplacement},
		}, nil
	}}
	push := &stPusher{}
	log := &SyncLog{}
	if err := Synchronize(context.Background(), db, SyncOptions{PullChanges: pull.Pull, PushChanges: push.Push, SendCreatedAsUpdated: true, Log: log}); err != nil {
		t.Fatal(err)
	}
	if !pull.Calls()[0].SendCreatedAsUpdated {
		t.Error("PullArgs.SendCreatedAsUpdated not set")
	}
	ldbExpectMatches(t, db, "mock_tasks", "tSynced", map[string]any{"name": "remote"})
	if n := stCountAll(t, db); n != 3+4 {
		t.Errorf("%d records, want 7 (the data set and the 4 created locally)", n)
	}
	stExpectNoLocalChanges(t, db) // the 4 created were pushed; no deleted record is left
	pushed := push.Calls()
	if len(pushed) != 1 || log.LocalChangeCount != 4 {
		t.Fatalf("pushes %d, local change count %d", len(pushed), log.LocalChangeCount)
	}
	if diff := cmp.Diff(map[string][]string{"mock_projects": {"+pCreated1", "+pCreated2"}, "mock_tasks": {"+tCreated"}, "mock_comments": {"+cCreated"}}, stSummary(pushed[0].Changes)); diff != "" {
		t.Errorf("pushed (-want +got):\n%s", diff)
	}
}

func TestSyncReplacementPerTable(t *testing.T) {
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	pull := &stPuller{fn: func(context.Context, PullArgs) (*PullResult, error) {
		return DecodePullResponse(context.Background(), strings.NewReader(`{
			"changes": {"mock_tasks": {"created": [], "updated": [{"id": "tSynced", "name": "remote"}], "deleted": []},
			            "mock_projects": {"created": [], "updated": [], "deleted": []}},
			"timestamp": 1500,
			"experimentalStrategy": {"default": "incremental", "override": {"mock_tasks": "replacement"}}}`))
	}}
	if err := Synchronize(context.Background(), db, SyncOptions{PullChanges: pull.Pull, PushChanges: (&stPusher{}).Push}); err != nil {
		t.Fatal(err)
	}
	// Tasks were replaced: only tSynced and the locally created tCreated remain.
	ldbExpectMatches(t, db, "mock_tasks", "tSynced", map[string]any{"name": "remote"})
	ldbExpectMatches(t, db, "mock_tasks", "tCreated", nil)
	ldbExpectMissing(t, db, "mock_tasks", "tUpdated")
	// Projects were incremental: nothing was removed.
	ldbExpectMatches(t, db, "mock_projects", "pSynced", nil)
	ldbExpectMatches(t, db, "mock_projects", "pUpdated", map[string]any{"name": "local"})
}

func TestSyncRejectsInvalidStrategy(t *testing.T) {
	for _, s := range []string{`"bad"`, `{"default": "bad", "override": {}}`, `{"default": "incremental", "override": {"mock_projects": "bad"}}`} {
		db := ldbOpen(t)
		pull := &stPuller{fn: func(context.Context, PullArgs) (*PullResult, error) {
			return DecodePullResponse(context.Background(), strings.NewReader(`{"changes": {}, "timestamp": 1500, "experimentalStrategy": `+s+`}`))
		}}
		err := Synchronize(context.Background(), db, SyncOptions{PullChanges: pull.Pull, PushChanges: (&stPusher{}).Push})
		if !errors.Is(err, ErrInvalidData) || !strings.Contains(err.Error(), "invalid pull strategy") {
			t.Errorf("strategy %s: %v", s, err)
		}
		if v := stLastPulledAt(t, db); v != nil {
			t.Errorf("strategy %s: lastPulledAt saved", s)
		}
	}
}

func TestSyncRejectsInvalidRemoteRecords(t *testing.T) {
	for _, body := range []string{
		`{"changes": {"mock_projects": {"created": [{"name": "no id"}]}}, "timestamp": 1}`,
		`{"changes": {"mock_projects": {"updated": [{"id": "p1", "_status": "synced"}]}}, "timestamp": 1}`,
		`{"changes": {"mock_projects": {"created": [{"id": "p1", "_changed": ""}]}}, "timestamp": 1}`,
		`{"changes": {"mock_projects": {"created": ["p1"]}}, "timestamp": 1}`,
		`{"changes": {"mock_projects": {"created": [null]}}, "timestamp": 1}`,
		`{"changes": {"mock_projects": {"created": [{"id": 5}]}}, "timestamp": 1}`,
		`{"changes": [], "timestamp": 1}`,
		`{"changes": {}, "timestamp": "soon"}`,
		`{"changes": {}, "timestamp": 1.5}`,
		`not json`,
	} {
		db := ldbOpen(t)
		ldbWrite(t, db, func(tx *Tx) error {
			ldbInsertAs(t, tx, "mock_projects", map[string]any{"id": "keep"}, "synced")
			return nil
		})
		pull := &stPuller{fn: func(context.Context, PullArgs) (*PullResult, error) {
			return &PullResult{Body: nopCloser{strings.NewReader(body)}}, nil
		}}
		err := Synchronize(context.Background(), db, SyncOptions{PullChanges: pull.Pull})
		if !errors.Is(err, ErrInvalidData) {
			t.Errorf("%s: %v, want ErrInvalidData", body, err)
		}
		if v := stLastPulledAt(t, db); v != nil {
			t.Errorf("%s: lastPulledAt saved", body)
		}
		ldbExpectMatches(t, db, "mock_projects", "keep", nil)
	}
}

type nopCloser struct{ r *strings.Reader }

func (n nopCloser) Read(p []byte) (int, error) { return n.r.Read(p) }
func (n nopCloser) Close() error               { return nil }

// Tables the local schema does not have are skipped (forward compatibility) and noted.
func TestSyncSkipsUnknownTables(t *testing.T) {
	db := ldbOpen(t)
	log := &SyncLog{}
	pull := stPullChanges(melonsync.Changes{
		"mock_projects": {Created: []melonsync.RawRecord{{"id": "p1", "name": "x"}}},
		"future_table":  {Created: []melonsync.RawRecord{{"id": "f1", "whatever": 1}}},
	}, 1500)
	if err := Synchronize(context.Background(), db, SyncOptions{PullChanges: pull.Pull, Log: log}); err != nil {
		t.Fatal(err)
	}
	ldbExpectMatches(t, db, "mock_projects", "p1", map[string]any{"name": "x"})
	if !strings.Contains(strings.Join(log.Warnings, "\n"), "future_table") {
		t.Errorf("warnings %v", log.Warnings)
	}
}
