package client

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/melonsync/melonsync"
)

// TestSyncLogRecordsConflictsAndRejections: the log of a sync holds its counts, the
// conflicts it resolved (local, remote and result) and the ids the server refused.
func TestSyncLogRecordsConflictsAndRejections(t *testing.T) {
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	local := stLocalChanges(t, db)
	wantLocal := 0
	for _, tc := range local {
		wantLocal += len(tc.Created) + len(tc.Updated) + len(tc.Deleted)
	}
	pull := stPullChanges(stChangeSet(map[string]melonsync.TableChanges{
		"mock_tasks":    {Updated: []melonsync.RawRecord{{"id": "tUpdated", "name": "remote name", "description": "remote description"}}},
		"mock_projects": {Created: []melonsync.RawRecord{{"id": "fresh", "name": "from the server"}}},
	}), 1500)
	push := &stPusher{fn: func(context.Context, melonsync.PushRequest) (*melonsync.PushResponse, error) {
		return &melonsync.PushResponse{OK: true, RejectedIDs: map[string][]string{"mock_tasks": {"tCreated"}}}, nil
	}}
	log := &SyncLog{}
	if err := Synchronize(context.Background(), db, SyncOptions{PullChanges: pull.Pull, PushChanges: push.Push, Log: log}); err != nil {
		t.Fatal(err)
	}
	if log.Phase != PhaseDone || log.Error != nil || log.Attempts > 1 {
		t.Errorf("phase %q error %v attempts %d", log.Phase, log.Error, log.Attempts)
	}
	if log.RemoteChangeCount != 2 || log.LocalChangeCount != wantLocal {
		t.Errorf("remote %d (want 2), local %d (want %d)", log.RemoteChangeCount, log.LocalChangeCount, wantLocal)
	}
	if len(log.ResolvedConflicts) != 1 {
		t.Fatalf("resolved conflicts %+v", log.ResolvedConflicts)
	}
	rc := log.ResolvedConflicts[0]
	if rc.Table != "mock_tasks" || rc.Local["id"] != "tUpdated" || rc.Remote["name"] != "remote name" {
		t.Errorf("conflict %+v", rc)
	}
	// tUpdated changed "name" locally: the local name wins, the description is the server's.
	if rc.Resolved["name"] != rc.Local["name"] || rc.Resolved["description"] != "remote description" {
		t.Errorf("resolved %v (local %v)", rc.Resolved, rc.Local)
	}
	if got := log.RejectedIDs["mock_tasks"]; len(got) != 1 || got[0] != "tCreated" {
		t.Errorf("rejected ids %v", log.RejectedIDs)
	}
	if r := ldbGetRaw(t, db, "mock_tasks", "tCreated"); r == nil || r["_status"] != StatusCreated {
		t.Errorf("a rejected record must stay unsynced: %v", r)
	}
}

// TestSyncLogRecordsTheError: a failed sync's log holds the error and stops at the
// phase that failed.
func TestSyncLogRecordsTheError(t *testing.T) {
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	failing := &stPusher{fn: func(context.Context, melonsync.PushRequest) (*melonsync.PushResponse, error) {
		return nil, &SyncError{Kind: KindServer, Op: "push", Status: 500, Message: "boom"}
	}}
	log := &SyncLog{}
	err := Synchronize(context.Background(), db, SyncOptions{PullChanges: stEmptyPull(10).Pull, PushChanges: failing.Push, Log: log})
	if !errors.Is(err, ErrServer) {
		t.Fatalf("sync: %v", err)
	}
	if log.Error == nil || !errors.Is(log.Error, ErrServer) || log.Phase == PhaseDone {
		t.Errorf("error %v phase %q", log.Error, log.Phase)
	}
	// As in WatermelonDB, only a sync that completes gets a finish time.
	if !log.FinishedAt.IsZero() || log.StartedAt.IsZero() {
		t.Errorf("startedAt %v finishedAt %v", log.StartedAt, log.FinishedAt)
	}
	if log.NewLastPulledAt == nil || *log.NewLastPulledAt != 10 {
		t.Errorf("the pull succeeded, newLastPulledAt %v", log.NewLastPulledAt)
	}
	b, _ := json.Marshal(log)
	var m map[string]any
	json.Unmarshal(b, &m)
	if m["errorCode"] != "SYNC_ERROR_SERVER" || !strings.Contains(m["error"].(string), "boom") {
		t.Errorf("log JSON %s", b)
	}
}

func TestSyncLogJSONAndCensoring(t *testing.T) {
	lpa := int64(7)
	log := &SyncLog{Phase: PhaseDone, LastPulledAt: &lpa, RemoteChangeCount: 3, LocalChangeCount: 1,
		RejectedIDs: map[string][]string{"tasks": {"t1"}},
		ResolvedConflicts: []ResolvedConflict{{Table: "tasks",
			Local:    Record{"id": "t1", "name": "Secret plan", "project_id": "p1", "_status": "updated", "_changed": "name", "n": 5.0},
			Remote:   Record{"id": "t1", "name": "Other plan"},
			Resolved: Record{"id": "t1", "name": "Secret plan"}}},
	}
	b, err := json.Marshal(log)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"phase":"done"`, `"lastPulledAt":7`, `"remoteChangeCount":3`, `"localChangeCount":1`, `"rejectedIds":{"tasks":["t1"]}`, `"resolvedConflicts":[`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("log JSON lacks %s: %s", key, b)
		}
	}
	c := log.Censored()
	got := c.ResolvedConflicts[0].Local
	if got["name"] != "Se***an(11)" || got["id"] != "t1" || got["project_id"] != "p1" || got["_changed"] != "name" || got["n"] != 5.0 {
		t.Errorf("censored %v", got)
	}
	if log.ResolvedConflicts[0].Local["name"] != "Secret plan" {
		t.Error("Censored changed the log itself")
	}
	for in, want := range map[string]string{"Hello": "He***lo(5)", "ab": "ab***ab(2)", "": "***(0)", "żółwik": "żó***ik(6)"} {
		if got := CensorValue(in); got != want {
			t.Errorf("CensorValue(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSyncLoggerKeepsTheLastLogs(t *testing.T) {
	sl := NewSyncLogger(3)
	if sl.Last() != nil {
		t.Fatal("a new logger has a last log")
	}
	db := ldbOpen(t)
	for i := int64(1); i <= 5; i++ {
		l := sl.NewLog()
		if err := Synchronize(context.Background(), db, SyncOptions{PullChanges: stEmptyPull(i * 100).Pull, Log: l}); err != nil {
			t.Fatal(err)
		}
	}
	logs := sl.Logs()
	if len(logs) != 3 {
		t.Fatalf("%d logs kept, want 3", len(logs))
	}
	for i, l := range logs {
		if want := int64(300 + 100*i); l.NewLastPulledAt == nil || *l.NewLastPulledAt != want {
			t.Errorf("log %d: newLastPulledAt %v, want %d", i, l.NewLastPulledAt, want)
		}
	}
	if last := sl.Last(); last == nil || *last.NewLastPulledAt != 500 {
		t.Errorf("last log %+v", last)
	}
	if s := sl.String(); !strings.Contains(s, `"newLastPulledAt": 500`) {
		t.Errorf("formatted logs: %s", s)
	}
}
