package registry

// Render exposes the progress renderer, terminal or not, to the tests.
var Render = render
