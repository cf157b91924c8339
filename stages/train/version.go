package train

// Version identifies the built-in trainer's algorithm in run records and
// provenance; it changes whenever the same inputs could train a different model.
const Version = "linear-gd/1"
