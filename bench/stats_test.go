package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// series is one figure's per-round durations.
type series []time.Duration

func (s series) sorted() series { c := slices.Clone(s); slices.Sort(c); return c }

func (s series) median() time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := s.sorted()
	n := len(c)
	if n%2 == 1 {
		return c[n/2]
	}
	return (c[n/2-1] + c[n/2]) / 2
}

func (s series) min() time.Duration { return slices.Min(s) }
func (s series) max() time.Duration { return slices.Max(s) }

// medianFloat is the median of xs.
func medianFloat(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	c := slices.Clone(xs)
	slices.Sort(c)
	n := len(c)
	if n%2 == 1 {
		return c[n/2]
	}
	return (c[n/2-1] + c[n/2]) / 2
}

// pairedRatio is the median over rounds of a[i]/c[i].
func pairedRatio(a, c series) float64 {
	xs := make([]float64, len(a))
	for i := range a {
		xs[i] = float64(a[i]) / float64(c[i])
	}
	return medianFloat(xs)
}

// pairedDiff is the median over rounds of a[i]-c[i].
func pairedDiff(a, c series) time.Duration {
	d := make(series, len(a))
	for i := range a {
		d[i] = a[i] - c[i]
	}
	return d.median()
}

// ms formats d in milliseconds.
func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

// verdict is PASS when ok.
func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

// report collects one benchmark's Markdown section.
type report struct {
	strings.Builder
	from int    // start of the rows being marked
	rows string // the marked rows: the section's figures against their targets
}

// mark starts the rows that summary keeps.
func (r *report) mark() { r.from = r.Len() }

// summary keeps the rows written since mark for the summary table.
func (r *report) summary() { r.rows += r.String()[r.from:] }

func (r *report) f(format string, args ...any) { fmt.Fprintf(r, format, args...) }

// write stores the section as <name>.md in $SERVICELIVE_BENCH_REPORT_DIR
// (when set) and logs it.
func (r *report) write(b *testing.B, name string) {
	b.Helper()
	b.Log("\n" + r.String())
	dir := os.Getenv(envReportDir)
	if dir == "" {
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name+".md"), []byte(r.String()), 0o644); err != nil {
		b.Error(err)
	}
	if r.rows != "" {
		if err := os.WriteFile(filepath.Join(dir, name+".summary.md"), []byte(r.rows), 0o644); err != nil {
			b.Error(err)
		}
	}
}

// envInt returns the integer in environment variable name, or def.
func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var n int
	if _, err := fmt.Sscan(v, &n); err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}
