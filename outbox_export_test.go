package servicelive

// SetTestHookTick sets a function each timer round of the relay runs first
// (nil: none), for the tests of package servicelive_test.
func SetTestHookTick(f func()) { testHookTick = f }
