package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/melonsync/melonsync/client"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/transport"
)

// remoteFlags are the flags of the commands that talk to a server.
type remoteFlags struct {
	url, token, device, progress string
	pageSize                     int
}

func (c *clientCmd) remote(fs interface {
	StringVar(*string, string, string, string)
	IntVar(*int, string, int, string)
}) *remoteFlags {
	r := &remoteFlags{}
	fs.StringVar(&r.url, "url", getenv("MELONSYNC_URL"), "the server's base URL, e.g. http://127.0.0.1:8080 (default $MELONSYNC_URL)")
	fs.StringVar(&r.token, "token", getenv("MELONSYNC_TOKEN"), "bearer token (default $MELONSYNC_TOKEN; see \"melonsync token\")")
	fs.StringVar(&r.device, "device", "", "device id sent as X-Melon-Device, kept for later syncs (default: the one kept in the database, made up on first use)")
	fs.StringVar(&r.progress, "progress", "auto", "progress bar on stderr for long syncs: auto (when stderr is a terminal), on, off")
	fs.IntVar(&r.pageSize, "page-size", 0, "pull in pages of about this many records (big first syncs; 0: one answer)")
	return r
}

// connect returns the HTTP transport for db and the progress display.
func (c *clientCmd) connect(db *client.DB, r *remoteFlags) (*transport.Client, *progressBar, error) {
	if r.url == "" {
		return nil, nil, errors.New("--url is required (or set MELONSYNC_URL)")
	}
	if r.token == "" {
		return nil, nil, errors.New("--token is required (or set MELONSYNC_TOKEN)")
	}
	if r.pageSize < 0 {
		return nil, nil, errors.New("--page-size must be 0 or more")
	}
	var device string
	var err error
	if r.device != "" {
		err = client.SetDeviceID(c.ctx, db, r.device)
		device = r.device
	} else {
		device, err = client.DeviceID(c.ctx, db)
	}
	if err != nil {
		return nil, nil, err
	}
	var show bool
	switch r.progress {
	case "on":
		show = true
	case "off":
		show = false
	case "auto", "":
		show = isTerminal(c.stderr)
	default:
		return nil, nil, fmt.Errorf("--progress must be auto, on or off, not %q", r.progress)
	}
	bar := &progressBar{w: c.stderr, enabled: show, pageSize: r.pageSize}
	hc, err := transport.NewClient(r.url, transport.StaticToken(r.token), device, transport.WithDownloadProgress(bar.setBytes), transport.WithUserAgent("melonsync-cli"))
	if err != nil {
		return nil, nil, err
	}
	return hc, bar, nil
}

// syncOptions returns the options of one CLI sync.
func syncOptions(ctx context.Context, db *client.DB, hc *transport.Client, bar *progressBar) client.SyncOptions {
	opts := hc.Options()
	opts.MigrationsEnabledAtVersion = migrationsEnabledAt(db.Schema())
	opts.OnProgress = bar.setProgress
	opts.PageSize = bar.pageSize
	return opts
}

// migrationsEnabledAt is the version migration syncs are enabled at for the CLI: the
// oldest version the schema's migrations start from (none without migrations). The
// first sync notes the schema version, so this is only a fallback.
func migrationsEnabledAt(s *schema.Schema) int {
	if s.Migrations == nil {
		return 0
	}
	return s.Migrations.Min
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// syncSummary is what "client sync --json" prints and what status shows of the last
// sync.
type syncSummary struct {
	OK         bool      `json:"ok"`
	Time       time.Time `json:"time"`
	DurationMS int64     `json:"durationMs"`
	Pulled     int       `json:"pulled"`
	Pushed     int       `json:"pushed"`
	Rejected   int       `json:"rejected"`
	// RejectedReasons holds the server's reasons for refused records, by id.
	RejectedReasons map[string]string `json:"rejectedReasons,omitempty"`
	Turbo           bool              `json:"turbo,omitempty"`
	LastPulledAt    *int64            `json:"lastPulledAt"`
	Error           string            `json:"error,omitempty"`
	ErrorCode       string            `json:"errorCode,omitempty"`
	Trigger         string            `json:"trigger,omitempty"`
	Log             *client.SyncLog   `json:"log,omitempty"`
}

func summarize(log *client.SyncLog, err error, d time.Duration) syncSummary {
	l := log.Censored()
	s := syncSummary{OK: err == nil, Time: time.Now().UTC(), DurationMS: d.Milliseconds(), Turbo: l.Turbo, Log: l}
	if l.RemoteChangeCount > 0 {
		s.Pulled = l.RemoteChangeCount
	}
	if l.Phase == client.PhaseDone || l.Phase == client.PhaseMarkedAsSynced || l.Phase == client.PhasePushed {
		s.Pushed = l.LocalChangeCount
	}
	for _, ids := range l.RejectedIDs {
		s.Rejected += len(ids)
	}
	s.RejectedReasons = l.RejectedReasons
	if l.NewLastPulledAt != nil && l.Phase != client.PhaseReadyToPull && l.Phase != client.PhasePulled {
		s.LastPulledAt = l.NewLastPulledAt
	} else {
		s.LastPulledAt = l.LastPulledAt
	}
	if err != nil {
		s.Error, s.ErrorCode = err.Error(), client.ErrorCode(err)
	}
	return s
}

func (s syncSummary) line() string {
	var b strings.Builder
	if s.OK {
		fmt.Fprintf(&b, "synced in %s: pulled %d record(s)", (time.Duration(s.DurationMS) * time.Millisecond).String(), s.Pulled)
		if s.Turbo {
			b.WriteString(" (streamed first sync)")
		}
		fmt.Fprintf(&b, ", pushed %d", s.Pushed)
		if s.Rejected > 0 {
			fmt.Fprintf(&b, " (%d rejected by the server, kept locally", s.Rejected)
			ids := make([]string, 0, len(s.RejectedReasons))
			for id := range s.RejectedReasons {
				ids = append(ids, id)
			}
			sort.Strings(ids)
			for _, id := range ids {
				fmt.Fprintf(&b, "; %s: %s", id, s.RejectedReasons[id])
			}
			b.WriteString(")")
		}
		if s.LastPulledAt != nil {
			fmt.Fprintf(&b, "; lastPulledAt %d", *s.LastPulledAt)
		}
		return b.String()
	}
	code := s.ErrorCode
	if code == "" {
		code = "error"
	}
	fmt.Fprintf(&b, "sync failed after %s (%s): %s", (time.Duration(s.DurationMS) * time.Millisecond).String(), code, s.Error)
	return b.String()
}

// saveSummary keeps the outcome of a sync in local storage for "client status".
func saveSummary(ctx context.Context, db *client.DB, s syncSummary) error {
	s.Log = nil
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return db.Write(context.WithoutCancel(ctx), func(tx *client.Tx) error {
		var last struct {
			LastSuccess *time.Time `json:"lastSuccess"`
		}
		if prev, ok, _ := tx.GetLocal(keyLastSync); ok {
			json.Unmarshal([]byte(prev), &last)
		}
		var m map[string]any
		json.Unmarshal(b, &m)
		if s.OK {
			t := s.Time
			last.LastSuccess = &t
		}
		if last.LastSuccess != nil {
			m["lastSuccess"] = last.LastSuccess
		}
		out, _ := json.Marshal(m)
		return tx.SetLocal(keyLastSync, string(out))
	})
}

func (c *clientCmd) sync(args []string) error {
	fs := c.flags("sync")
	r := c.remote(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("client sync: unexpected argument %q", pos[0])
	}
	db, err := c.open()
	if err != nil {
		return fmt.Errorf("client sync: %w", err)
	}
	defer db.Close()
	hc, bar, err := c.connect(db, r)
	if err != nil {
		return fmt.Errorf("client sync: %w", err)
	}
	opts := syncOptions(c.ctx, db, hc, bar)
	log := &client.SyncLog{}
	opts.Log = log
	if opts.UnsafeTurbo, err = client.TurboEligible(c.ctx, db); err != nil {
		return fmt.Errorf("client sync: %w", err)
	}
	bar.begin()
	start := time.Now()
	serr := client.Synchronize(c.ctx, db, opts)
	bar.finish()
	sum := summarize(log, serr, time.Since(start))
	if err := saveSummary(c.ctx, db, sum); err != nil && serr == nil {
		return fmt.Errorf("client sync: %w", err)
	}
	if c.json {
		if err := writeJSON(c.stdout, sum); err != nil {
			return err
		}
	} else if serr == nil {
		fmt.Fprintln(c.stdout, sum.line())
	}
	if serr != nil {
		if code := client.ErrorCode(serr); code != "" {
			return fmt.Errorf("client sync: %s: %w", code, serr)
		}
		return fmt.Errorf("client sync: %w", serr)
	}
	return nil
}

func (c *clientCmd) watch(args []string) error {
	fs := c.flags("watch")
	r := c.remote(fs)
	interval := fs.Duration("interval", client.DefaultSyncInterval, "time between periodic syncs")
	debounce := fs.Duration("debounce", client.DefaultDebounce, "wait after a local change before syncing")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("client watch: unexpected argument %q", pos[0])
	}
	if *interval <= 0 || *debounce <= 0 {
		return errors.New("client watch: --interval and --debounce must be positive")
	}
	db, err := c.open()
	if err != nil {
		return fmt.Errorf("client watch: %w", err)
	}
	defer db.Close()
	hc, bar, err := c.connect(db, r)
	if err != nil {
		return fmt.Errorf("client watch: %w", err)
	}
	var mu sync.Mutex
	sched := client.NewScheduler(db, client.SchedulerOptions{
		Sync:      syncOptions(c.ctx, db, hc, bar),
		Interval:  *interval,
		Debounce:  *debounce,
		AutoTurbo: true,
		Listen:    hc.Listen,
		OnSync: func(rep client.SyncReport) {
			bar.finish()
			sum := summarize(rep.Log, rep.Err, rep.Duration)
			sum.Trigger = rep.Trigger
			saveSummary(c.ctx, db, sum)
			mu.Lock()
			defer mu.Unlock()
			if c.json {
				sum.Log = nil
				writeJSON(c.stdout, sum)
				return
			}
			fmt.Fprintf(c.stdout, "%s [%s] %s\n", sum.Time.Local().Format("15:04:05"), rep.Trigger, sum.line())
		},
	})
	unsubscribe := sched.Subscribe(func(st client.Status) {
		if st.InProgress {
			bar.begin()
		}
	})
	defer unsubscribe()
	if !c.json {
		fmt.Fprintf(c.stdout, "watching %s: syncing with %s when it has changes, %s after local changes and every %s; Ctrl-C stops\n", c.dbPath, r.url, *debounce, *interval)
	}
	if err := sched.Start(c.ctx); err != nil {
		return fmt.Errorf("client watch: %w", err)
	}
	<-c.ctx.Done()
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sched.Stop(stopCtx)
	if !c.json {
		fmt.Fprintln(c.stdout, "stopped")
	}
	return nil
}

// tableCounts counts unsynced records of one table.
type tableCounts struct {
	Created int `json:"created"`
	Updated int `json:"updated"`
	Deleted int `json:"deleted"`
}

func (c *clientCmd) status(args []string) error {
	fs := c.flags("status")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("client status: unexpected argument %q", pos[0])
	}
	db, err := c.open()
	if err != nil {
		return fmt.Errorf("client status: %w", err)
	}
	defer db.Close()
	lpa, err := client.LastPulledAt(c.ctx, db)
	if err != nil {
		return fmt.Errorf("client status: %w", err)
	}
	lsv, err := client.LastPulledSchemaVersion(c.ctx, db)
	if err != nil {
		return fmt.Errorf("client status: %w", err)
	}
	device, _, err := db.GetLocal(c.ctx, client.KeyDeviceID)
	if err != nil {
		return fmt.Errorf("client status: %w", err)
	}
	local, err := db.FetchLocalChanges(c.ctx)
	if err != nil {
		return fmt.Errorf("client status: %w", err)
	}
	unsynced := map[string]tableCounts{}
	total := 0
	for table, tc := range local.Changes {
		if tc == nil {
			continue
		}
		n := tableCounts{len(tc.Created), len(tc.Updated), len(tc.Deleted)}
		if n.Created+n.Updated+n.Deleted > 0 {
			unsynced[table] = n
			total += n.Created + n.Updated + n.Deleted
		}
	}
	var last map[string]any
	if v, ok, _ := db.GetLocal(c.ctx, keyLastSync); ok {
		json.Unmarshal([]byte(v), &last)
	}
	if c.json {
		return writeJSON(c.stdout, map[string]any{
			"db": c.dbPath, "schemaVersion": db.Schema().Version, "lastPulledSchemaVersion": lsv,
			"device": device, "lastPulledAt": lpa, "unsyncedCount": total, "unsynced": unsynced, "lastSync": last,
		})
	}
	w := c.stdout
	fmt.Fprintf(w, "database:        %s\n", c.dbPath)
	fmt.Fprintf(w, "schema version:  %d", db.Schema().Version)
	if lsv != nil {
		fmt.Fprintf(w, " (last synced at version %d)", *lsv)
	}
	fmt.Fprintln(w)
	if device == "" {
		device = "(none yet)"
	}
	fmt.Fprintf(w, "device:          %s\n", device)
	if lpa == nil {
		fmt.Fprintf(w, "last pulled at:  never\n")
	} else {
		fmt.Fprintf(w, "last pulled at:  %d%s\n", *lpa, humanTimestamp(*lpa))
	}
	if total == 0 {
		fmt.Fprintf(w, "unsynced:        none\n")
	} else {
		tables := make([]string, 0, len(unsynced))
		for t := range unsynced {
			tables = append(tables, t)
		}
		sort.Strings(tables)
		var parts []string
		for _, t := range tables {
			n := unsynced[t]
			parts = append(parts, fmt.Sprintf("%s: %d created, %d updated, %d deleted", t, n.Created, n.Updated, n.Deleted))
		}
		fmt.Fprintf(w, "unsynced:        %d change(s) (%s)\n", total, strings.Join(parts, "; "))
	}
	if last != nil {
		ok, _ := last["ok"].(bool)
		when, _ := last["time"].(string)
		if ok {
			fmt.Fprintf(w, "last sync:       ok at %s\n", when)
		} else {
			fmt.Fprintf(w, "last sync:       failed at %s: %v\n", when, last["error"])
			if ls, _ := last["lastSuccess"].(string); ls != "" {
				fmt.Fprintf(w, "last success:    %s\n", ls)
			}
		}
	}
	return nil
}

// humanTimestamp shows a server timestamp as a date when it looks like epoch ms.
func humanTimestamp(ts int64) string {
	if ts < 1e12 || ts > 1e13 {
		return ""
	}
	return " (" + time.UnixMilli(ts).UTC().Format(time.RFC3339) + ")"
}

func printTable(w io.Writer, t *schema.Table, recs []client.Record) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{"id"}
	for _, c := range t.Columns {
		head = append(head, c.Name)
	}
	head = append(head, "_status", "_changed")
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, r := range recs {
		row := make([]string, 0, len(head))
		for _, h := range head {
			row = append(row, formatValue(r[h]))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
}

func formatValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return strings.NewReplacer("\t", " ", "\n", " ").Replace(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	default:
		return fmt.Sprint(x)
	}
}

// progressBar draws the progress of a long sync on one terminal line.
type progressBar struct {
	w        io.Writer
	enabled  bool
	pageSize int // SyncOptions.PageSize

	pulled, remaining int64 // paged pulls: records pulled so far, estimate of the rest

	mu      sync.Mutex
	start   time.Time
	base    int64 // bytes received before this sync
	bytes   int64
	p       client.Progress
	last    time.Time
	drawn   bool
	running bool
}

// showAfter: syncs shorter than this draw nothing.
const showAfter = 300 * time.Millisecond

func (b *progressBar) begin() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.start, b.base, b.p, b.drawn, b.running = time.Now(), b.bytes, client.Progress{}, false, true
	b.pulled, b.remaining = 0, -1
}

func (b *progressBar) setBytes(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.bytes = n
	b.draw(false)
}

func (b *progressBar) setProgress(p client.Progress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p.Phase == "page" {
		b.pulled += int64(p.Records)
		b.remaining = p.Remaining
		b.draw(true)
		return
	}
	b.p = p
	b.draw(false)
}

func (b *progressBar) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.drawn {
		b.draw(true)
		fmt.Fprintln(b.w)
	}
	b.drawn, b.running = false, false
}

func (b *progressBar) draw(force bool) {
	if !b.enabled || !b.running {
		return
	}
	now := time.Now()
	if !force && (now.Sub(b.start) < showAfter || now.Sub(b.last) < 100*time.Millisecond) {
		return
	}
	b.last, b.drawn = now, true
	received := humanBytes(b.bytes - b.base)
	el := now.Sub(b.start).Seconds()
	var line string
	switch {
	case b.remaining >= 0:
		const width = 30
		total := b.pulled + b.remaining
		filled := int(b.pulled * width / max(total, 1))
		line = fmt.Sprintf("pages     [%s%s] %d/%d records  %s  %.1fs", strings.Repeat("=", filled), strings.Repeat(" ", width-filled), b.pulled, total, received, el)
	case b.p.Total > 0:
		const width = 30
		filled := b.p.Records * width / b.p.Total
		line = fmt.Sprintf("%-9s [%s%s] %d/%d records  %s  %.1fs", b.p.Phase, strings.Repeat("=", filled), strings.Repeat(" ", width-filled), b.p.Records, b.p.Total, received, el)
	case b.p.Records > 0:
		rate := float64(b.p.Records) / el
		line = fmt.Sprintf("%s: %d records  %s received  %.0f records/s  %.1fs", b.p.Phase, b.p.Records, received, rate, el)
	default:
		line = fmt.Sprintf("pulling: %s received  %.1fs", received, el)
	}
	fmt.Fprintf(b.w, "\r%-78s", line)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f kB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}
