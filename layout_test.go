package melonsync_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// The README's layout table names every top-level directory and every Go package
// directory under internal/, and every path it names exists.
func TestReadmeLayoutMatchesTheTree(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## Layout\n")
	if i < 0 {
		t.Fatal("README.md has no ## Layout section")
	}
	section := s[i+1:]
	if j := strings.Index(section[3:], "\n## "); j >= 0 {
		section = section[:j+3]
	}
	named := map[string]bool{}
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(section, -1) {
		named[strings.TrimSuffix(m[1], "/")] = true
	}
	covers := func(dir string) bool {
		for p := range named {
			if p == dir || strings.HasPrefix(p, dir+"/") {
				return true
			}
		}
		return false
	}
	for p := range named {
		// Names with a slash or a .go suffix are paths; bare words are paths only
		// when such a directory exists (others are identifiers in the text).
		if strings.HasSuffix(p, ".go") || strings.Contains(p, "/") {
			if _, err := os.Stat(p); err != nil {
				t.Errorf("the layout names %s, which does not exist", p)
			}
		}
	}
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || name == ".git" || name == "node_modules" || name == ".github" {
			continue
		}
		if !covers(name) {
			t.Errorf("directory %s/ is missing from the README's layout table", name)
		}
	}
	sub, _ := os.ReadDir("internal")
	for _, e := range sub {
		if e.IsDir() && !covers("internal/"+e.Name()) {
			t.Errorf("directory internal/%s/ is missing from the README's layout table", e.Name())
		}
	}
}
