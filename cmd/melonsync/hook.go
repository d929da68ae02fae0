package main

import (
	"errors"
	"log/slog"
	"net/url"
	"strings"

	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/server"
)

// checkHookFlags checks the write hook flags of serve.
func (m *ServeMain) checkHookFlags() error {
	if m.HookURL == "" {
		if m.HookTables != "" {
			return errors.New("serve: --hook-tables needs --hook-url")
		}
		return nil
	}
	if m.HookSecret == "" {
		return errors.New("serve: --hook-url needs a secret to sign requests: --hook-secret or MELONSYNC_HOOK_SECRET")
	}
	if m.HookTimeout <= 0 {
		return errors.New("serve: --hook-timeout must be positive")
	}
	if _, err := mhttp.NewHookClient(m.HookURL, []byte(m.HookSecret), m.HookTimeout); err != nil {
		return errors.New("serve: --hook-url: the URL must start with http:// or https://")
	}
	return nil
}

// setHook installs the write hook, if one is configured, on svc, and logs the
// conflict policies and the hook.
func (m *ServeMain) setHook(svc *server.Service, log *slog.Logger) error {
	for table, p := range svc.Schema().Policies() {
		log.Info("conflict policy", "table", table, "policy", p.String())
	}
	if m.HookURL == "" {
		return nil
	}
	hc, err := mhttp.NewHookClient(m.HookURL, []byte(m.HookSecret), m.HookTimeout)
	if err != nil {
		return err
	}
	var tables []string
	if m.HookTables != "" {
		tables = strings.Split(m.HookTables, ",")
	}
	if err := svc.SetWriteHook(hc, tables); err != nil {
		return errors.New("serve: --hook-tables: " + strings.TrimPrefix(err.Error(), "write hook: "))
	}
	u, _ := url.Parse(m.HookURL)
	log.Info("write hook", "host", u.Host, "timeout", m.HookTimeout.String(), "tables", m.HookTables)
	return nil
}
