package http_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/server/storetest"
)

// bigPush returns a push body of n created tasks, then tail after the tasks array.
func bigPush(n int, tail string) []byte {
	var b bytes.Buffer
	b.WriteString(`{"lastPulledAt":0,"changes":{"tasks":{"created":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"t%d","project_id":"p1","name":"Task %d","is_done":false,"position":%d}`, i, i, i)
	}
	b.WriteString(`]` + tail)
	return b.Bytes()
}

// TestStreamedPushBodies: pushes decoded as their bodies stream in (larger than the
// spool's memory, so spooled to a file; plain and gzipped) are answered as
// server.DecodePush answers their bytes: applied when good, and refused with the
// same message when not, even when what is wrong comes after megabytes of good
// records. The limit still answers 413, and no spool file is left behind.
func TestStreamedPushBodies(t *testing.T) {
	dir := t.TempDir()
	e := newEnvWith(t, mhttp.Options{MaxBodyBytes: 8 << 20, SpoolDir: dir, SpoolMemory: 64 << 10,
		Limits: mhttp.Limits{LargeBody: 256 << 10}}, nil)
	sch := storetest.TodoSchema(t)
	good := bigPush(8000, `}}}`)
	cases := []struct {
		name string
		body []byte
	}{
		{"good", good},
		{"cut short", good[:len(good)-2]},
		{"trailing garbage", append(append([]byte{}, good...), " x"...)},
		{"bad record at the end", bigPush(8000, `,"updated":[{"id":"bad id"}]}}}`)},
		{"duplicate id", bigPush(8000, `,"deleted":["t5"]}}}`)},
		{"number out of range", bigPush(8000, `,"updated":[{"id":"x","position":1e400}]}}}`)},
		{"lastPulledAt after the changes", bytes.Replace(bigPush(8000, `}},"lastPulledAt":-1}`), []byte(`"lastPulledAt":0,`), nil, 1)},
		{"changes not an object", []byte(`{"lastPulledAt":0,"changes":[` + strings.Repeat(`1,`, 200_000) + `1]}`)},
	}
	for i, c := range cases {
		for _, zip := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s gzip=%v", c.name, zip), func(t *testing.T) {
				user := fmt.Sprintf("u%d%v", i, zip)
				hdr := e.as(user)
				// Ids are global: each user pushes its own.
				raw := bytes.ReplaceAll(c.body, []byte(`"id":"t`), []byte(`"id":"`+user+`t`))
				body := raw
				if zip {
					hdr["Content-Encoding"] = "gzip"
					body = gz(body)
				}
				r := e.do("POST", "/api/sync/push", hdr, body)
				_, want := server.DecodePush(sch, raw)
				if want == nil {
					if r.status != 200 {
						t.Fatalf("%d %s", r.status, r.body)
					}
					pr := e.do("POST", "/api/sync/pull", e.as(user), []byte(`{"lastPulledAt":null}`))
					if n := bytes.Count(pr.body, []byte(`"project_id"`)); n != 8000 {
						t.Fatalf("pulled %d records, want 8000", n)
					}
					return
				}
				msg := strings.TrimPrefix(want.Error(), "invalid_request: ")
				if r.status != 400 || !strings.Contains(string(r.body), jsonString(msg)) {
					t.Fatalf("%d %s, want 400 with %q", r.status, r.body, msg)
				}
			})
		}
	}
	over := bigPush(150_000, `,"updated":[{"id":"bad id"}]}}}`) // > 8 MB, bad at the end
	for _, zip := range []bool{false, true} {
		hdr, body := e.as("over"), over
		if zip {
			hdr["Content-Encoding"] = "gzip"
			body = gz(over)
		}
		if r := e.do("POST", "/api/sync/push", hdr, body); r.status != 413 {
			t.Fatalf("gzip=%v: a body over the limit: %d %s", zip, r.status, r.body)
		}
	}
	if left, _ := os.ReadDir(dir); len(left) > 0 {
		t.Fatalf("spool files left behind: %v", left)
	}
}

// jsonString is s as it appears inside a JSON string.
func jsonString(s string) string {
	q := fmt.Sprintf("%q", s)
	return q[1 : len(q)-1]
}

// TestFullPushSpoolAnswers507: a large push whose copy cannot be spooled (the disk is
// full) is the server's failure: 507 storage_full, nothing written, /healthz says
// the spool is full; once space is back the same push applies and /healthz is 200.
func TestFullPushSpoolAnswers507(t *testing.T) {
	dir := testutil.SmallDisk(t, 1<<20)
	h := storetest.NewHarness(t, testutil.SQLiteStore(t, t.TempDir()))
	srv := testutil.NewServer(t, h.Svc, mhttp.Options{SpoolDir: dir, SpoolMemory: 1})
	alice := srv.Token(t, "alice")
	body := string(bigPush(2000, `}}}`))
	free := testutil.FillDisk(t, dir)
	a := call(t, "POST", srv.URL+"/api/sync/push", alice, body)
	if a.status != http.StatusInsufficientStorage || errCode(a) != "storage_full" {
		t.Fatalf("push with a full spool: %d %v; want 507 storage_full", a.status, a.body)
	}
	if c, _, _ := h.Pull(server.Caller{User: "alice"}, server.PullParams{}).Changes.Count(); c != 0 {
		t.Fatalf("%d records written by a refused push", c)
	}
	hz := call(t, "GET", srv.URL+"/healthz", "", "")
	if full, _ := hz.body["full"].(map[string]any); hz.status != 503 || full["spool"] == nil {
		t.Fatalf("/healthz with a full spool: %d %v", hz.status, hz.body)
	}
	free()
	if a := call(t, "POST", srv.URL+"/api/sync/push", alice, body); a.status != 200 {
		t.Fatalf("push once space is back: %d %v", a.status, a.body)
	}
	if hz := call(t, "GET", srv.URL+"/healthz", "", ""); hz.status != 200 {
		t.Fatalf("/healthz after a spooled push succeeded: %d %v", hz.status, hz.body)
	}
}
