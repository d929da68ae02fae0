package server

import (
	"encoding/json"
	"testing"
)

// BenchmarkDecodePush10k decodes a push of 10,000 created tasks: the one-pass decoder
// (new), the map-based decoder it replaced (ref) and, as the baseline, a plain typed
// encoding/json decode into structs (typed) — what the data costs to read at all.
//
//	go test -run X -bench DecodePush10k -benchmem ./server/
func BenchmarkDecodePush10k(b *testing.B) {
	s := todo(b)
	body := tenThousand(10_000)
	run := func(name string, decode func() error) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := decode(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	run("new", func() error { _, err := DecodePush(s, body); return err })
	run("ref", func() error { _, err := decodePushRef(s, body); return err })
	run("typed", func() error { var p typedPush; return json.Unmarshal(body, &p) })
}

// typedPush is the push of tenThousand as structs.
type typedPush struct {
	LastPulledAt int64 `json:"lastPulledAt"`
	Changes      map[string]struct {
		Created []typedTask `json:"created"`
		Updated []typedTask `json:"updated"`
		Deleted []string    `json:"deleted"`
	} `json:"changes"`
}

type typedTask struct {
	ID          string  `json:"id"`
	ProjectID   string  `json:"project_id"`
	Name        string  `json:"name"`
	IsDone      bool    `json:"is_done"`
	Position    float64 `json:"position"`
	Description *string `json:"description"`
	Status      string  `json:"_status"`
	Changed     string  `json:"_changed"`
}
