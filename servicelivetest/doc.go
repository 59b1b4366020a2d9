// Package servicelivetest provides fakes and conformance suites for testing
// code built on servicelive, in the manner of net/http/httptest and
// testing/fstest.
//
// NewHarness builds, in one call, a servicelive.Manager over a MemoryStore
// seeded with the test's deckies, a Registry of its services, a fake
// Composer and a fake Bus:
//
//	func TestAddSSH(t *testing.T) {
//		h := servicelivetest.NewHarness(t,
//			map[string][]servicelive.Decky{"": {{Name: "web1", Image: "decnet/base"}}},
//			[]servicelive.Service{{Name: "ssh", Image: "decnet/ssh"}},
//			servicelivetest.Deployed())
//		if _, err := h.Manager.AddService(t.Context(), servicelive.FleetDecky("web1"), "ssh"); err != nil {
//			t.Fatal(err)
//		}
//		if got := h.Composer.Ops(); !slices.Equal(got, []string{"up decnet web1-ssh"}) {
//			t.Errorf("engine calls %q", got)
//		}
//		h.AssertEvents("decky.web1.service_added service=ssh services=ssh")
//	}
//
// Composer is a recording, concurrency-safe servicelive.Composer (and
// ProjectRemover and ContainerLister) that keeps the containers it made and
// fails on demand (FailNext, FailOn, SetHook, SetDelay). It is strict by
// default, its zero value included: like a container engine, it refuses to
// start a decky's service while the decky's base is not running, so a test
// that forgets Manager.Deploy fails as production would (ErrBaseNotRunning).
// Composer.Lenient, or Lenient() for a Harness, turns that off. Its call
// log reads as comparable strings (Composer.Ops): "up decnet web1-ssh",
// "down decnet web1-ssh", "remove_project decnet".
//
// Bus is a recording servicelive.Bus that fails on demand (Fail, FailNext);
// Bus.Topics lists what it carried, and AssertEvents checks events against
// one-line wants such as "decky.web1.service_added service=ssh", printing
// every event beside its want on a mismatch.
//
// TestStore checks any servicelive.Store implementation against the Store
// contract.
//
// None of this is meant for production use.
package servicelivetest
