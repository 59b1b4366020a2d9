package servicelive_test

import (
	"fmt"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/decnet/servicelive"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, topic string
		want           bool
	}{
		// literals
		{"decky.web1.service_added", "decky.web1.service_added", true},
		{"decky.web1.service_added", "decky.web2.service_added", false},
		{"decky.web1.service_added", "decky.web1.service_removed", false},
		{"Decky.web1.service_added", "decky.web1.service_added", false}, // case-sensitive
		{"a", "a", true},
		{"a", "b", false},
		{"ab", "a", false},
		{"a", "ab", false},
		// length mismatch
		{"decky.web1", "decky.web1.service_added", false},
		{"decky.web1.service_added", "decky.web1", false},
		{"decky.web1.service_added.x", "decky.web1.service_added", false},
		// "*" in every position
		{"*", "decky", true},
		{"*", "decky.web1", false},
		{"decky.*.service_added", "decky.web1.service_added", true},
		{"decky.*.service_added", "decky.web1.service_removed", false},
		{"decky.*.service_added", "decky.service_added", false},
		{"decky.*.service_added", "decky.a.b.service_added", false},
		{"*.web1.*", "decky.web1.service_added", true},
		{"*.*.*", "decky.web1.service_added", true},
		{"*.*", "decky.web1.service_added", false},
		{"*.*.*.*", "decky.web1.service_added", false},
		{"decky.web1.*", "decky.web1.service_added", true},
		{"decky.web1.*", "decky.web1", false},
		// ">" matches one or more trailing tokens
		{">", "decky", true},
		{">", "decky.web1.service_added", true},
		{"decky.>", "decky.web1", true},
		{"decky.>", "decky.web1.service_added", true},
		{"decky.>", "decky", false},
		{"decky.>", "deckyx.web1", false},
		{"decky.web1.>", "decky.web1.service_added", true},
		{"decky.web1.>", "decky.web2.service_added", false},
		{"decky.web1.service_added.>", "decky.web1.service_added", false},
		{"*.>", "decky.web1", true},
		{"*.>", "decky", false},
		// ">" not last: an invalid pattern never matches
		{">.service_added", "decky.service_added", false},
		{"decky.>.service_added", "decky.web1.service_added", false},
		{">.>", "a.b", false},
		// partial-token wildcards are invalid, not wildcards
		{"decky.web*.service_added", "decky.web1.service_added", false},
		{"decky.web*.service_added", "decky.web*.service_added", false},
		{"decky.>x", "decky.>x", false},
		// invalid patterns
		{"", "decky", false},
		{".", "decky", false},
		{"decky.", "decky", false},
		{".decky", "decky", false},
		{"decky..web1", "decky.web1", false},
		{"decky.web1.", "decky.web1", false},
		{"decky. web1", "decky. web1", false},
		// invalid topics never match, not even ">"
		{">", "", false},
		{">", ".", false},
		{">", "decky.", false},
		{">", ".decky", false},
		{">", "decky..web1", false},
		{"decky.*.x", "decky..x", false},
		{"*", "", false},
		{">", "decky.*", false},
		{">", "decky.>", false},
		{"*", "*", false},
		{">", "web 1", false},
		{">", "web\t1", false},
		{">", "web\x001", false},
		{">", "web\xff", false},
		{">", "web\u00a01", false}, // no-break space
		// printable non-ASCII is fine
		{"décky.*", "décky.wéb1", true},
		{"décky.*", "decky.web1", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+"|"+tt.topic, func(t *testing.T) {
			if got := servicelive.Match(tt.pattern, tt.topic); got != tt.want {
				t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.topic, got, tt.want)
			}
			if got := refMatch(tt.pattern, tt.topic); got != tt.want {
				t.Errorf("refMatch(%q, %q) = %v, want %v (the test oracle is wrong)", tt.pattern, tt.topic, got, tt.want)
			}
		})
	}
}

func TestValidTopic(t *testing.T) {
	tests := []struct {
		topic string
		want  bool
	}{
		{"decky", true},
		{"decky.web1.service_added", true},
		{"a.b-c.d_e.F~!@#$%^&()", true},
		{"décky.wéb1", true},
		{"", false},
		{".", false},
		{"..", false},
		{".decky", false},
		{"decky.", false},
		{"decky..web1", false},
		{"decky.*", false},
		{"decky.>", false},
		{"decky.web*", false},
		{"decky.w>b", false},
		{"decky web1", false},
		{"decky.\tweb1", false},
		{"decky\n", false},
		{"decky\x7f", false},
		{"decky\x00", false},
		{"decky\xc3", false},       // truncated UTF-8
		{"decky\u2028", false},     // line separator
		{"decky\u00a0web1", false}, // no-break space
	}
	for _, tt := range tests {
		if got := servicelive.ValidTopic(tt.topic); got != tt.want {
			t.Errorf("ValidTopic(%q) = %v, want %v", tt.topic, got, tt.want)
		}
	}
}

func TestValidPattern(t *testing.T) {
	tests := []struct {
		pattern string
		want    bool
	}{
		{"decky.web1.service_added", true},
		{"*", true},
		{">", true},
		{"decky.*", true},
		{"decky.>", true},
		{"*.*.>", true},
		{"decky.*.service_added", true},
		{"", false},
		{".", false},
		{"decky.", false},
		{".>", false},
		{"decky..>", false},
		{">.decky", false},
		{"decky.>.service_added", false},
		{">.>", false},
		{"decky.web*", false},
		{"decky.*web", false},
		{"decky.>>", false},
		{"decky.**", false},
		{"decky web1.>", false},
	}
	for _, tt := range tests {
		if got := servicelive.ValidPattern(tt.pattern); got != tt.want {
			t.Errorf("ValidPattern(%q) = %v, want %v", tt.pattern, got, tt.want)
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	cases := [][2]string{
		{"decky.*.service_added", "decky.web1.service_added"},
		{"decky.>", "decky.web1.service_added"},
		{"décky.*", "décky.wéb1"},
		{"decky..x", "decky.web1.x"},
	}
	for _, c := range cases {
		allocs := testing.AllocsPerRun(100, func() {
			servicelive.Match(c[0], c[1])
			servicelive.ValidTopic(c[1])
			servicelive.ValidPattern(c[0])
		})
		if allocs != 0 {
			t.Errorf("Match(%q, %q): %v allocations per run, want 0", c[0], c[1], allocs)
		}
	}
}

// FuzzMatch checks Match against the properties of NATS subject matching and
// against refMatch, a naive implementation built on strings.Split.
func FuzzMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"decky.*.service_added", "decky.web1.service_added"},
		{"decky.>", "decky"},
		{">", "decky.web1.service_removed"},
		{"decky.>.x", "decky.a.x"},
		{"*", ""},
		{"a..b", "a..b"},
		{"décky.*", "décky.wéb1"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, topic string) {
		got := servicelive.Match(pattern, topic)
		if want := refMatch(pattern, topic); got != want {
			t.Fatalf("Match(%q, %q) = %v, refMatch says %v", pattern, topic, got, want)
		}
		if got && (!servicelive.ValidPattern(pattern) || !servicelive.ValidTopic(topic)) {
			t.Fatalf("Match(%q, %q) = true with an invalid pattern or topic", pattern, topic)
		}
		// ">" anywhere but last makes a pattern match nothing.
		if i := strings.Index(pattern, ">"); i >= 0 && i < len(pattern)-1 && got {
			t.Fatalf("Match(%q, %q) = true but \">\" is not the last token", pattern, topic)
		}
		if servicelive.ValidTopic(topic) {
			oneToken := !strings.Contains(topic, ".")
			for _, d := range []struct {
				pattern string
				want    bool
			}{
				{topic, true},                               // a topic matches itself
				{">", true},                                 // ">" matches every valid topic
				{wildcardAll(topic), true},                  // "*" for every token
				{replaceLast(topic), true},                  // the last token replaced by ">"
				{topic[:firstDot(topic)] + ".>", !oneToken}, // the first token then ">"
				{"*.>", !oneToken},                          // at least two tokens
				{topic + ".>", false},                       // ">" needs at least one token
				{topic + ".*", false},                       // one token too many
				{">." + topic, false},                       // ">" not last
			} {
				if got := servicelive.Match(d.pattern, topic); got != d.want {
					t.Fatalf("Match(%q, %q) = %v, want %v", d.pattern, topic, got, d.want)
				}
				if valid := servicelive.ValidPattern(d.pattern); valid != !strings.HasPrefix(d.pattern, ">.") {
					t.Fatalf("ValidPattern(%q) = %v", d.pattern, valid)
				}
			}
		} else if servicelive.Match(">", topic) {
			t.Fatalf("Match(\">\", %q) = true for an invalid topic", topic)
		}
	})
}

// refMatch is a straightforward, allocating implementation of Match.
func refMatch(pattern, topic string) bool {
	validTok := func(tok string) bool {
		if tok == "" || !utf8.ValidString(tok) {
			return false
		}
		for _, r := range tok {
			if !unicode.IsPrint(r) || unicode.IsSpace(r) || strings.ContainsRune(".*>", r) {
				return false
			}
		}
		return true
	}
	tt := strings.Split(topic, ".")
	for _, tok := range tt {
		if !validTok(tok) {
			return false
		}
	}
	pt := strings.Split(pattern, ".")
	for i, tok := range pt {
		switch tok {
		case ">":
			return i == len(pt)-1 && len(tt) > i
		case "*":
			if i >= len(tt) {
				return false
			}
		default:
			if !validTok(tok) || i >= len(tt) || tok != tt[i] {
				return false
			}
		}
	}
	return len(pt) == len(tt)
}

func wildcardAll(topic string) string {
	return strings.Repeat("*.", strings.Count(topic, ".")) + "*"
}

func replaceLast(topic string) string {
	if i := strings.LastIndex(topic, "."); i >= 0 {
		return topic[:i] + ".>"
	}
	return ">"
}

func firstDot(topic string) int {
	if i := strings.Index(topic, "."); i >= 0 {
		return i
	}
	return len(topic)
}

func BenchmarkMatch(b *testing.B) {
	benches := []struct{ name, pattern, topic string }{
		{"literal", "decky.web1.service_added", "decky.web1.service_added"},
		{"star", "decky.*.service_added", "decky.web1.service_added"},
		{"gt", "decky.>", "decky.web1.service_added"},
		{"mismatch", "decky.web2.service_added", "decky.web1.service_added"},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				servicelive.Match(bb.pattern, bb.topic)
			}
		})
	}
}

func ExampleMatch() {
	topic := servicelive.Event{Kind: servicelive.ServiceAdded, Decky: "web1"}.Topic()
	for _, pattern := range []string{
		"decky.web1.service_added",
		"decky.*.service_added",
		"decky.*.service_removed",
		"decky.>",
		">",
		"decky.web1.service_added.>",
	} {
		fmt.Printf("%-27s %v\n", pattern, servicelive.Match(pattern, topic))
	}
	// Output:
	// decky.web1.service_added    true
	// decky.*.service_added       true
	// decky.*.service_removed     false
	// decky.>                     true
	// >                           true
	// decky.web1.service_added.>  false
}
