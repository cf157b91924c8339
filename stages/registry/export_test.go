package registry

import "os"

// Render exposes the progress renderer, terminal or not, to the tests.
var Render = render

// WithManifestWriter replaces the write of a manifest file's bytes (into
// its temporary file), so that tests can fail it as a full disk would.
func WithManifestWriter(write func(f *os.File, b []byte) (int, error)) ServeOption {
	return func(o *serveOptions) { o.writeManifest = write }
}

// WithBeforeTagWrite runs f just before each conditional tag PUT of a
// push, so that tests can line writers up at the worst moment.
func WithBeforeTagWrite(f func(tag string)) Option {
	return func(o *options) { o.beforeTagWrite = f }
}

// All applies opts in order, as one option.
func All(opts ...Option) Option {
	return func(o *options) {
		for _, opt := range opts {
			opt(o)
		}
	}
}
