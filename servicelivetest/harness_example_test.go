package servicelivetest_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
)

// In a test, NewHarness takes the test's *testing.T. An Example has none:
// exampleT stands in for it and prints what a test would report.
type exampleT struct{ testing.TB }

func (exampleT) Helper()                      {}
func (exampleT) Context() context.Context     { return context.Background() }
func (exampleT) Errorf(f string, args ...any) { fmt.Printf("FAIL: "+f+"\n", args...) }
func (exampleT) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }

func ExampleNewHarness() {
	var t testing.TB = exampleT{} // in a test: func TestWeb1SSH(t *testing.T)
	ctx := context.Background()

	h := servicelivetest.NewHarness(t,
		map[string][]servicelive.Decky{"": {{Name: "web1", Image: "decnet/base", Services: []string{"http"}}}},
		[]servicelive.Service{{Name: "ssh", Image: "decnet/ssh"}, {Name: "http", Image: "decnet/http"}},
		servicelivetest.Deployed(), // web1 and web1-http are running
	)

	web1 := servicelive.FleetDecky("web1")
	if _, err := h.Manager.AddService(ctx, web1, "ssh"); err != nil {
		t.Fatalf("add: %v", err)
	}
	if _, err := h.Manager.RemoveService(ctx, web1, "http"); err != nil {
		t.Fatalf("remove: %v", err)
	}

	fmt.Println(h.Composer.Ops())
	fmt.Println(h.Composer.RunningIn("decnet"))
	h.AssertEvents(
		"decky.web1.service_added service=ssh services=http,ssh",
		"decky.web1.service_removed service=http services=ssh",
	)
	// A wrong expectation prints every event beside what was wanted:
	h.AssertEvents("decky.web1.service_added service=ssh services=ssh")
	// Output:
	// [up decnet web1-ssh down decnet web1-http]
	// [web1 web1-ssh]
	// FAIL: events differ (got 2, want 1):
	//   0: got  decky.web1.service_added service=ssh services=http,ssh applied=true
	//      want decky.web1.service_added service=ssh services=ssh
	//      (services is "http,ssh")
	//   1: got  decky.web1.service_removed service=http services=ssh applied=true
	//      want (no more events)
}
