package k8stest

// DebianBuilds is the number of Debian images this test binary built rather than found in the
// cache.
func DebianBuilds() int64 { return debianBuilds.Load() }
