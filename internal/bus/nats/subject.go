package nats

import "strings"

// token turns an id into one NATS subject token that matches only
// itself. Ids are data: a tenant called "a.b" must not become two tokens
// (and be seen by a subscriber of tenant "a" with a wildcard run), "*" or
// ">" must not become wildcards, and whitespace would end the subject.
// Every byte outside [A-Za-z0-9_-] becomes ~XX (hex), '~' included, so
// that the mapping is one to one ("a~2eb" and "a.b" stay apart). The
// empty id (rejected earlier by validation) would be an empty token.
func token(id string) string {
	clean := true
	for i := 0; i < len(id); i++ {
		if !plain(id[i]) {
			clean = false
			break
		}
	}
	if clean {
		return id // the common case (ten_..., run_... ids): no allocation
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(id) + 8)
	for i := 0; i < len(id); i++ {
		c := id[i]
		if plain(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('~')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xF])
	}
	return b.String()
}

func plain(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// untoken is token's inverse; false if tok is not one of its results.
func untoken(tok string) (string, bool) {
	if !strings.Contains(tok, "~") {
		return tok, tok != ""
	}
	b := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c != '~' {
			b = append(b, c)
			continue
		}
		if i+2 >= len(tok) {
			return "", false
		}
		hi, lo := unhex(tok[i+1]), unhex(tok[i+2])
		if hi < 0 || lo < 0 {
			return "", false
		}
		b = append(b, byte(hi<<4|lo))
		i += 2
	}
	return string(b), true
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
