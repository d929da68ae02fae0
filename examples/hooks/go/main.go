// Command hook is an example write hook for "melonsync serve --hook-url": it refuses
// tasks whose name is longer than 80 characters and trims the names of the others.
//
//	MELONSYNC_HOOK_SECRET=s3cret go run ./examples/hooks/go   # listens on 127.0.0.1:9090
package main

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"time"

	mhttp "github.com/melonsync/melonsync/http"
)

type record = map[string]any

func main() {
	log.Fatal(http.ListenAndServe("127.0.0.1:9090", hook([]byte(os.Getenv("MELONSYNC_HOOK_SECRET")))))
}

func hook(secret []byte) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /melonsync-hook", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 32<<20))
		if mhttp.VerifyHookSignature(secret, r.Header.Get("X-Melon-Timestamp"), r.Header.Get("X-Melon-Signature"), body, time.Now()) != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized) // the push answers 503
			return
		}
		var push struct {
			Changes map[string]map[string][]json.RawMessage `json:"changes"`
		}
		json.Unmarshal(body, &push)
		rejected, reasons, rewritten := []string{}, map[string]string{}, []record{}
		for _, kind := range []string{"created", "updated"} {
			for _, raw := range push.Changes["tasks"][kind] {
				var t record
				json.Unmarshal(raw, &t)
				id, _ := t["id"].(string)
				name, hasName := t["name"].(string)
				switch {
				case len(name) > 80:
					rejected, reasons[id] = append(rejected, id), "name too long (80 characters at most)"
				case hasName && strings.TrimSpace(name) != name:
					rewritten = append(rewritten, record{"id": id, "name": strings.TrimSpace(name)})
				}
			}
		}
		json.NewEncoder(w).Encode(map[string]any{
			"rejected": map[string][]string{"tasks": rejected},
			"reasons":  reasons,
			"changes":  map[string]any{"tasks": map[string]any{"updated": rewritten}},
		})
	})
	return mux
}
