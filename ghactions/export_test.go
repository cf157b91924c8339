package ghactions

import "io"

// SetDelimiterFunc replaces the delimiter generator until the returned
// function restores it.
func SetDelimiterFunc(f func() string) (restore func()) {
	old := newDelimiter
	newDelimiter = f
	return func() { newDelimiter = old }
}

// SetCommandWriter replaces where Annotate writes until restore.
func SetCommandWriter(w io.Writer) (restore func()) {
	old := commands
	commands = w
	return func() { commands = old }
}
