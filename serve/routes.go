package serve

import "bytes"

// route is a route template: the unit of dispatch and the "route" label of
// the request metrics. Every path maps to one of a fixed set, whatever the
// model names and versions in it, so the label's cardinality is bounded.
type route uint8

const (
	routeOther route = iota // no route: 404
	routePredict
	routeProcess
	routeHealthz
	routeReadyz
	routeMetrics
	routeV2Server            // GET /v2
	routeV2Live              // GET /v2/health/live
	routeV2Ready             // GET /v2/health/ready
	routeV2Model             // GET /v2/models/{name}
	routeV2ModelVersion      // GET /v2/models/{name}/versions/{version}
	routeV2ModelReady        // GET /v2/models/{name}/ready
	routeV2ModelVersionReady // GET /v2/models/{name}/versions/{version}/ready
	routeV2Infer             // POST /v2/models/{name}/infer
	routeV2InferVersion      // POST /v2/models/{name}/versions/{version}/infer
	routeV1Model             // GET /v1/models/{name}
	routeV1Predict           // POST /v1/models/{name}:predict
	routeInvocations         // POST /invocations (MLflow scoring)
	routePing                // GET /ping (MLflow)
	numRoutes
)

// routeLabels are the metric labels; existing ones are stable, as
// dashboards and deploy's canary analysis query them.
var routeLabels = [numRoutes]string{
	routeOther:               "other",
	routePredict:             "/predict",
	routeProcess:             "/process_data",
	routeHealthz:             "/healthz",
	routeReadyz:              "/readyz",
	routeMetrics:             "/metrics",
	routeV2Server:            "/v2",
	routeV2Live:              "/v2/health/live",
	routeV2Ready:             "/v2/health/ready",
	routeV2Model:             "/v2/models/{name}",
	routeV2ModelVersion:      "/v2/models/{name}/versions/{version}",
	routeV2ModelReady:        "/v2/models/{name}/ready",
	routeV2ModelVersionReady: "/v2/models/{name}/versions/{version}/ready",
	routeV2Infer:             "/v2/models/{name}/infer",
	routeV2InferVersion:      "/v2/models/{name}/versions/{version}/infer",
	routeV1Model:             "/v1/models/{name}",
	routeV1Predict:           "/v1/models/{name}:predict",
	routeInvocations:         "/invocations",
	routePing:                "/ping",
}

// predicts reports whether the route serves predictions: it exists only
// when the server's role predicts.
func (r route) predicts() bool {
	switch r {
	case routePredict, routeV2Infer, routeV2InferVersion, routeV1Predict, routeInvocations:
		return true
	}
	return false
}

// target is the model a V1 or V2 path names: slices of the path, valid
// while the request is.
type target struct {
	name, version []byte
}

// parseRoute maps a request path (decoded) to its route template and the
// model name and version in it.
func parseRoute(path []byte) (route, target) {
	switch string(path) {
	case "/predict":
		return routePredict, target{}
	case "/process_data":
		return routeProcess, target{}
	case "/healthz":
		return routeHealthz, target{}
	case "/readyz":
		return routeReadyz, target{}
	case "/metrics":
		return routeMetrics, target{}
	case "/v2", "/v2/":
		return routeV2Server, target{}
	case "/v2/health/live":
		return routeV2Live, target{}
	case "/v2/health/ready":
		return routeV2Ready, target{}
	case "/invocations":
		return routeInvocations, target{}
	case "/ping":
		return routePing, target{}
	}
	if rest, ok := bytes.CutPrefix(path, []byte("/v2/models/")); ok {
		return parseV2Model(rest)
	}
	if rest, ok := bytes.CutPrefix(path, []byte("/v1/models/")); ok {
		if name, ok := bytes.CutSuffix(rest, []byte(":predict")); ok && len(name) > 0 {
			return routeV1Predict, target{name: name}
		}
		if len(rest) > 0 && bytes.IndexAny(rest, "/:") < 0 {
			return routeV1Model, target{name: rest}
		}
	}
	return routeOther, target{}
}

// parseV2Model parses what follows /v2/models/: {name}[/versions/{v}][/ready|/infer].
func parseV2Model(rest []byte) (route, target) {
	op := 0 // 0 metadata, 1 ready, 2 infer
	if r, ok := bytes.CutSuffix(rest, []byte("/infer")); ok {
		rest, op = r, 2
	} else if r, ok := bytes.CutSuffix(rest, []byte("/ready")); ok {
		rest, op = r, 1
	}
	var t target
	versioned := false
	if i := bytes.LastIndex(rest, []byte("/versions/")); i >= 0 {
		t.name, t.version, versioned = rest[:i], rest[i+len("/versions/"):], true
		if len(t.version) == 0 || bytes.IndexByte(t.version, '/') >= 0 {
			return routeOther, target{}
		}
	} else {
		t.name = rest
	}
	if len(t.name) == 0 || bytes.IndexByte(t.name, '/') >= 0 {
		return routeOther, target{}
	}
	routes := [2][3]route{
		{routeV2Model, routeV2ModelReady, routeV2Infer},
		{routeV2ModelVersion, routeV2ModelVersionReady, routeV2InferVersion},
	}
	v := 0
	if versioned {
		v = 1
	}
	return routes[v][op], t
}
