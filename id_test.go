package melonsync_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/melonsync/melonsync"
)

// ValidID agrees with the regexp it documents, on edge cases and on every byte.
func TestValidID(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	cases := []string{"", "a", "A-Z_0.9", strings.Repeat("x", 64), strings.Repeat("x", 65), "a b", "é", "a/b", "a\x00", "-", "..", "id\n"}
	for c := 0; c < 256; c++ {
		cases = append(cases, "x"+string(rune(c)), string([]byte{byte(c)}))
	}
	for _, id := range cases {
		if got, want := melonsync.ValidID(id), re.MatchString(id); got != want {
			t.Errorf("ValidID(%q) = %v, want %v", id, got, want)
		}
	}
}

func BenchmarkValidID(b *testing.B) {
	for i := 0; i < b.N; i++ {
		melonsync.ValidID("tsk_01HZX3YQ8V2M5N7P9R4T6W8Y0A")
	}
}
