package postgres

import (
	"sync"
	"time"

	"github.com/melonsync/melonsync/admin"
)

// Every sync request asks for its device's operator flags (DeviceState). They change
// rarely (an operator revokes a device, asks for a replacement), so each process
// keeps them for deviceStateTTL rather than paying a round trip per request: a
// change made through this process applies at once (its writes clear the cache), one
// made through another process within deviceStateTTL.
const deviceStateTTL = time.Second

// maxCachedDevices bounds the cache; past it, expired entries are dropped, and if
// that is not enough, all of them.
const maxCachedDevices = 100000

type deviceKey struct{ user, device string }

type cachedState struct {
	st admin.State
	at time.Time
}

type deviceCache struct {
	mu  sync.Mutex
	m   map[deviceKey]cachedState
	gen uint64 // counts clears: an answer read before one is not kept
}

// get returns the cached flags, or the generation to pass to put with the flags
// read from the store.
func (c *deviceCache) get(user, device string) (admin.State, bool, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[deviceKey{user, device}]
	if !ok || time.Since(e.at) >= deviceStateTTL {
		return admin.State{}, false, c.gen
	}
	return e.st, true, c.gen
}

// put keeps st, read at at, unless the cache was cleared since get returned gen.
func (c *deviceCache) put(user, device string, st admin.State, at time.Time, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.m == nil {
		c.m = map[deviceKey]cachedState{}
	}
	if len(c.m) >= maxCachedDevices {
		for k, e := range c.m {
			if time.Since(e.at) >= deviceStateTTL {
				delete(c.m, k)
			}
		}
		if len(c.m) >= maxCachedDevices {
			clear(c.m)
		}
	}
	c.m[deviceKey{user, device}] = cachedState{st, at}
}

// clear forgets every entry (a flag changed through this process).
func (c *deviceCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.m)
	c.gen++
}
