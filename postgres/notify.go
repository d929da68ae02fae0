package postgres

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Other processes learn of a push's changes through NOTIFY (Watch). A NOTIFY inside
// the push's transaction would make PostgreSQL serialise the commits of all
// notifying transactions (it holds a database-wide lock from before the commit's WAL
// flush until after it), undoing parallel commits; so the notifications of committed
// writes are queued here and sent by one goroutine, many in one round trip, right
// after. The process's own streams are told directly (server.Service.deliver).
//
// A process that dies between a commit and its notifications leaves other
// processes' live streams unwoken until the next change or their next pull: a hint
// is lost, never data (every pull reads the store).

type note struct{ channel, payload string }

// notifier batches notes for one store.
type notifier struct {
	mu      sync.Mutex
	pending []note
	wake    chan struct{}
	once    sync.Once
	done    sync.WaitGroup
	store   *Store
}

// add queues notes and makes sure the sender runs.
func (n *notifier) add(notes []note) {
	if len(notes) == 0 {
		return
	}
	n.mu.Lock()
	n.pending = append(n.pending, notes...)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// start runs the sender until the store closes; it sends what is queued then.
func (n *notifier) start(s *Store) {
	n.store = s
	n.wake = make(chan struct{}, 1)
	n.done.Add(1)
	go func() {
		defer n.done.Done()
		for {
			select {
			case <-n.wake:
				n.send(s.base)
			case <-s.base.Done():
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				n.send(ctx)
				cancel()
				return
			}
		}
	}()
}

// maxNotesPerBatch bounds one round trip's notifications.
const maxNotesPerBatch = 512

// send sends every queued note, in batches (each batch is one transaction of
// pg_notify calls; PostgreSQL drops duplicates within one).
func (n *notifier) send(ctx context.Context) {
	for {
		n.mu.Lock()
		k := min(len(n.pending), maxNotesPerBatch)
		batch := append([]note(nil), n.pending[:k]...)
		n.pending = n.pending[k:]
		if len(n.pending) == 0 {
			n.pending = nil
		}
		n.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		b := &pgx.Batch{}
		for _, nt := range batch {
			b.Queue(`SELECT pg_notify($1, $2)`, nt.channel, nt.payload)
		}
		// A failure (the database is down) loses these hints; Watch catches up
		// when its connection comes back.
		_ = n.store.pool.SendBatch(ctx, b).Close()
	}
}
