package faultproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// echo is an upstream that writes back whatever it reads and keeps what every
// connection received.
type echo struct {
	ln       net.Listener
	mu       sync.Mutex
	received []*bytes.Buffer
	ends     []error // how each connection ended (nil: clean EOF)
	accepted chan struct{}
}

func newEcho(t *testing.T) *echo {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echo{ln: ln, accepted: make(chan struct{}, 100)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			buf := &bytes.Buffer{}
			i := len(e.received)
			e.received = append(e.received, buf)
			e.ends = append(e.ends, errors.New("open"))
			e.mu.Unlock()
			e.accepted <- struct{}{}
			go func() {
				defer c.Close()
				b := make([]byte, 4096)
				for {
					n, err := c.Read(b)
					e.mu.Lock()
					buf.Write(b[:n])
					e.mu.Unlock()
					if n > 0 && err == nil {
						// A reset is reported once: to this write, or to the next read.
						_, err = c.Write(b[:n])
					}
					if err != nil {
						if errors.Is(err, io.EOF) {
							err = nil
						}
						e.mu.Lock()
						e.ends[i] = err
						e.mu.Unlock()
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return e
}

// conn returns what upstream connection i received and how it ended.
func (e *echo) conn(i int) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if i >= len(e.received) {
		return "", errors.New("no such connection")
	}
	return e.received[i].String(), e.ends[i]
}

func newProxy(t *testing.T, upstream string) *Proxy {
	t.Helper()
	p, err := New(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg and reads as many bytes back within d.
func roundTrip(c net.Conn, msg string, d time.Duration) (string, error) {
	c.SetDeadline(time.Now().Add(d))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	b := make([]byte, len(msg))
	n, err := io.ReadFull(c, b)
	return string(b[:n]), err
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within 5 s", what)
}

func TestForwards(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.ln.Addr().String())
	c := dial(t, p)
	for _, msg := range []string{"hello", string(bytes.Repeat([]byte("x"), 200<<10))} {
		got, err := roundTrip(c, msg, 5*time.Second)
		if err != nil || got != msg {
			t.Fatalf("round trip of %d bytes: %d bytes back, %v", len(msg), len(got), err)
		}
	}
	// A clean close reaches the upstream as one.
	c.(*net.TCPConn).CloseWrite()
	eventually(t, "the upstream sees a clean end", func() bool {
		got, end := e.conn(0)
		return end == nil && len(got) == 5+200<<10
	})
	st := p.Stats()
	if st.Accepted != 1 || st.Up != 5+200<<10 || st.Down != 5+200<<10 || st.Cut != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestLatency(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.ln.Addr().String())
	c := dial(t, p)
	if _, err := roundTrip(c, "warm", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetLatency(100 * time.Millisecond)
	start := time.Now()
	if _, err := roundTrip(c, "slow", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("round trip with 100 ms each way took %v", d)
	}
	p.SetLatency(0)
	start = time.Now()
	if _, err := roundTrip(c, "fast", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 150*time.Millisecond {
		t.Errorf("round trip without latency took %v", d)
	}
}

func TestBlackhole(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.ln.Addr().String())
	c := dial(t, p)
	if _, err := roundTrip(c, "before", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Blackhole()
	if got, err := roundTrip(c, "during", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("round trip in a black hole: %q, %v; want a timeout", got, err)
	}
	if got, _ := e.conn(0); got != "before" {
		t.Errorf("the upstream got %q through the black hole", got)
	}
	// A new connection is accepted but goes nowhere.
	c2 := dial(t, p)
	c2.Write([]byte("new"))
	select {
	case <-e.accepted: // the first connection's
	default:
	}
	select {
	case <-e.accepted:
		t.Fatal("a connection made in a black hole reached the upstream")
	case <-time.After(200 * time.Millisecond):
	}
	p.Heal()
	// What waited is delivered.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 6)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "during" {
		t.Fatalf("after healing: %q, %v", b, err)
	}
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	b = make([]byte, 3)
	if _, err := io.ReadFull(c2, b); err != nil || string(b) != "new" {
		t.Fatalf("new connection after healing: %q, %v", b, err)
	}
}

func TestCutAll(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.ln.Addr().String())
	c := dial(t, p)
	if _, err := roundTrip(c, "one", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := p.CutAll(); n != 1 {
		t.Errorf("CutAll cut %d connections, want 1", n)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client after a cut: %v, want a reset", err)
	}
	eventually(t, "the upstream sees the reset", func() bool {
		_, end := e.conn(0)
		return errors.Is(end, syscall.ECONNRESET)
	})
	// New connections work.
	if got, err := roundTrip(dial(t, p), "two", 5*time.Second); err != nil || got != "two" {
		t.Errorf("after CutAll: %q, %v", got, err)
	}
	if st := p.Stats(); st.Cut != 1 || st.Open != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestCutAfterDownZero is the lost answer: the request reaches the upstream whole,
// the client gets a reset and not a byte of the answer.
func TestCutAfterDownZero(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.ln.Addr().String())
	p.CutAfter(Down, 0)
	c := dial(t, p)
	c.Write([]byte("request"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 100))
	if n != 0 || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read %d bytes, %v; want 0 and a reset", n, err)
	}
	if got, _ := e.conn(0); got != "request" {
		t.Errorf("upstream received %q, want the whole request", got)
	}
	p.CutAfter(Down, -1)
	if got, err := roundTrip(dial(t, p), "again", 5*time.Second); err != nil || got != "again" {
		t.Errorf("with the rule off: %q, %v", got, err)
	}
}

func TestCutAfterUp(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.ln.Addr().String())
	c := dial(t, p)
	if _, err := roundTrip(c, "0123456789", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// Open connections count from the call: 4 more bytes get through.
	p.CutAfter(Up, 4)
	c.Write([]byte("abcdefgh"))
	eventually(t, "the upstream sees the reset", func() bool {
		_, end := e.conn(0)
		return errors.Is(end, syscall.ECONNRESET)
	})
	if got, _ := e.conn(0); got != "0123456789abcd" {
		t.Errorf("upstream received %q, want 4 bytes past the rule", got)
	}
	// New connections count from their start; a mid-stream cut of the answer.
	p.CutAfter(Up, -1)
	p.CutAfter(Down, 3)
	c2 := dial(t, p)
	c2.Write([]byte("xyzw"))
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c2)
	if string(got) != "xyz" || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read %q, %v; want 3 bytes and a reset", got, err)
	}
	if st := p.Stats(); st.Cut != 2 {
		t.Errorf("stats %+v, want 2 cuts", st)
	}
}

func TestRefuse(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.ln.Addr().String())
	open := dial(t, p)
	p.Refuse()
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial while refusing: %v, want connection refused", err)
	}
	// Open connections go on.
	if got, err := roundTrip(open, "still", 5*time.Second); err != nil || got != "still" {
		t.Errorf("open connection while refusing: %q, %v", got, err)
	}
	if err := p.Reset(); err != nil {
		t.Fatal(err)
	}
	if got, err := roundTrip(dial(t, p), "back", 5*time.Second); err != nil || got != "back" {
		t.Errorf("after Accept: %q, %v", got, err)
	}
}

// TestUpstreamDown: a proxy whose upstream refuses resets its clients.
func TestUpstreamDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := newProxy(t, addr)
	c, err := net.Dial("tcp", p.Addr())
	if err == nil {
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client of a proxy to nothing: %v, want a reset", err)
	}
}

func TestClose(t *testing.T) {
	e := newEcho(t)
	p, err := New(e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p)
	roundTrip(c, "x", 5*time.Second)
	p.Blackhole()
	dial(t, p) // waiting in the black hole
	done := make(chan struct{})
	go func() { p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Error("dial after Close succeeded")
	}
}
