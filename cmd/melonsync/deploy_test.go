package main

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// TestDeployFiles checks deploy/: the Dockerfile's final image is scratch with the
// binary it builds as entrypoint, and every MELONSYNC_ variable that the Dockerfile
// and the systemd unit set names a real flag of "melonsync serve".
func TestDeployFiles(t *testing.T) {
	docker, err := os.ReadFile("../../deploy/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	unit, err := os.ReadFile("../../deploy/melonsync.service")
	if err != nil {
		t.Fatal(err)
	}
	froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(string(docker), -1)
	if len(froms) < 2 || froms[len(froms)-1][1] != "scratch" {
		t.Errorf("the Dockerfile's stages are %v; want a build stage and a final FROM scratch", froms)
	}
	if !strings.Contains(string(docker), "CGO_ENABLED=0 go build") || !strings.Contains(string(docker), "./cmd/melonsync") {
		t.Error("the Dockerfile does not build ./cmd/melonsync with CGO_ENABLED=0")
	}
	if !strings.Contains(string(docker), `ENTRYPOINT ["/melonsync"]`) || !strings.Contains(string(docker), "/out/melonsync /melonsync") {
		t.Error("the Dockerfile's entrypoint is not the binary it copies")
	}
	if !regexp.MustCompile(`(?m)^ExecStart=\S*melonsync serve`).Match(unit) {
		t.Error("the unit does not run melonsync serve")
	}
	flags := map[string]bool{}
	withEnv(t, nil)
	// The flag names, from the usage text ("  -name type").
	var help bytes.Buffer
	m2 := NewServeMain(&bytes.Buffer{}, &help)
	m2.ParseFlags([]string{"-h"})
	for _, line := range strings.Split(help.String(), "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "-"); ok {
			name, _, _ = strings.Cut(name, " ")
			flags[envName(name)] = true
		}
	}
	for _, file := range []struct {
		name string
		text []byte
	}{{"Dockerfile", docker}, {"melonsync.service", unit}} {
		for _, v := range regexp.MustCompile(`MELONSYNC_[A-Z_]+`).FindAllString(string(file.text), -1) {
			if !flags[v] && v != "MELONSYNC_JWT_SECRET" {
				t.Errorf("%s sets %s, which is no flag of melonsync serve", file.name, v)
			}
		}
	}
}

// TestStaticBinary builds melonsync as the Dockerfile does and checks that it needs
// no dynamic loader (it runs on an empty image).
func TestStaticBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if runtime.GOOS != "linux" {
		t.Skip("checks a Linux ELF binary")
	}
	out := filepath.Join(t.TempDir(), "melonsync")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Fatalf("the binary has a %v segment: it is not static", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary links %v", libs)
	}
	help, err := exec.Command(out, "serve", "-h").CombinedOutput()
	if err != nil || !strings.Contains(string(help), "$MELONSYNC_ADMIN_TOKEN") {
		t.Errorf("the static binary's serve -h: %v\n%s", err, help)
	}
}
