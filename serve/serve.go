// Package serve is the model server baked into every built-in image: a
// prediction endpoint, a preprocessing endpoint (what the model does to a
// raw row before its weights: imputation and one-hot encoding for a
// linear/v2 model, then the standardisation stored with the model), the
// Open Inference Protocol (KServe V2), KServe V1 and MLflow scoring routes,
// health probes and Prometheus metrics (docs/serving.md).
//
// A linear/v1 model takes rows of numbers. A linear/v2 model takes raw
// cells: a number, a string (read as a CSV cell: a number when it reads as
// one, a missing value when blank, a category otherwise) or null (a missing
// value), in the array and the object forms alike; a category the model
// did not see in training, or a missing value for a category feature that
// had no empty cell in training, is a 400 naming the feature and the value.
//
// One binary runs either role or both, so Kubernetes can run them as one
// Deployment or as two, as the seed article's two microservices do.
package serve

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/modelci/modelci/model"
)

// Role selects which endpoints a server answers.
type Role string

// The roles. Health probes and metrics are served in every role.
const (
	RoleAll        Role = "all"
	RolePredict    Role = "predict"
	RolePreprocess Role = "preprocess"
)

// ErrRole is wrapped by the error for an unknown role name.
var ErrRole = errors.New("unknown role")

// ParseRole parses a role name: predict, preprocess or all.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleAll, RolePredict, RolePreprocess:
		return r, nil
	}
	return "", fmt.Errorf("%w %q: want predict, preprocess or all", ErrRole, s)
}

func (r Role) predicts() bool     { return r == RoleAll || r == RolePredict }
func (r Role) preprocesses() bool { return r == RoleAll || r == RolePreprocess }

// DefaultMaxBodyBytes is the default request body limit; larger bodies get 413.
const DefaultMaxBodyBytes = 1 << 20

// Timeouts bounds the server's connections. A zero field keeps its default.
type Timeouts struct {
	ReadHeader time.Duration // default 5s
	Read       time.Duration // whole request, body included; default 30s
	Write      time.Duration // default 30s
	Idle       time.Duration // keep-alive connections; default 120s
	// Shutdown bounds the drain of in-flight requests after the context
	// is cancelled; default 25s, under Kubernetes' default grace period of 30s.
	Shutdown time.Duration
}

var defaultTimeouts = Timeouts{
	ReadHeader: 5 * time.Second,
	Read:       30 * time.Second,
	Write:      30 * time.Second,
	Idle:       120 * time.Second,
	Shutdown:   25 * time.Second,
}

type config struct {
	role     Role
	maxBody  int64
	logger   *slog.Logger
	registry *prometheus.Registry
	timeouts Timeouts
}

// Option configures a Server.
type Option func(*config)

// WithRole selects the endpoints to serve; the default is RoleAll.
func WithRole(r Role) Option { return func(c *config) { c.role = r } }

// WithMaxBodyBytes sets the request body limit; the default is DefaultMaxBodyBytes.
func WithMaxBodyBytes(n int64) Option { return func(c *config) { c.maxBody = n } }

// WithLogger sets the structured logger; the default discards everything.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithRegistry registers the server's metrics on r and serves r at /metrics.
// The default is a fresh registry with the Go runtime and process collectors.
func WithRegistry(r *prometheus.Registry) Option { return func(c *config) { c.registry = r } }

// WithTimeouts sets connection timeouts; zero fields keep their defaults.
func WithTimeouts(t Timeouts) Option { return func(c *config) { c.timeouts = t } }

// Server answers the model's HTTP API (docs/serving.md): modelci's own
// routes, the Open Inference Protocol (KServe V2) and KServe V1 routes,
// MLflow's scoring routes, probes and metrics. Serve and ListenAndServe
// run it on fasthttp with timeouts and graceful shutdown; it is also a
// fasthttp.RequestHandler (HandleFastHTTP) and an http.Handler (ServeHTTP).
type Server struct {
	model    *model.Linear
	onnx     *onnxModel // set instead of model for an ONNX model
	name     string     // the model's name and version, "" without a model
	version  string
	digest   string // of the model directory's files, when loaded by Open
	role     Role
	maxBody  int64
	log      *slog.Logger
	timeouts Timeouts
	metrics  *metrics
	metricsH http.Handler
	metricsF fasthttp.RequestHandler
	v2       *v2Model
	ready    atomic.Bool
}

// New returns a server for m. A nil m gives a server that is alive but not
// ready: /readyz and the model endpoints answer 503.
func New(m *model.Linear, opts ...Option) (*Server, error) {
	var name, version string
	if m != nil {
		if err := m.Validate(); err != nil {
			return nil, fmt.Errorf("serve model %q: %w", m.Name, err)
		}
		name, version = m.Name, m.Version
	}
	s, err := newServer(m, name, version, opts...)
	if err != nil {
		return nil, err
	}
	s.v2 = newV2Model(name, version, m, nil)
	s.ready.Store(m != nil)
	return s, nil
}

// newServer is a server for a model named name at version, not ready yet.
func newServer(m *model.Linear, name, version string, opts ...Option) (*Server, error) {
	c := config{role: RoleAll, maxBody: DefaultMaxBodyBytes}
	for _, o := range opts {
		o(&c)
	}
	if _, err := ParseRole(string(c.role)); err != nil {
		return nil, err
	}
	if c.maxBody <= 0 {
		return nil, fmt.Errorf("body limit %d: must be positive", c.maxBody)
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	if c.registry == nil {
		c.registry = prometheus.NewRegistry()
		c.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	c.timeouts = withDefaults(c.timeouts)
	met, err := newMetrics(c.registry, name, version, c.role)
	if err != nil {
		return nil, err
	}
	mh := metricsHandler(c.registry, c.logger)
	return &Server{
		model:    m,
		name:     name,
		version:  version,
		role:     c.role,
		maxBody:  c.maxBody,
		log:      c.logger,
		timeouts: c.timeouts,
		metrics:  met,
		metricsH: mh,
		metricsF: fasthttpadaptor.NewFastHTTPHandler(mh),
	}, nil
}

func withDefaults(t Timeouts) Timeouts {
	if t.ReadHeader == 0 {
		t.ReadHeader = defaultTimeouts.ReadHeader
	}
	if t.Read == 0 {
		t.Read = defaultTimeouts.Read
	}
	if t.Write == 0 {
		t.Write = defaultTimeouts.Write
	}
	if t.Idle == 0 {
		t.Idle = defaultTimeouts.Idle
	}
	if t.Shutdown == 0 {
		t.Shutdown = defaultTimeouts.Shutdown
	}
	return t
}

// LoadModel reads and validates dir/model.json.
func LoadModel(dir string) (*model.Linear, error) {
	path := filepath.Join(dir, model.FileName)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	m, err := model.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", path, err)
	}
	return m, nil
}
