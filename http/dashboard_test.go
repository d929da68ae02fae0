package http_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/sqlite"
)

const chromiumPath = "/usr/bin/chromium"

// chromium returns the browser's path, installing Debian's chromium with the repo's
// script when it is missing; the test skips only when it cannot be had.
func chromium(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err == nil {
		return chromiumPath
	}
	out, err := exec.Command("bash", filepath.Join(testutil.Root(), "scripts", "setup-browser.sh")).CombinedOutput()
	if _, serr := os.Stat(chromiumPath); serr != nil {
		t.Skipf("chromium is not at %s and could not be installed (%v):\n%s", chromiumPath, err, out)
	}
	return chromiumPath
}

// screenshotDir is where the dashboard test leaves its screenshots: kept after the
// test, so a person can look at them.
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("MELONSYNC_SCREENSHOT_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "melonsync-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestDashboardInChromium drives the dashboard in headless Chromium: sign in with the
// admin token, see both users, open one, see their devices and the conflict in the
// timeline, force a replacement; screenshots of each page are saved.
func TestDashboardInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	store, err := sqlite.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	e := newAdminEnv(t, store, &mhttp.AdminOptions{Token: adminToken})
	e.history()

	ctx := browser(t)
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	count := func(sel string) int {
		t.Helper()
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll(`+fmt.Sprintf("%q", sel)+`).length`))
		if err != nil {
			t.Fatalf("count %s: %v", sel, err)
		}
		return n
	}
	shot := shooter(t, ctx)
	do("open the dashboard", chromedp.Navigate(e.srv.URL+"/admin/"), chromedp.WaitVisible(chromedp.ID("token")))
	loginText := text("#login")
	shot("login")
	do("a wrong token", chromedp.SendKeys(chromedp.ID("token"), "not-the-token"), chromedp.Click(chromedp.CSS(`#login button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS("#login .page-error")))
	do("sign in", chromedp.SendKeys(chromedp.ID("token"), adminToken), chromedp.Click(chromedp.CSS(`#login button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(".stat")), chromedp.WaitVisible(chromedp.CSS(".chart svg rect")))
	shot("overview")
	do("the users page", chromedp.Click(chromedp.CSS(`a[href="#/users"]`)),
		// The overview has table rows too: wait for the users page's own links.
		chromedp.WaitVisible(chromedp.CSS(`tr.click a[href="#/users/alice"]`)), chromedp.WaitVisible(chromedp.CSS(`tr.click a[href="#/users/bob"]`)))
	usersText := text("main")
	shot("users")
	do("alice's page", chromedp.Click(chromedp.CSS(`a[href="#/users/alice"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.device[data-device="laptop"]`)), chromedp.WaitVisible(chromedp.CSS(".tl.conflict")))
	userText, timelineText, laptopText := text("main"), text(".tl.conflict"), text(`.device[data-device="laptop"]`)
	conflicts, devices := count(".tl.conflict"), count(".device")
	shot("user")
	do("force a replacement", chromedp.Click(chromedp.CSS(`.device[data-device="phone"] .actions button`)), chromedp.WaitVisible(chromedp.CSS(".notice")))
	do("the records page", chromedp.Navigate(e.srv.URL+"/admin/#/records?table=tasks"), chromedp.WaitVisible(chromedp.CSS("td.mono")))
	shot("records")
	if !strings.Contains(loginText, "admin token") {
		t.Errorf("login page: %q", loginText)
	}
	for _, u := range []string{"alice", "bob"} {
		if !strings.Contains(usersText, u) {
			t.Errorf("the users page lacks %s:\n%s", u, usersText)
		}
	}
	if devices != 2 || !strings.Contains(userText, "phone") || !strings.Contains(userText, "laptop") {
		t.Errorf("alice's page shows %d devices:\n%s", devices, userText)
	}
	if conflicts != 1 || !strings.Contains(timelineText, "tasks/t1") || !strings.Contains(timelineText, "409") {
		t.Errorf("the timeline shows %d conflicts; the conflict reads %q", conflicts, timelineText)
	}
	if !strings.Contains(laptopText, "409") {
		t.Errorf("the laptop's card does not show its 409: %q", laptopText)
	}
	st, err := e.store.DeviceState(context.Background(), "alice", "phone")
	if err != nil || !st.Replace {
		t.Errorf("the page's button did not request a replacement for the phone: %+v %v", st, err)
	}
}

// browser starts headless Chromium for t (stopped when t ends) and returns its
// context, with a deadline for the test's steps.
func browser(t *testing.T) context.Context {
	t.Helper()
	bin := chromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1360, 1000),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancel)
	// The first action starts the browser: the deadline goes on a later context.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel = context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(cancel)

	return ctx
}

// shooter saves full-page screenshots of ctx's page as dashboard-NAME.png.
func shooter(t *testing.T, ctx context.Context) func(name string) {
	dir := screenshotDir(t)
	return func(name string) {
		t.Helper()
		buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		path := filepath.Join(dir, "dashboard-"+name+".png")
		if err := os.WriteFile(path, buf, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", path)
		fmt.Println("screenshot:", path)
	}
}
