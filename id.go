package melonsync

// ValidID reports whether id may name a record or a device: it matches
// ^[A-Za-z0-9_.-]{1,64}$. The server refuses other record ids and device headers;
// the Go client refuses them before they reach its database.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}
