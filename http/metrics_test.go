package http_test

import (
	"io"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/server/storetest"
	"github.com/melonsync/melonsync/sqlite"
)

func TestMetrics(t *testing.T) {
	store, err := sqlite.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	h := storetest.NewHarness(t, store)
	m := mhttp.NewMetrics(nil)
	srv := testutil.NewServer(t, h.Svc, mhttp.Options{Metrics: m})
	e := &env{t: t, srv: srv.Server, auth: srv.Auth, store: store}
	e.do("POST", "/api/sync/push", e.as("alice"), []byte(`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"a"},{"id":"b"}],"deleted":["c"]}}}`))
	e.do("POST", "/api/sync/push", e.as("bob"), []byte(`{"lastPulledAt":0,"changes":{"projects":{"updated":[{"id":"a"}]}}}`))
	other := e.as("alice")
	other["X-Melon-Device"] = "another-device"
	e.do("POST", "/api/sync/push", other, []byte(`{"lastPulledAt":0,"changes":{"projects":{"updated":[{"id":"a"}]}}}`))
	e.do("POST", "/api/sync/pull", nil, nil)
	// Request metrics are recorded after the answer is sent: give them a moment.
	var body []byte
	for i := 0; i < 100; i++ {
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		body, _ = io.ReadAll(rec.Body)
		if strings.Contains(string(body), `route="/api/sync/pull",status="401"} 1`) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, want := range []string{
		`melonsync_records_total{kind="created"} 2`,
		`melonsync_records_total{kind="deleted"} 1`,
		`melonsync_records_total{kind="rejected"} 1`,
		`melonsync_records_total{kind="conflict"} 1`,
		`melonsync_requests_total{route="/api/sync/push",status="200"} 2`,
		`melonsync_requests_total{route="/api/sync/push",status="409"} 1`,
		`melonsync_requests_total{route="/api/sync/pull",status="401"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
