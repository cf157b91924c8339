// Module distconsts is modelci's stand-in for the engine's distribution
// constants module, which the Go module proxy does not serve. tools/dagger
// points a replace line at it. The values are ours: they describe how
// tools/dagger/engine.sh lays the engine out on a CI host.
module github.com/dagger/dagger/engine/distconsts

go 1.24
