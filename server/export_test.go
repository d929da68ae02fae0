package server

// SetHeldLimit sets how many bytes of updated records one table's pull holds before
// it reads the table again (live.go), until the returned function restores it.
func SetHeldLimit(n int) (restore func()) {
	old := heldLimit
	heldLimit = n
	return func() { heldLimit = old }
}

// SetGapCheck turns the gap check of pulls (history.go) on or off, until the
// returned function restores it.
func SetGapCheck(on bool) (restore func()) {
	old := checkGaps
	checkGaps = on
	return func() { checkGaps = old }
}
