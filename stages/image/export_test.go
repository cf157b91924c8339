package image

// IsStaticELF exposes the runtime check to the external tests.
var IsStaticELF = isStaticELF
