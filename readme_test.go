package servicelive_test

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"
)

// TestREADMEUsage checks that the Go block of the README's Usage section is
// the body of Example (example_test.go), byte for byte, dedented one tab:
// the README shows code that compiles and runs (go test runs Example).
func TestREADMEUsage(t *testing.T) {
	want, err := exampleBody("example_test.go", "Example")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	got, err := sectionGoBlock(string(readme), "## Usage")
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
		i := 0
		for i < len(gl) && i < len(wl) && gl[i] == wl[i] {
			i++
		}
		line := func(ls []string) string {
			if i < len(ls) {
				return fmt.Sprintf("%q", ls[i])
			}
			return "(end of block)"
		}
		t.Errorf("README.md's Usage block differs from the body of Example in example_test.go at line %d of the block:\n"+
			"  README:  %s\n  Example: %s\nthe block should read:\n```go\n%s```", i+1, line(gl), line(wl), want)
	}
}

// exampleBody returns the body of the function name in the Go file path,
// without its braces, each line dedented one tab, ending with a newline.
func exampleBody(path, name string) (string, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, src, parser.ParseComments)
	if err != nil {
		return "", err
	}
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Name.Name != name || fn.Recv != nil {
			continue
		}
		body := src[fset.Position(fn.Body.Lbrace).Offset+1 : fset.Position(fn.Body.Rbrace).Offset]
		body = bytes.TrimPrefix(body, []byte("\n"))
		lines := strings.SplitAfter(string(body), "\n")
		var b strings.Builder
		for _, l := range lines {
			b.WriteString(strings.TrimPrefix(l, "\t"))
		}
		return b.String(), nil
	}
	return "", fmt.Errorf("%s: no func %s", path, name)
}

// sectionGoBlock returns the content of the first ```go block of the
// Markdown section whose heading line is heading, ending with a newline.
func sectionGoBlock(md, heading string) (string, error) {
	_, section, ok := strings.Cut(md, "\n"+heading+"\n")
	if !ok {
		return "", fmt.Errorf("README.md: no %q section", heading)
	}
	if next := strings.Index(section, "\n## "); next >= 0 {
		section = section[:next+1]
	}
	_, block, ok := strings.Cut(section, "\n```go\n")
	if !ok {
		return "", fmt.Errorf("README.md: no ```go block in %q", heading)
	}
	block, _, ok = strings.Cut(block, "\n```\n")
	if !ok {
		return "", fmt.Errorf("README.md: unterminated ```go block in %q", heading)
	}
	return block + "\n", nil
}

func TestExampleBody(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/x_test.go"
	src := "package x\n\nfunc Example() {\n\ta := 1\n\n\tif a > 0 {\n\t\tprintln(a)\n\t}\n\t// Output:\n}\n\nfunc Other() {}\n"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := exampleBody(path, "Example")
	if want := "a := 1\n\nif a > 0 {\n\tprintln(a)\n}\n// Output:\n"; err != nil || got != want {
		t.Errorf("exampleBody = %q, %v; want %q", got, err, want)
	}
	if _, err := exampleBody(path, "Missing"); err == nil {
		t.Error("no error for a missing function")
	}
	md := "# t\n\n## Usage\n\nprose\n\n```go\nx := 1\n```\n\n## Next\n\n```go\ny := 2\n```\n"
	if got, err := sectionGoBlock(md, "## Usage"); err != nil || got != "x := 1\n" {
		t.Errorf("sectionGoBlock = %q, %v", got, err)
	}
	if _, err := sectionGoBlock(md, "## Nope"); err == nil {
		t.Error("no error for a missing section")
	}
	if _, err := sectionGoBlock("## Usage\n\nno code\n\n## Next\n\n```go\ny\n```\n", "## Usage"); err == nil {
		t.Error("a block of the next section was taken")
	}
}
