// Package faultproxy is a TCP proxy for tests that forwards to one upstream address
// and injects the network's faults on demand: latency, a black hole (nothing gets
// through until it heals), connections cut at once or after some bytes in one
// direction, and refused connections. It is imported by tests only.
package faultproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Direction names one half of a proxied connection.
type Direction int

const (
	// Up is from the client to the upstream (requests).
	Up Direction = iota
	// Down is from the upstream to the client (answers).
	Down
)

func (d Direction) String() string {
	if d == Up {
		return "up"
	}
	return "down"
}

// Proxy listens on 127.0.0.1 and forwards every connection to its upstream. The
// zero faults are in place after New: it forwards as fast as it can. All methods are
// safe for concurrent use.
type Proxy struct {
	addr string

	mu       sync.Mutex
	upstream string
	ln       net.Listener // nil while refusing
	conns    map[*conn]struct{}
	closed   bool
	healed   chan struct{} // closed while no black hole is in place
	cutRule  [2]cutRule
	wg       sync.WaitGroup

	latency  atomic.Int64 // nanoseconds added before each chunk is forwarded
	accepted atomic.Int64
	cuts     atomic.Int64
	bytes    [2]atomic.Int64
}

// cutRule cuts connections once they have forwarded n bytes in a direction; gen
// tells connections that the rule changed, so that they count again.
type cutRule struct {
	gen int64
	n   int64 // < 0: off
}

// New starts a proxy to upstream (host:port) on a free port of 127.0.0.1. Close it
// when done.
func New(upstream string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	healed := make(chan struct{})
	close(healed)
	p := &Proxy{upstream: upstream, addr: ln.Addr().String(), ln: ln, conns: map[*conn]struct{}{}, healed: healed}
	p.cutRule[Up].n, p.cutRule[Down].n = -1, -1
	p.wg.Add(1)
	go p.accept(ln)
	return p, nil
}

// Addr returns the address clients connect to (127.0.0.1:port); it stays the same
// across Refuse.
func (p *Proxy) Addr() string { return p.addr }

// Upstream returns the address the proxy forwards to.
func (p *Proxy) Upstream() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.upstream
}

// SetUpstream makes new connections go to addr (a server that came back on another
// port); open ones stay where they are.
func (p *Proxy) SetUpstream(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.upstream = addr
}

// SetLatency delays every chunk of data by d before it is forwarded, in both
// directions (a round trip then takes at least 2d more); 0 turns it off.
func (p *Proxy) SetLatency(d time.Duration) { p.latency.Store(int64(d)) }

// Blackhole makes the network swallow everything, as a partition does: data is no
// longer forwarded in either direction (it waits, unread, as TCP would retransmit
// it) and new connections are accepted but not connected upstream. Heal undoes it;
// what waited is then delivered, unless the connections were cut meanwhile.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.healed:
		p.healed = make(chan struct{})
	default:
	}
}

// Heal ends a black hole.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.healed:
	default:
		close(p.healed)
	}
}

// CutAll resets every open connection (both ends see a reset) and returns how many
// there were. New connections are not affected.
func (p *Proxy) CutAll() int {
	p.mu.Lock()
	conns := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	n := 0
	for _, c := range conns {
		if c.cut() {
			n++
		}
	}
	p.cuts.Add(int64(n))
	return n
}

// CutAfter resets every connection, open or new, once it has forwarded n more bytes
// in direction d (open connections count from this call, new ones from their start).
// The n bytes are delivered before the reset. CutAfter(Down, 0) cuts a connection
// when its first answer arrives, before any of
// it reaches the client: the request was delivered, the answer is lost. A negative
// n turns the rule off.
func (p *Proxy) CutAfter(d Direction, n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutRule[d] = cutRule{gen: p.cutRule[d].gen + 1, n: n}
}

// Refuse closes the listening socket: new connections are refused (ECONNREFUSED),
// as by a host whose server is down. Open connections are not affected. Accept undoes it.
func (p *Proxy) Refuse() {
	p.mu.Lock()
	ln := p.ln
	p.ln = nil
	p.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
}

// Accept listens again on the same address after Refuse.
func (p *Proxy) Accept() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("faultproxy: closed")
	}
	if p.ln != nil {
		return nil
	}
	var err error
	for i := 0; i < 50; i++ {
		var ln net.Listener
		ln, err = net.Listen("tcp", p.addr)
		if err == nil {
			p.ln = ln
			p.wg.Add(1)
			go p.accept(ln)
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("faultproxy: listen again on %s: %w", p.addr, err)
}

// Reset takes every fault away (latency, black hole, cut rules, refusal); open
// connections stay open.
func (p *Proxy) Reset() error {
	p.SetLatency(0)
	p.Heal()
	p.CutAfter(Up, -1)
	p.CutAfter(Down, -1)
	return p.Accept()
}

// Stats counts what the proxy did so far.
type Stats struct {
	Accepted int64 // connections accepted
	Cut      int64 // connections reset by CutAll or CutAfter
	Open     int   // connections open now
	Up, Down int64 // bytes forwarded in each direction
}

// Stats returns the counts so far.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	open := len(p.conns)
	p.mu.Unlock()
	return Stats{Accepted: p.accepted.Load(), Cut: p.cuts.Load(), Open: open,
		Up: p.bytes[Up].Load(), Down: p.bytes[Down].Load()}
}

// Close stops listening, resets every open connection and waits for the proxy's
// goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	ln := p.ln
	p.ln = nil
	p.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	p.Heal()
	p.CutAll()
	p.wg.Wait()
	return nil
}

func (p *Proxy) accept(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		cn := &conn{p: p, client: c.(*net.TCPConn), done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			resetClose(cn.client)
			return
		}
		p.conns[cn] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go cn.run()
	}
}

// waitHealed blocks while a black hole is in place; false when c was cut meanwhile.
func (p *Proxy) waitHealed(c *conn) bool {
	p.mu.Lock()
	healed := p.healed
	p.mu.Unlock()
	select {
	case <-healed:
		return true
	case <-c.done:
		return false
	}
}

// conn is one proxied connection.
type conn struct {
	p        *Proxy
	client   *net.TCPConn
	upstream atomic.Pointer[net.TCPConn]
	once     sync.Once
	done     chan struct{} // closed when the connection is cut or ends
}

func (c *conn) run() {
	defer c.p.wg.Done()
	defer func() {
		c.p.mu.Lock()
		delete(c.p.conns, c)
		c.p.mu.Unlock()
	}()
	if !c.p.waitHealed(c) {
		return
	}
	up, err := net.DialTimeout("tcp", c.p.Upstream(), 10*time.Second)
	if err != nil {
		// What a client sees when the host behind a proxy is down.
		c.cut()
		return
	}
	c.upstream.Store(up.(*net.TCPConn))
	select {
	case <-c.done: // cut while dialling
		resetClose(up.(*net.TCPConn))
		return
	default:
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.pipe(Up, up.(*net.TCPConn), c.client) }()
	go func() { defer wg.Done(); c.pipe(Down, c.client, up.(*net.TCPConn)) }()
	wg.Wait()
	// Both halves ended cleanly, or one was cut (then both ends are reset already).
	c.once.Do(func() {
		close(c.done)
		c.client.Close()
		up.Close()
	})
}

// pipe forwards src to dst in direction d until either fails, applying the faults.
func (c *conn) pipe(d Direction, dst, src *net.TCPConn) {
	buf := make([]byte, 32<<10)
	var gen, forwarded int64
	p := c.p
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if lat := time.Duration(p.latency.Load()); lat > 0 {
				t := time.NewTimer(lat)
				select {
				case <-t.C:
				case <-c.done:
					t.Stop()
					return
				}
			}
			if !p.waitHealed(c) {
				return
			}
			chunk := buf[:n]
			p.mu.Lock()
			rule := p.cutRule[d]
			p.mu.Unlock()
			if rule.gen != gen {
				gen, forwarded = rule.gen, 0
			}
			if rule.n >= 0 && forwarded+int64(len(chunk)) > rule.n {
				if keep := rule.n - forwarded; keep > 0 {
					dst.Write(chunk[:keep])
					p.bytes[d].Add(keep)
					// A reset discards what the peer has not read yet: give it a
					// moment to read what got through, as a transfer that dies
					// mid-way delivers its first part.
					time.Sleep(cutGrace)
				}
				p.cuts.Add(1) // before the peers can see the reset
				if !c.cut() {
					p.cuts.Add(-1)
				}
				return
			}
			forwarded += int64(len(chunk))
			if _, werr := dst.Write(chunk); werr != nil {
				c.cut() // pass the failure on to the other end
				return
			}
			p.bytes[d].Add(int64(len(chunk)))
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				// A clean close: pass it on as one, and let the other half finish.
				dst.CloseWrite()
				return
			}
			c.cut()
			return
		}
	}
}

// cutGrace is how long CutAfter waits between the last bytes it lets through and
// the reset.
const cutGrace = 50 * time.Millisecond

// cut resets both ends at once; false if the connection had ended already.
func (c *conn) cut() bool {
	did := false
	c.once.Do(func() {
		did = true
		close(c.done)
		resetClose(c.client)
		if up := c.upstream.Load(); up != nil {
			resetClose(up)
		}
	})
	return did
}

// resetClose closes c so that the peer sees a reset, not a clean end.
func resetClose(c *net.TCPConn) {
	c.SetLinger(0)
	c.Close()
}
