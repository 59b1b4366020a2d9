// Package servicelivetest provides fakes and conformance suites for testing
// code built on servicelive, in the manner of net/http/httptest and
// testing/fstest.
//
// Composer is a recording, concurrency-safe servicelive.Composer (and
// servicelive.ProjectRemover) that keeps a simple set of running services
// and fails on demand; Bus is a recording servicelive.Bus. TestStore checks
// any servicelive.Store implementation against the Store contract.
//
// A test wires the fakes into the code under test and asserts on what they
// recorded:
//
//	composer := new(servicelivetest.Composer)
//	bus := new(servicelivetest.Bus)
//	// ... build the code under test with composer and bus, exercise it ...
//	if got := composer.Running(); !slices.Equal(got, []string{"web1-ssh"}) {
//		t.Errorf("running %q", got)
//	}
//	for _, e := range bus.Events() {
//		t.Log(e.Topic())
//	}
//
// None of this is meant for production use.
package servicelivetest
