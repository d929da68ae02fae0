package server

import (
	"testing"
)

func pending(ch <-chan int64) int64 {
	select {
	case v := <-ch:
		return v
	default:
		return 0
	}
}

// TestFeedOnce: a version announced twice (the pushing process, then the store's
// notification) or late is sent once; a device does not hear its own pushes, and
// those do not hide an older change of another device that arrives after them.
func TestFeedOnce(t *testing.T) {
	var f Feed
	phone, stop := f.Subscribe("alice", "phone")
	defer stop()
	any, stop2 := f.Subscribe("alice", "")
	defer stop2()

	f.Publish("alice", 5, "laptop") // the process that took the push
	f.Publish("alice", 5, "laptop") // the same commit, from LISTEN
	if v := pending(phone); v != 5 {
		t.Fatalf("phone got %d, want 5", v)
	}
	if v := pending(phone); v != 0 {
		t.Fatalf("phone got 5 and then %d: a version twice", v)
	}
	f.Publish("alice", 4, "laptop") // late: covered by 5
	if v := pending(phone); v != 0 {
		t.Errorf("phone got the late version %d", v)
	}

	f.Publish("alice", 9, "phone") // its own push
	if v := pending(phone); v != 0 {
		t.Errorf("phone got its own push %d", v)
	}
	f.Publish("alice", 8, "laptop") // committed before 9, announced after it
	if v := pending(phone); v != 8 {
		t.Errorf("phone got %d for laptop's version 8 that came after its own 9", v)
	}
	f.Publish("alice", 9, "phone") // the store's echo of phone's push
	if v := pending(phone); v != 0 {
		t.Errorf("phone got the echo of its own push %d", v)
	}
	// Unread versions fold into the newest.
	f.Publish("alice", 10, "")
	f.Publish("alice", 11, "")
	if v := pending(any); v != 11 {
		t.Errorf("device-less listener: %d, want 11 (folded)", v)
	}
	if v := pending(any); v != 0 {
		t.Errorf("device-less listener: then %d", v)
	}
	// Skip: the clock read on connect covers what came before.
	fresh, stop3 := f.Subscribe("alice", "tablet")
	defer stop3()
	f.Publish("alice", 12, "")
	f.Skip("alice", fresh, 12)
	f.Publish("alice", 12, "")
	if v := pending(fresh); v != 0 {
		t.Errorf("fresh listener got %d, covered by its ready clock", v)
	}
	f.Publish("bob", 13, "")
	if v := pending(fresh); v != 0 {
		t.Errorf("alice's listener got bob's %d", v)
	}
}
