package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// FieldManager is modelci's server-side apply field manager.
const FieldManager = "modelci"

// Target is a cluster to deploy to.
type Target struct {
	Client kubernetes.Interface
	// Context is the kubeconfig context in use, for messages and reports.
	Context string
	// Server is the API server's URL, for reports.
	Server string
	// Config is the client configuration, for clients of other kinds.
	Config *rest.Config
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// NewTarget connects to the cluster of the kubeconfig's context (the kubeconfig file, or
// KUBECONFIG and ~/.kube/config when kubeconfig is empty; the current context when context is
// empty). A missing context is ErrContext.
func NewTarget(kubeconfig, context string) (*Target, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context})
	raw, err := cc.RawConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	name := context
	if name == "" {
		name = raw.CurrentContext
	}
	if _, ok := raw.Contexts[name]; !ok || name == "" {
		return nil, fmt.Errorf("kubeconfig %s: context %q: %w", kubeconfig, name, ErrContext)
	}
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: context %q: %w", kubeconfig, name, err)
	}
	t, err := NewTargetForConfig(cfg)
	if err != nil {
		return nil, err
	}
	t.Context = name
	return t, nil
}

// NewTargetForConfig connects with a client configuration.
func NewTargetForConfig(cfg *rest.Config) (*Target, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.UserAgent == "" {
		cfg.UserAgent = "modelci"
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", cfg.Host, err)
	}
	return &Target{Client: c, Server: cfg.Host, Config: cfg}, nil
}

func (t *Target) logf(format string, args ...any) {
	if t.Log != nil {
		fmt.Fprintf(t.Log, format+"\n", args...)
	}
}

// classify wraps err with the sentinel callers act on: ErrForbidden, ErrUnreachable.
func classify(err error) error {
	if err == nil {
		return nil
	}
	switch {
	case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
		return fmt.Errorf("%w: %w", ErrForbidden, err)
	case unreachable(err):
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	return err
}

func unreachable(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	return errors.As(err, &op) || errors.As(err, &dns) || errors.Is(err, syscall.ECONNREFUSED)
}

// apply server-side applies obj with modelci's field manager, taking ownership of the fields
// it sets even where another manager (kubectl, an HPA) set them last.
func (t *Target) apply(ctx context.Context, obj runtime.Object) error {
	body, err := applyJSON(obj)
	if err != nil {
		return err
	}
	m, err := metaOf(obj)
	if err != nil {
		return err
	}
	ns, name := m.GetNamespace(), m.GetName()
	kind := obj.GetObjectKind().GroupVersionKind().Kind
	opts := metav1.PatchOptions{FieldManager: FieldManager, Force: ptr(true)}
	switch kind {
	case "Deployment":
		_, err = t.Client.AppsV1().Deployments(ns).Patch(ctx, name, types.ApplyPatchType, body, opts)
	case "Service":
		_, err = t.Client.CoreV1().Services(ns).Patch(ctx, name, types.ApplyPatchType, body, opts)
	case "PodDisruptionBudget":
		_, err = t.Client.PolicyV1().PodDisruptionBudgets(ns).Patch(ctx, name, types.ApplyPatchType, body, opts)
	case "HorizontalPodAutoscaler":
		_, err = t.Client.AutoscalingV2().HorizontalPodAutoscalers(ns).Patch(ctx, name, types.ApplyPatchType, body, opts)
	default:
		return fmt.Errorf("apply %s %s: unsupported kind", kind, name)
	}
	if err != nil {
		return fmt.Errorf("apply %s %s/%s: %w", kind, ns, name, classify(err))
	}
	return nil
}

// ensureNamespace checks that ns exists, creating it when create is set.
func (t *Target) ensureNamespace(ctx context.Context, ns string, create bool) error {
	_, err := t.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	switch {
	case err == nil:
		return nil
	case apierrors.IsForbidden(err):
		// A namespaced deployer may not read namespaces; the first write will tell.
		return nil
	case apierrors.IsNotFound(err) && create:
		obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
		_, err := t.Client.CoreV1().Namespaces().Create(ctx, obj, metav1.CreateOptions{FieldManager: FieldManager})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create namespace %s: %w", ns, classify(err))
		}
		t.logf("created namespace %s", ns)
		return nil
	case apierrors.IsNotFound(err):
		return fmt.Errorf("namespace %s: %w (create it, or pass --create-namespace)", ns, ErrNamespaceNotFound)
	}
	return fmt.Errorf("namespace %s: %w", ns, classify(err))
}

// Who names the person or workflow deploying: GITHUB_ACTOR on a runner, else user@host.
func Who() string {
	if a := os.Getenv("GITHUB_ACTOR"); a != "" {
		return a + " (github actions)"
	}
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}
