package http_test

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"

	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/internal/testutil"
)

// TestMessagesNameParametersAsSent: a refused URL parameter is named the way the
// caller wrote it (?since=…, ?schemaVersion=…), not by the server's own name for it.
func TestMessagesNameParametersAsSent(t *testing.T) {
	srv := testutil.NewStoreServer(t, testutil.SQLiteStore(t, t.TempDir()), testutil.TodoSchema(t), mhttp.Options{})
	tok := srv.Token(t, "alice")
	for _, c := range []struct{ path, want string }{
		{"/api/sync/pull?since=abc", "since must be empty, null or a non-negative integer"},
		{"/api/sync/pull?lastPulledAt=-1", "lastPulledAt must be empty, null or a non-negative integer"},
		{"/sync?last_pulled_at=x", "last_pulled_at must be empty, null or a non-negative integer"},
		{"/sync?schemaVersion=zero", "schemaVersion must be a positive integer"},
		{"/sync?schema_version=0", "schema_version must be a positive integer"},
		{"/api/sync/pull?since=1&last_pulled_at=2", `last_pulled_at and since are the same parameter, given with different values ("2", "1")`},
	} {
		req, _ := http.NewRequest("GET", srv.URL+c.path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var out struct {
			Error struct{ Code, Message string }
		}
		json.Unmarshal(b, &out)
		if resp.StatusCode != 400 || out.Error.Message != c.want {
			t.Errorf("%s: %d %q, want 400 %q", c.path, resp.StatusCode, out.Error.Message, c.want)
		}
	}
}
