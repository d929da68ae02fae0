package client

// WatermelonDB's src/sync/impl/__tests__/synchronize.test.js, as Go tests.

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/melonsync/melonsync"
)

func TestSyncEmpty(t *testing.T) {
	db := ldbOpen(t)
	observed := stObserve(t, db)
	pull := stEmptyPull(1500)
	push := &stPusher{}
	if err := Synchronize(context.Background(), db, SyncOptions{PullChanges: pull.Pull, PushChanges: push.Push}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // notifications are asynchronous
	if n := observed.Load(); n != 0 {
		t.Errorf("an empty sync notified %d change(s)", n)
	}
	calls := pull.Calls()
	if len(calls) != 1 {
		t.Fatalf("pull called %d times", len(calls))
	}
	if calls[0].LastPulledAt != nil || calls[0].SchemaVersion != 1 || calls[0].Migration != nil {
		t.Errorf("pull args %+v, want lastPulledAt null, schemaVersion 1, migration null", calls[0])
	}
}

func TestSyncDoesNotPushWhenNothingToPush(t *testing.T) {
	db := ldbOpen(t)
	push := &stPusher{}
	if err := Synchronize(context.Background(), db, SyncOptions{PullChanges: stEmptyPull(1500).Pull, PushChanges: push.Push}); err != nil {
		t.Fatal(err)
	}
	if n := len(push.Calls()); n != 0 {
		t.Errorf("push called %d times", n)
	}
}

func TestSyncLogsBasicInformation(t *testing.T) {
	db := ldbOpen(t)
	log := &SyncLog{}
	pull := &stPuller{fn: func(context.Context, PullArgs) (*PullResult, error) {
		time.Sleep(10 * time.Millisecond)
		return &PullResult{Changes: melonsync.Changes{}, Timestamp: 1500}, nil
	}}
	if err := Synchronize(context.Background(), db, SyncOptions{PullChanges: pull.Pull, PushChanges: (&stPusher{}).Push, Log: log}); err != nil {
		t.Fatal(err)
	}
	if log.StartedAt.IsZero() || log.FinishedAt.IsZero() || !log.FinishedAt.After(log.StartedAt) {
		t.Errorf("startedAt %v, finishedAt %v", log.StartedAt, log.FinishedAt)
	}
	if log.Phase != PhaseDone {
		t.Errorf("phase %q", log.Phase)
	}
	if log.LastPulledAt != nil || log.NewLastPulledAt == nil || *log.NewLastPulledAt != 1500 {
		t.Errorf("lastPulledAt %v newLastPulledAt %v", log.LastPulledAt, log.NewLastPulledAt)
	}
	if log.Error != nil || log.RemoteChangeCount != 0 || log.LocalChangeCount != 0 {
		t.Errorf("error %v remote %d local %d", log.Error, log.RemoteChangeCount, log.LocalChangeCount)
	}
}

func TestSyncNotifiesRemoteChangeCount(t *testing.T) {
	db := ldbOpen(t)
	var got []int
	hook := func(_ context.Context, info RemoteChangeInfo) error {
		got = append(got, info.RemoteChangeCount)
		return nil
	}
	if err := Synchronize(context.Background(), db, SyncOptions{PullChanges: stEmptyPull(1500).Pull, PushChanges: (&stPusher{}).Push, OnWillApplyRemoteChanges: hook}); err != nil {
		t.Fatal(err)
	}
	pull := stPullChanges(stChangeSet(map[string]melonsync.TableChanges{
		"mock_projects": {Created: []melonsync.RawRecord{{"id": "new_project", "name": "remote"}}},
		"mock_tasks":    {Updated: []melonsync.RawRecord{{"id": "task_1", "name": "remote"}}, Deleted: []string{"task_2"}},
	}), 1500)
	slow := func(ctx context.Context, info RemoteChangeInfo) error {
		time.Sleep(100 * time.Millisecond)
		return hook(ctx, info)
	}
	if err := Synchronize(context.Background(), db, SyncOptions{PullChanges: pull.Pull, PushChanges: (&stPusher{}).Push, OnWillApplyRemoteChanges: slow}); err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(got, []int{0, 3}) {
		t.Errorf("remote change counts %v, want [0 3]", got)
	}
	ldbExpectMatches(t, db, "mock_projects", "new_project", map[string]any{"name": "remote"})
}

func TestSyncWithoutPushChanges(t *testing.T) {
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	log := &SyncLog{}
	pull := &stPuller{fn: func(context.Context, PullArgs) (*PullResult, error) {
		time.Sleep(10 * time.Millisecond)
		return &PullResult{Changes: melonsync.Changes{}, Timestamp: 1500}, nil
	}}
	if err := Synchronize(context.Background(), db, SyncOptions{PullChanges: pull.Pull, Log: log}); err != nil {
		t.Fatal(err)
	}
	if log.Phase != PhaseDone || !log.FinishedAt.After(log.StartedAt) {
		t.Errorf("phase %q, started %v finished %v", log.Phase, log.StartedAt, log.FinishedAt)
	}
	if n := len(stSummary(stLocalChanges(t, db))); n == 0 {
		t.Error("local changes were marked as synced without a push")
	}
}

func TestSyncPushesChanges(t *testing.T) {
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	before := stLocalChanges(t, db)
	push := &stPusher{}
	log := &SyncLog{}
	if err := Synchronize(context.Background(), db, SyncOptions{PullChanges: stEmptyPull(1500).Pull, PushChanges: push.Push, Log: log}); err != nil {
		t.Fatal(err)
	}
	calls := push.Calls()
	if len(calls) != 1 {
		t.Fatalf("push called %d times", len(calls))
	}
	if calls[0].LastPulledAt != 1500 {
		t.Errorf("pushed lastPulledAt %d", calls[0].LastPulledAt)
	}
	if diff := cmp.Diff(before, calls[0].Changes); diff != "" {
		t.Errorf("pushed changes differ from the local changes (-local +pushed):\n%s", diff)
	}
	stExpectNoLocalChanges(t, db)
	if log.LocalChangeCount != 10 {
		t.Errorf("localChangeCount %d, want 10", log.LocalChangeCount)
	}
	// Destroyed deletions, synced creations and updates.
	ldbExpectMissing(t, db, "mock_projects", "pDeleted")
	ldbExpectMatches(t, db, "mock_projects", "pCreated1", nil)
	ldbExpectMatches(t, db, "mock_tasks", "tUpdated", map[string]any{"name": "local", "position": 100.0})
}

func TestSyncPullsChanges(t *testing.T) {
	db := ldbOpen(t)
	ldbWrite(t, db, func(tx *Tx) error {
		ldbInsertAs(t, tx, "mock_projects", map[string]any{"id": "pSynced"}, "synced")
		ldbInsertAs(t, tx, "mock_tasks", map[string]any{"id": "tSynced"}, "synced")
		return nil
	})
	pull := stPullChanges(stChangeSet(map[string]melonsync.TableChanges{
		"mock_projects": {
			Created: []melonsync.RawRecord{{"id": "new_project", "name": "remote"}},
			Updated: []melonsync.RawRecord{{"id": "pSynced", "name": "remote"}},
		},
		"mock_tasks": {Deleted: []string{"tSynced"}},
	}), 1500)
	if err := Synchronize(context.Background(), db, SyncOptions{PullChanges: pull.Pull, PushChanges: (&stPusher{}).Push}); err != nil {
		t.Fatal(err)
	}
	if c := pull.Calls()[0]; c.LastPulledAt != nil || c.SchemaVersion != 1 || c.Migration != nil {
		t.Errorf("pull args %+v", c)
	}
	stExpectNoLocalChanges(t, db)
	ldbExpectMatches(t, db, "mock_projects", "new_project", map[string]any{"name": "remote"})
	ldbExpectMatches(t, db, "mock_projects", "pSynced", map[string]any{"name": "remote"})
	ldbExpectMissing(t, db, "mock_tasks", "tSynced")
}

func TestSyncWithConflicts(t *testing.T) {
	db := ldbOpen(t)
	local := ldbMakeLocalChanges(t, db)
	tUpdatedInitial, cUpdatedInitial := local["tUpdated"], local["cUpdated"]
	pull := stPullChanges(stChangeSet(map[string]melonsync.TableChanges{
		"mock_projects": {
			Created: []melonsync.RawRecord{{"id": "pCreated1", "name": "remote"}}, // exists: update
			Deleted: []string{"pUpdated", "does_not_exist", "pDeleted"},
		},
		"mock_tasks": {Updated: []melonsync.RawRecord{
			{"id": "tUpdated", "name": "remote", "description": "remote"}, // conflict: stays updated
			{"id": "tDeleted", "body": "remote"},                          // locally deleted: ignored
		}},
		"mock_comments": {Created: []melonsync.RawRecord{
			{"id": "cUpdated", "body": "remote", "task_id": "remote"}, // exists: resolved, stays updated
		}},
	}), 1500)
	push := &stPusher{}
	log := &SyncLog{}
	if err := Synchronize(context.Background(), db, SyncOptions{PullChanges: pull.Pull, PushChanges: push.Push, Log: log}); err != nil {
		t.Fatal(err)
	}
	calls := push.Calls()
	if len(calls) != 1 {
		t.Fatalf("push called %d times", len(calls))
	}
	pushed := calls[0].Changes
	for _, r := range pushed["mock_projects"].Created {
		if r["id"] == "pCreated1" && r["name"] != "remote" {
			t.Errorf("pCreated1 pushed with name %v, want the merged remote name", r["name"])
		}
	}
	if slicesContain(pushed["mock_projects"].Deleted, "pDeleted") {
		t.Error("pDeleted was pushed although the server deleted it")
	}
	tUpdatedResolved := map[string]any{"id": "tUpdated", "name": "local", "position": 100.0, "is_completed": false,
		"description": "remote", "project_id": "orig", "project_section_id": nil, "_status": "updated", "_changed": "name,position"}
	if !containsRecord(pushed["mock_tasks"].Updated, tUpdatedResolved) {
		t.Errorf("pushed tasks.updated %v does not hold the resolved tUpdated %v", pushed["mock_tasks"].Updated, tUpdatedResolved)
	}
	if !slicesContain(pushed["mock_tasks"].Deleted, "tDeleted") {
		t.Error("tDeleted was not pushed")
	}
	cUpdatedResolved := map[string]any{"id": "cUpdated", "body": "local", "task_id": "remote", "created_at": 1000.0, "updated_at": 2000.0, "_status": "updated", "_changed": "body"}
	if !containsRecord(pushed["mock_comments"].Updated, cUpdatedResolved) {
		t.Errorf("pushed comments.updated %v does not hold the resolved cUpdated", pushed["mock_comments"].Updated)
	}

	ldbExpectMatches(t, db, "mock_projects", "pCreated1", map[string]any{"name": "remote"})
	ldbExpectMissing(t, db, "mock_projects", "pUpdated")
	ldbExpectMissing(t, db, "mock_projects", "pDeleted")
	ldbExpectMatches(t, db, "mock_tasks", "tUpdated", map[string]any{"name": "local", "description": "remote"})
	ldbExpectMissing(t, db, "mock_tasks", "tDeleted")
	ldbExpectMatches(t, db, "mock_comments", "cUpdated", map[string]any{"body": "local", "task_id": "remote"})
	stExpectNoLocalChanges(t, db)

	if log.RemoteChangeCount != 7 {
		t.Errorf("remoteChangeCount %d, want 7", log.RemoteChangeCount)
	}
	if len(log.ResolvedConflicts) != 2 {
		t.Fatalf("resolved conflicts %v, want tUpdated and cUpdated", log.ResolvedConflicts)
	}
	tc, cc := log.ResolvedConflicts[0], log.ResolvedConflicts[1]
	if tc.Table != "mock_tasks" || !cmp.Equal(tc.Local, tUpdatedInitial) || !cmp.Equal(tc.Remote, Record{"id": "tUpdated", "name": "remote", "description": "remote"}) {
		t.Errorf("first conflict %+v", tc)
	}
	ldbMatch(t, tc.Resolved, withStatus(tUpdatedResolved, "updated"))
	if !sameColumns(tc.Resolved["_changed"], "name,position") {
		t.Errorf("resolved tUpdated _changed %v", tc.Resolved["_changed"])
	}
	if cc.Table != "mock_comments" || !cmp.Equal(cc.Local, cUpdatedInitial) || !cmp.Equal(cc.Remote, Record{"id": "cUpdated", "body": "remote", "task_id": "remote"}) {
		t.Errorf("second conflict %+v", cc)
	}
	ldbMatch(t, cc.Resolved, withStatus(cUpdatedResolved, "updated"))
}

func withStatus(r map[string]any, status string) map[string]any {
	out := cloneRec(r)
	out["_status"] = status
	return out
}

func sameColumns(changed any, want string) bool {
	s, _ := changed.(string)
	a, b := strings.Split(s, ","), strings.Split(want, ",")
	sort.Strings(a)
	sort.Strings(b)
	return cmp.Equal(a, b)
}

func slicesContain(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func containsRecord(list []melonsync.RawRecord, want map[string]any) bool {
	for _, r := range list {
		if cmp.Equal(map[string]any(r), want) {
			return true
		}
	}
	return false
}

func TestSyncCustomConflictResolver(t *testing.T) {
	db := ldbOpen(t)
	ldbWrite(t, db, func(tx *Tx) error {
		ldbInsertAs(t, tx, "mock_projects", map[string]any{"id": "p1", "name": "local"}, "synced")
		ldbInsertAs(t, tx, "mock_projects", map[string]any{"id": "p2", "name": "local"}, "created")
		ldbInsertAs(t, tx, "mock_tasks", map[string]any{"id": "t1"}, "synced")
		ldbInsertAs(t, tx, "mock_tasks", map[string]any{"id": "t2"}, "created")
		ldbInsertAs(t, tx, "mock_tasks", map[string]any{"id": "t3"}, "synced")
		return tx.Update("mock_tasks", "t3", map[string]any{"name": "local"})
	})
	type call struct {
		table                   string
		local, remote, resolved Record
	}
	var mu sync.Mutex
	var calls []call
	resolver := func(table string, local, remote, resolved Record) Record {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, call{table, local, remote, resolved})
		if table == "mock_tasks" {
			resolved["name"] = "GOTCHA"
		}
		return resolved
	}
	pull := stPullChanges(stChangeSet(map[string]melonsync.TableChanges{
		"mock_projects": {
			Created: []melonsync.RawRecord{{"id": "p2", "name": "remote"}},
			Updated: []melonsync.RawRecord{{"id": "p1", "name": "change"}},
		},
		"mock_tasks": {Updated: []melonsync.RawRecord{{"id": "t1", "name": "remote"}, {"id": "t3", "name": "remote"}}},
	}), 1500)
	if err := Synchronize(context.Background(), db, SyncOptions{PullChanges: pull.Pull, PushChanges: (&stPusher{}).Push, ConflictResolver: resolver}); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 4 {
		t.Fatalf("resolver called %d times, want 4", len(calls))
	}
	ldbMatch(t, calls[0].local, map[string]any{"id": "p2", "_status": "created", "name": "local"})
	ldbMatch(t, calls[0].remote, map[string]any{"name": "remote"})
	ldbMatch(t, calls[0].resolved, map[string]any{"name": "remote"})
	ldbMatch(t, calls[1].local, map[string]any{"id": "p1", "_status": "synced"})
	ldbMatch(t, calls[1].remote, map[string]any{"name": "change"})
	ldbMatch(t, calls[1].resolved, map[string]any{"_status": "synced"})
	if calls[0].table != "mock_projects" || calls[1].table != "mock_projects" || calls[2].table != "mock_tasks" {
		t.Errorf("tables %s %s %s", calls[0].table, calls[1].table, calls[2].table)
	}
	ldbMatch(t, calls[2].local, map[string]any{"id": "t1", "_status": "synced", "name": ""})
	ldbMatch(t, calls[2].remote, map[string]any{"name": "remote"})
	ldbMatch(t, calls[2].resolved, map[string]any{"name": "GOTCHA"})
	ldbExpectMatches(t, db, "mock_tasks", "t1", map[string]any{"name": "GOTCHA"})
	ldbExpectMatches(t, db, "mock_tasks", "t3", map[string]any{"name": "GOTCHA"})
	stExpectNoLocalChanges(t, db)
}

func TestSyncRemembersLastPulledAt(t *testing.T) {
	db := ldbOpen(t)
	pull := stEmptyPull(1500)
	if err := Synchronize(context.Background(), db, SyncOptions{PullChanges: pull.Pull, PushChanges: (&stPusher{}).Push}); err != nil {
		t.Fatal(err)
	}
	if c := pull.Calls()[0]; c.LastPulledAt != nil {
		t.Errorf("first pull lastPulledAt %v", *c.LastPulledAt)
	}
	pull2 := stEmptyPull(2500)
	log := &SyncLog{}
	if err := Synchronize(context.Background(), db, SyncOptions{PullChanges: pull2.Pull, PushChanges: (&stPusher{}).Push, Log: log}); err != nil {
		t.Fatal(err)
	}
	calls := pull2.Calls()
	if len(calls) != 1 || calls[0].LastPulledAt == nil || *calls[0].LastPulledAt != 1500 || calls[0].SchemaVersion != 1 {
		t.Fatalf("second pull %+v", calls)
	}
	if v := stLastPulledAt(t, db); v == nil || *v != 2500 {
		t.Errorf("lastPulledAt %v", v)
	}
	if *log.LastPulledAt != 1500 || *log.NewLastPulledAt != 2500 {
		t.Errorf("log %v → %v", *log.LastPulledAt, *log.NewLastPulledAt)
	}
	if v, _ := stGetLocal(t, db, melonsync.KeyLastPulledAt); v != "2500" {
		t.Errorf("%s = %q, want \"2500\"", melonsync.KeyLastPulledAt, v)
	}
}

func TestSyncValidatesTimestamp(t *testing.T) {
	for _, ts := range []int64{0, -5} {
		db := ldbOpen(t)
		err := Synchronize(context.Background(), db, SyncOptions{PullChanges: stEmptyPull(ts).Pull, PushChanges: (&stPusher{}).Push})
		if !errors.Is(err, ErrInvalidData) || !strings.Contains(err.Error(), "pullChanges() returned invalid timestamp") {
			t.Errorf("timestamp %d: %v", ts, err)
		}
		if v := stLastPulledAt(t, db); v != nil {
			t.Errorf("lastPulledAt %d saved", *v)
		}
	}
}

func TestSyncRecoversFromPullFailure(t *testing.T) {
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	time.Sleep(20 * time.Millisecond)
	observed := stObserve(t, db)
	failure := errors.New("pull-fail")
	pull := &stPuller{fn: func(context.Context, PullArgs) (*PullResult, error) { return nil, failure }}
	push := &stPusher{}
	log := &SyncLog{}
	err := Synchronize(context.Background(), db, SyncOptions{PullChanges: pull.Pull, PushChanges: push.Push, Log: log})
	if !errors.Is(err, failure) {
		t.Fatalf("error %v, want pull-fail", err)
	}
	time.Sleep(50 * time.Millisecond)
	if observed.Load() != 0 || len(pull.Calls()) != 1 || len(push.Calls()) != 0 {
		t.Errorf("notifications %d, pulls %d, pushes %d", observed.Load(), len(pull.Calls()), len(push.Calls()))
	}
	if v := stLastPulledAt(t, db); v != nil {
		t.Errorf("lastPulledAt %d", *v)
	}
	if log.Phase != PhaseReadyToPull || !errors.Is(log.Error, failure) {
		t.Errorf("log phase %q error %v", log.Phase, log.Error)
	}
}

func TestSyncRecoversFromPushFailure(t *testing.T) {
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	before := stLocalChanges(t, db)
	time.Sleep(20 * time.Millisecond)
	observed := stObserve(t, db)
	pull := stPullChanges(stChangeSet(map[string]melonsync.TableChanges{
		"mock_projects": {Created: []melonsync.RawRecord{{"id": "new_project", "name": "remote"}}},
	}), 1500)
	failure := errors.New("push-fail")
	push := &stPusher{fn: func(context.Context, melonsync.PushRequest) (*melonsync.PushResponse, error) { return nil, failure }}
	err := Synchronize(context.Background(), db, SyncOptions{PullChanges: pull.Pull, PushChanges: push.Push})
	if !errors.Is(err, failure) {
		t.Fatalf("error %v", err)
	}
	calls := push.Calls()
	if len(calls) != 1 || calls[0].LastPulledAt != 1500 || !cmp.Equal(calls[0].Changes, before) {
		t.Errorf("push calls %v", calls)
	}
	if diff := cmp.Diff(before, stLocalChanges(t, db)); diff != "" {
		t.Errorf("local changes changed after a failed push:\n%s", diff)
	}
	if v := stLastPulledAt(t, db); v == nil || *v != 1500 {
		t.Errorf("lastPulledAt %v, want 1500 (the pull succeeded)", v)
	}
	time.Sleep(50 * time.Millisecond)
	if observed.Load() != 1 {
		t.Errorf("%d notifications, want 1 (the applied pull)", observed.Load())
	}
	ldbExpectMatches(t, db, "mock_projects", "new_project", map[string]any{"name": "remote"})
}

func TestSyncSafelyHandlesLocalChangesDuringSync(t *testing.T) {
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	before := stLocalChanges(t, db)
	pull := stPullChanges(stChangeSet(map[string]melonsync.TableChanges{
		"mock_projects": {Created: []melonsync.RawRecord{{"id": "new_project", "name": "remote"}}},
	}), 1500)
	ctx := context.Background()
	create := func(name string) Record {
		var r Record
		if err := db.Write(ctx, func(tx *Tx) error {
			var err error
			r, err = tx.Create("mock_projects", map[string]any{"name": name})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return r
	}
	var project1, project2, project3 Record
	push := &stPusher{}
	push.fn = func(context.Context, melonsync.PushRequest) (*melonsync.PushResponse, error) {
		// between fetching local changes and marking them as synced
		ldbExpectMatches(t, db, "mock_projects", "new_project", nil)
		project3 = create("project3")
		return nil, nil
	}
	opts := SyncOptions{
		PullChanges: pull.Pull, PushChanges: push.Push,
		OnWillApplyRemoteChanges: func(context.Context, RemoteChangeInfo) error {
			// before applying remote changes
			ldbExpectMissing(t, db, "mock_projects", "new_project")
			project1 = create("project1")
			return nil
		},
		OnDidPullChanges: func(context.Context, PulledInfo) error {
			// between applying and fetching local changes
			ldbExpectMatches(t, db, "mock_projects", "new_project", nil)
			if len(push.Calls()) != 0 {
				t.Error("pushed before the remote changes were applied")
			}
			project2 = create("project2")
			return nil
		},
	}
	if err := Synchronize(ctx, db, opts); err != nil {
		t.Fatal(err)
	}
	ldbExpectMatches(t, db, "mock_projects", "new_project", nil)
	pushed := push.Calls()[0].Changes
	want := stClone(before)
	strip := func(r Record) melonsync.RawRecord { return cloneRec(r) }
	want["mock_projects"].Created = append(want["mock_projects"].Created, strip(project1), strip(project2))
	if diff := cmp.Diff(stSummary(want), stSummary(pushed)); diff != "" {
		t.Errorf("pushed (-want +got):\n%s", diff)
	}
	left := stLocalChanges(t, db)
	if diff := cmp.Diff(map[string][]string{"mock_projects": {"+" + project3["id"].(string)}}, stSummary(left)); diff != "" {
		t.Errorf("left to push (-want +got):\n%s", diff)
	}
	if has, err := db.HasUnsyncedChanges(ctx); err != nil || !has {
		t.Errorf("HasUnsyncedChanges = %v, %v", has, err)
	}
}

func TestSyncSafelyUpdatesCreatedRecordsDuringPush(t *testing.T) {
	db := ldbOpen(t)
	ctx := context.Background()
	ldbWrite(t, db, func(tx *Tx) error {
		_, err := tx.Create("mock_tasks", map[string]any{"id": "t1", "name": "Task name", "position": 1.0, "is_completed": false, "project_id": "p1"})
		return err
	})
	initial := ldbGetRaw(t, db, "mock_tasks", "t1")
	ldbMatch(t, initial, map[string]any{"_status": "created", "_changed": "", "position": 1.0, "is_completed": false})
	push := func(context.Context, melonsync.PushRequest) (*melonsync.PushResponse, error) {
		// The user changes the record between fetch and mark as synced.
		return nil, db.Write(ctx, func(tx *Tx) error {
			return tx.Update("mock_tasks", "t1", map[string]any{"is_completed": true, "position": 20.0})
		})
	}
	if err := Synchronize(ctx, db, SyncOptions{PullChanges: stEmptyPull(1000).Pull, PushChanges: push}); err != nil {
		t.Fatal(err)
	}
	r := ldbGetRaw(t, db, "mock_tasks", "t1")
	ldbMatch(t, r, map[string]any{"_status": "created", "position": 20.0, "is_completed": true})
	if !sameColumns(r["_changed"], "is_completed,position") {
		t.Errorf("_changed %v", r["_changed"])
	}
	// The server sends back the record as first pushed.
	served := cloneRec(initial)
	delete(served, "_status")
	delete(served, "_changed")
	pull := stPullChanges(stChangeSet(map[string]melonsync.TableChanges{"mock_tasks": {Updated: []melonsync.RawRecord{served}}}), 1500)
	push2 := func(context.Context, melonsync.PushRequest) (*melonsync.PushResponse, error) {
		r := ldbGetRaw(t, db, "mock_tasks", "t1")
		if r["_status"] != "created" || !sameColumns(r["_changed"], "is_completed,position") {
			t.Errorf("during the second push: %v", r)
		}
		return nil, nil
	}
	if err := Synchronize(ctx, db, SyncOptions{PullChanges: pull.Pull, PushChanges: push2}); err != nil {
		t.Fatal(err)
	}
	ldbExpectMatches(t, db, "mock_tasks", "t1", map[string]any{"position": 20.0, "is_completed": true})
}

func TestSyncRequiresPullChanges(t *testing.T) {
	db := ldbOpen(t)
	err := Synchronize(context.Background(), db, SyncOptions{})
	if !errors.Is(err, ErrProgrammer) {
		t.Fatalf("error %v", err)
	}
	if ErrorCode(err) != "SYNC_ERROR_PROGRAMMER" {
		t.Errorf("code %q", ErrorCode(err))
	}
}

func TestSyncReportsOnDidPullChanges(t *testing.T) {
	db := ldbOpen(t)
	var got []PulledInfo
	pull := &stPuller{fn: func(context.Context, PullArgs) (*PullResult, error) {
		return DecodePullResponse(context.Background(), strings.NewReader(`{"changes": {}, "timestamp": 1000, "hello": "hi"}`))
	}}
	err := Synchronize(context.Background(), db, SyncOptions{PullChanges: pull.Pull, OnDidPullChanges: func(_ context.Context, info PulledInfo) error {
		got = append(got, info)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Timestamp != 1000 || string(got[0].Extra["hello"]) != `"hi"` {
		t.Errorf("onDidPullChanges got %+v", got)
	}
}
