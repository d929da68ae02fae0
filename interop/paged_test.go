package interop

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// firstSync is what firstsync.mjs reports.
type firstSync struct {
	Records        int     `json:"records"`
	Rounds         int     `json:"rounds"`
	Seconds        float64 `json:"seconds"`
	PeakRSS        int64   `json:"peakRSS"`
	Largest        int     `json:"largest"`
	MaxPage        int     `json:"maxPage"`
	ProgressReport int     `json:"progressReports"`
	Progress       []struct {
		Pulled    int  `json:"pulled"`
		Remaining int  `json:"remaining"`
		HasMore   bool `json:"hasMore"`
	} `json:"progress"`
	Logs   []map[string]string `json:"logs"`
	Digest string              `json:"digest"`
}

func runFirstSync(t *testing.T, srv *server, token string, pageSize int) firstSync {
	t.Helper()
	args := []string{"firstsync.mjs", srv.url(), token, filepath.Join("..", "examples", "todo", "schema.json")}
	if pageSize > 0 {
		args = append(args, fmt.Sprint(pageSize))
	}
	out, err := exec.Command("node", args...).Output()
	if err != nil {
		t.Fatalf("node %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	var r firstSync
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		t.Fatalf("firstsync.mjs printed %q: %v", out, err)
	}
	return r
}

// TestPagedFirstSync: the real WatermelonDB client syncs 100k records in pages of 5k
// through the js/ helper's syncAll; each answer stays small, and the result equals an
// unpaged first sync.
func TestPagedFirstSync(t *testing.T) {
	requireNode(t)
	if testing.Short() {
		t.Skip("100k records: not in -short mode")
	}
	srv, err := startServer(t, filepath.Join(t.TempDir(), "paged.db"))
	if err != nil {
		t.Fatal(err)
	}
	token := srv.token("alice")
	const total, perPush, pageSize = 100_000, 1_000, 5_000
	for p := 0; p < total/perPush; p++ {
		var b bytes.Buffer
		b.WriteString(`{"lastPulledAt":0,"changes":{"tasks":{"created":[`)
		for i := 0; i < perPush; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			n := p*perPush + i
			fmt.Fprintf(&b, `{"id":"task%06d","project_id":"p%d","name":"Task number %d","is_done":%t,"position":%d}`, n, n%50, n, n%3 == 0, n)
		}
		b.WriteString(`]}}}`)
		req, _ := http.NewRequest("POST", srv.url()+"/api/sync/push", &b)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("X-Melon-Device", "seeder")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("seeding push %d: %s", p, res.Status)
		}
	}

	whole := runFirstSync(t, srv, token, 0)
	paged := runFirstSync(t, srv, token, pageSize)
	t.Logf("unpaged: %d records, %d round, %.2f s, peak RSS %d MiB, largest answer %d KiB",
		whole.Records, whole.Rounds, whole.Seconds, whole.PeakRSS>>20, whole.Largest>>10)
	t.Logf("paged (%d): %d records, %d rounds, %.2f s, peak RSS %d MiB, largest answer %d KiB, progress %+v",
		pageSize, paged.Records, paged.Rounds, paged.Seconds, paged.PeakRSS>>20, paged.Largest>>10, paged.Progress)
	for name, r := range map[string]firstSync{"unpaged": whole, "paged": paged} {
		if r.Records != total {
			t.Errorf("%s: the device holds %d records, want %d", name, r.Records, total)
		}
		if len(r.Logs) > 0 {
			t.Errorf("%s: WatermelonDB logged %d errors or warnings, first: %v", name, len(r.Logs), r.Logs[0])
		}
	}
	if paged.Digest != whole.Digest {
		t.Errorf("the paged result differs from the unpaged one")
	}
	if paged.Rounds != total/pageSize || paged.MaxPage > pageSize {
		t.Errorf("paged: %d rounds with up to %d records, want %d rounds of at most %d", paged.Rounds, paged.MaxPage, total/pageSize, pageSize)
	}
	if paged.Largest*10 > whole.Largest {
		t.Errorf("paged answers up to %d bytes, not far below the unpaged %d", paged.Largest, whole.Largest)
	}
	if len(paged.Progress) == 0 || paged.Progress[0].Remaining != total-pageSize || paged.Progress[len(paged.Progress)-1].HasMore {
		t.Errorf("progress reports %+v: want remaining %d after the first page and hasMore false at the end", paged.Progress, total-pageSize)
	}
}
