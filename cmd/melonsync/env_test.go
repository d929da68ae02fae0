package main

import (
	"bytes"
	"flag"
	"strings"
	"testing"
	"time"
)

func withEnv(t *testing.T, vars map[string]string) {
	old := getenv
	getenv = func(k string) string { return vars[k] }
	t.Cleanup(func() { getenv = old })
}

func TestServeFlagsFromEnvironment(t *testing.T) {
	withEnv(t, map[string]string{
		"MELONSYNC_ADDR":                 "127.0.0.1:9999",
		"MELONSYNC_DB":                   "/tmp/from-env.db",
		"MELONSYNC_SCHEMA":               "schema.json",
		"MELONSYNC_MAX_BODY":             "1234",
		"MELONSYNC_TOMBSTONE_RETENTION":  "48h",
		"MELONSYNC_ADMIN_TOKEN":          "0123456789abcdef0123",
		"MELONSYNC_DEV":                  "true",
		"MELONSYNC_SYNC_LOG_MAX_ENTRIES": "500",
		"MELONSYNC_RATE_USER":            "2.5",
		"MELONSYNC_LOG_FORMAT":           "text", // the command line says json
	})
	m := NewServeMain(&bytes.Buffer{}, &bytes.Buffer{})
	if err := m.ParseFlags([]string{"--log-format", "json"}); err != nil {
		t.Fatal(err)
	}
	if m.Addr != "127.0.0.1:9999" || m.DB != "/tmp/from-env.db" || m.SchemaPath != "schema.json" || m.MaxBody != 1234 ||
		m.Retention != 48*time.Hour || m.AdminToken != "0123456789abcdef0123" || !m.Dev || m.SyncLogMax != 500 || m.Rate.PerUser != 2.5 {
		t.Errorf("flags from the environment: %+v", m)
	}
	if m.LogFormat != "json" {
		t.Errorf("--log-format json on the command line lost to the environment: %q", m.LogFormat)
	}
}

func TestServeFlagFromEnvironmentInvalid(t *testing.T) {
	withEnv(t, map[string]string{"MELONSYNC_SCHEMA": "s.json", "MELONSYNC_MAX_BODY": "lots"})
	m := NewServeMain(&bytes.Buffer{}, &bytes.Buffer{})
	err := m.ParseFlags(nil)
	if err == nil || !strings.Contains(err.Error(), "$MELONSYNC_MAX_BODY") {
		t.Errorf("a bad value in the environment: %v, want an error naming $MELONSYNC_MAX_BODY", err)
	}
}

// TestServeHelpListsEveryVariable: -h names the variable of every flag, including
// flags defined after this test was written.
func TestServeHelpListsEveryVariable(t *testing.T) {
	withEnv(t, nil)
	var stderr bytes.Buffer
	m := NewServeMain(&bytes.Buffer{}, &stderr)
	if err := m.ParseFlags([]string{"-h"}); err != flag.ErrHelp {
		t.Fatalf("-h: %v", err)
	}
	help := stderr.String()
	n := 0
	for _, line := range strings.Split(help, "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "-"); ok {
			name, _, _ = strings.Cut(name, " ")
			n++
			if !strings.Contains(help, "$"+envName(name)) {
				t.Errorf("-h does not name $%s for --%s", envName(name), name)
			}
		}
	}
	if n < 10 {
		t.Errorf("-h lists %d flags:\n%s", n, help)
	}
	for _, v := range []string{"$MELONSYNC_ADDR", "$MELONSYNC_DB", "$MELONSYNC_ADMIN_TOKEN", "$MELONSYNC_RATE_DEVICE_BURST"} {
		if !strings.Contains(help, v) {
			t.Errorf("-h lacks %s", v)
		}
	}
}
