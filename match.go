package servicelive

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Match reports whether topic matches pattern, using NATS subject wildcards.
//
// Both are sequences of tokens separated by ".". In pattern, a "*" token
// matches exactly one token and a ">" token, valid only as the last one,
// matches one or more trailing tokens: "decky.*.service_added" matches
// "decky.web1.service_added", "decky.>" matches "decky.web1.service_added"
// but not "decky", and ">" matches every valid topic. Any other token matches
// only itself (case-sensitively).
//
// Match returns false when topic is not ValidTopic or pattern is not
// ValidPattern. It does not allocate.
func Match(pattern, topic string) bool {
	if !ValidTopic(topic) {
		return false
	}
	for {
		ptok, prest, pmore := strings.Cut(pattern, ".")
		ttok, trest, tmore := strings.Cut(topic, ".")
		switch ptok {
		case ">":
			// topic still has at least one token (ttok, non-empty since
			// topic is valid); ">" must be the pattern's last token.
			return !pmore
		case "*":
			// ttok is a valid token: "*" takes it, whatever it is.
		default:
			// topic is valid, so equality also proves ptok is a valid
			// literal token (non-empty, no wildcard or whitespace).
			if ptok != ttok {
				return false
			}
		}
		if pmore != tmore {
			return false // one of them has more tokens than the other
		}
		if !pmore {
			return true
		}
		pattern, topic = prest, trest
	}
}

// ValidTopic reports whether topic is a valid subject to publish on: one or
// more non-empty tokens separated by ".", each made of printable characters
// other than whitespace, "*" and ">". Event.Topic of an event whose Decky is
// a ValidDeckyName is always a ValidTopic.
func ValidTopic(topic string) bool {
	for {
		tok, rest, more := strings.Cut(topic, ".")
		if !validToken(tok) {
			return false
		}
		if !more {
			return true
		}
		topic = rest
	}
}

// ValidPattern reports whether p is a valid subscription pattern: tokens as
// in ValidTopic, except that a token may be the wildcard "*", and the last
// token may be the wildcard ">". A wildcard must be a whole token: "web*" is
// invalid.
func ValidPattern(p string) bool {
	for {
		tok, rest, more := strings.Cut(p, ".")
		switch {
		case tok == ">":
			return !more
		case tok == "*":
		case !validToken(tok):
			return false
		}
		if !more {
			return true
		}
		p = rest
	}
}

// validToken reports whether tok is a valid literal token: non-empty, valid
// UTF-8, printable, and free of whitespace, ".", "*" and ">".
func validToken(tok string) bool {
	if tok == "" {
		return false
	}
	for i := 0; i < len(tok); {
		c := tok[i]
		if c < utf8.RuneSelf {
			// ASCII: the printable, non-space range minus the separator
			// and the wildcards.
			if c <= ' ' || c >= 0x7f || c == '.' || c == '*' || c == '>' {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(tok[i:])
		if r == utf8.RuneError && size == 1 {
			return false // invalid UTF-8
		}
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return false
		}
		i += size
	}
	return true
}
