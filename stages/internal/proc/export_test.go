package proc

// SetMaxStageBytes lowers the staging bound for a test; the returned
// function restores it.
func SetMaxStageBytes(n int64) (restore func()) {
	old := maxStageBytes
	maxStageBytes = n
	return func() { maxStageBytes = old }
}
