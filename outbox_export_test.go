package servicelive

// SetTestHookTick sets a function each timer round of a relay runs first,
// given its Manager (nil: none), for the tests of package servicelive_test.
func SetTestHookTick(f func(*Manager)) {
	if f == nil {
		testHookTick.Store(nil)
		return
	}
	testHookTick.Store(&f)
}
