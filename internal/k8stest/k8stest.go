// Package k8stest runs a real Kubernetes control plane for tests: etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler as plain processes on loopback, with kwok standing in
// for kubelets on two fake nodes. Deployments really roll out; pods annotated
// NeverReadyAnnotation run but never become Ready.
//
// The binaries come from the directory named by MODELCI_K8S_BIN, which tools/k8s/build.sh fills
// and prints. Without it, Start skips the test.
//
// StartNode is the other cluster: a control plane without kwok and one real node (kubelet,
// containerd, runc, a bridge network of its own, a loopback registry), where containers really
// run. It is per host and shared by the test binaries that use it (node.go says how).
//
// Use it from TestMain, so that the control plane starts at most once per test binary and stops
// when the tests end:
//
//	func TestMain(m *testing.M) { k8stest.Main(m) }
//
//	func TestX(t *testing.T) {
//		c := k8stest.Start(t)
//		ns := c.Namespace(t)
//		...
//	}
package k8stest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	// EnvBin names the environment variable holding the binaries' directory.
	EnvBin = "MODELCI_K8S_BIN"
	// Context is the context name in every kubeconfig this package writes.
	Context = "modelci-test"
	// NeverReadyAnnotation on a pod makes kwok run it without ever making it Ready.
	NeverReadyAnnotation = "modelci.dev/simulate-never-ready"
	// Nodes is the number of fake nodes.
	Nodes = 2
	// Admin is the user name of the static admin token (group system:masters).
	Admin = "modelci-admin"

	startTimeout = 3 * time.Minute
	stopTimeout  = 15 * time.Second
)

//go:embed stages.yaml
var stagesYAML []byte

// Cluster is a running control plane.
type Cluster struct {
	// Bin is the directory of the binaries.
	Bin string
	// Server is the API server's URL.
	Server string
	// Kubeconfig is a kubeconfig file for the admin user, with the context Context selected.
	Kubeconfig string
	// Config is the admin's client configuration.
	Config *rest.Config
	// Client is the admin's clientset.
	Client kubernetes.Interface

	dir      string
	etcdURL  string
	procs    []*process
	detached bool
}

var (
	shared     *Cluster
	sharedErr  error
	sharedOnce sync.Once
	sharedMu   sync.Mutex
	started    bool
)

// Main runs the tests and then stops the shared control plane, if one was started, and leaves
// the real node (StartNode), stopping it if no other test binary uses it, before exiting with
// the tests' status. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	sharedMu.Lock()
	if started && shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "k8stest:", err)
		}
	}
	if nodeInUse {
		if err := leaveNode(); err != nil {
			fmt.Fprintln(os.Stderr, "k8stest: real node:", err)
		}
	}
	sharedMu.Unlock()
	os.Exit(code)
}

// Start returns the test binary's control plane, starting it on first use. It skips t when
// MODELCI_K8S_BIN is unset and fails it when the control plane cannot start.
func Start(t testing.TB) *Cluster {
	t.Helper()
	bin := os.Getenv(EnvBin)
	if bin == "" {
		t.Skipf("%s is not set: build the control plane with `export %s=$(tools/k8s/build.sh)` to run this test", EnvBin, EnvBin)
	}
	sharedOnce.Do(func() {
		sharedMu.Lock()
		defer sharedMu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		shared, sharedErr = New(ctx, bin)
		started = true
	})
	if sharedErr != nil {
		t.Fatalf("k8stest: %v", sharedErr)
	}
	return shared
}

// New starts a control plane from the binaries in bin. The caller must Stop it.
func New(ctx context.Context, bin string) (_ *Cluster, err error) {
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, fmt.Errorf("control plane binary %s in %s=%s: %w (run tools/k8s/build.sh)", b, EnvBin, bin, err)
		}
	}
	dir, err := os.MkdirTemp("", "modelci-k8stest-")
	if err != nil {
		return nil, fmt.Errorf("control plane directory: %w", err)
	}
	c := &Cluster{Bin: bin, dir: dir}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Stop())
		}
	}()
	if err := c.startControlPlane(ctx); err != nil {
		return nil, err
	}
	kwokPort, err := freePort()
	if err != nil {
		return nil, err
	}
	if _, err := c.start("kwok",
		"--kubeconfig="+c.Kubeconfig,
		"--config="+filepath.Join(dir, "kwok.yaml"),
		"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		"--server-address=127.0.0.1:"+strconv.Itoa(kwokPort),
	); err != nil {
		return nil, err
	}
	if err := c.addNodes(ctx); err != nil {
		return nil, err
	}
	if err := c.waitControllers(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// startControlPlane starts etcd, the API server, the controller manager and the scheduler with
// their files in c.dir.
func (c *Cluster) startControlPlane(ctx context.Context) error {
	token, err := randomHex(16)
	if err != nil {
		return err
	}
	if err := c.writeFiles(token); err != nil {
		return err
	}
	if err := c.startEtcd(ctx); err != nil {
		return err
	}
	if err := c.startAPIServer(ctx, token); err != nil {
		return err
	}
	for _, name := range []string{"kube-controller-manager", "kube-scheduler"} {
		if _, err := c.start(name,
			"--kubeconfig="+c.Kubeconfig,
			"--leader-elect=false",
			"--secure-port=0",
			"--v=1",
		); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) writeFiles(token string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("service account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return fmt.Errorf("service account public key: %w", err)
	}
	files := map[string][]byte{
		"sa.key":     pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		"sa.pub":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
		"tokens.csv": fmt.Appendf(nil, "%s,%s,%s,\"system:masters\"\n", token, Admin, Admin),
		"kwok.yaml":  stagesYAML,
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(c.dir, name), b, 0o600); err != nil {
			return fmt.Errorf("control plane file: %w", err)
		}
	}
	return nil
}

func (c *Cluster) startEtcd(ctx context.Context) error {
	client, err := freePort()
	if err != nil {
		return err
	}
	peer, err := freePort()
	if err != nil {
		return err
	}
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", client)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	p, err := c.start("etcd",
		"--name=default",
		"--data-dir="+filepath.Join(c.dir, "etcd"),
		"--listen-client-urls="+clientURL,
		"--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL,
		"--unsafe-no-fsync",
		"--log-level=warn",
	)
	if err != nil {
		return err
	}
	c.etcdURL = clientURL
	return poll(ctx, p, func() error { return httpOK(ctx, http.DefaultClient, clientURL+"/health", "") })
}

func (c *Cluster) startAPIServer(ctx context.Context, token string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	certDir := filepath.Join(c.dir, "cert")
	p, err := c.start("kube-apiserver",
		"--etcd-servers="+c.etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(port),
		"--cert-dir="+certDir,
		"--token-auth-file="+filepath.Join(c.dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--endpoint-reconciler-type=none",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+filepath.Join(c.dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(c.dir, "sa.key"),
		"--v=1",
	)
	if err != nil {
		return err
	}
	c.Server = fmt.Sprintf("https://127.0.0.1:%d", port)
	// The serving certificate is self-signed and written at start-up, so readiness is first
	// checked without verification; the kubeconfig then trusts the written certificate.
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if err := poll(ctx, p, func() error { return httpOK(ctx, insecure, c.Server+"/readyz", token) }); err != nil {
		return err
	}
	ca, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt"))
	if err != nil {
		return fmt.Errorf("api server certificate: %w", err)
	}
	c.Kubeconfig = filepath.Join(c.dir, "kubeconfig")
	kc := kubeconfig(c.Server, ca, token, "")
	if err := clientcmd.WriteToFile(*kc, c.Kubeconfig); err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	c.Config = &rest.Config{Host: c.Server, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: ca}, QPS: 100, Burst: 200}
	c.Client, err = kubernetes.NewForConfig(c.Config)
	if err != nil {
		return fmt.Errorf("clientset: %w", err)
	}
	return nil
}

func kubeconfig(server string, ca []byte, token, as string) *clientcmdapi.Config {
	kc := clientcmdapi.NewConfig()
	kc.Clusters[Context] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	kc.AuthInfos[Context] = &clientcmdapi.AuthInfo{Token: token, Impersonate: as}
	kc.Contexts[Context] = &clientcmdapi.Context{Cluster: Context, AuthInfo: Context}
	kc.CurrentContext = Context
	return kc
}

func (c *Cluster) addNodes(ctx context.Context) error {
	for i := range Nodes {
		name := fmt.Sprintf("kwok-node-%d", i)
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
			Labels:      map[string]string{"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok"},
		}}
		if _, err := c.Client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("fake node %s: %w", name, err)
		}
	}
	return nil
}

// waitControllers returns when kwok has made the nodes Ready and the controller manager has
// created the default service account, the first thing a new namespace needs.
func (c *Cluster) waitControllers(ctx context.Context) error {
	return poll(ctx, nil, func() error {
		for _, p := range c.procs {
			if err := p.exited(); err != nil {
				return &fatal{err}
			}
		}
		nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, n := range nodes.Items {
			if !nodeReady(&n) {
				return fmt.Errorf("node %s is not ready", n.Name)
			}
		}
		_, err = c.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

func nodeReady(n *corev1.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

var nonName = regexp.MustCompile(`[^a-z0-9-]+`)

// Namespace creates a namespace for t, named after the test, and deletes it when t ends.
func (c *Cluster) Namespace(t testing.TB) string {
	t.Helper()
	base := strings.Trim(nonName.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(base) > 48 {
		base = strings.Trim(base[:48], "-")
	}
	suffix, err := randomHex(3)
	if err != nil {
		t.Fatal(err)
	}
	name := base + "-" + suffix
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		err := c.Client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return name
}

// KubeconfigAs writes a kubeconfig that acts as user (impersonated by the admin), with the
// context Context, and returns its path. The user has only the rights RBAC gives it.
func (c *Cluster) KubeconfigAs(t testing.TB, user string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	kc := kubeconfig(c.Server, c.Config.CAData, c.Config.BearerToken, user)
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// Kubectl returns a kubectl command against the cluster.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, filepath.Join(c.Bin, "kubectl"), append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)...)
}

// Stop stops every process the cluster started, newest first (SIGTERM, then SIGKILL after a
// grace period), and removes its directory.
func (c *Cluster) Stop() error {
	var errs []error
	for i := len(c.procs) - 1; i >= 0; i-- {
		errs = append(errs, c.procs[i].stop())
	}
	c.procs = nil
	if c.dir != "" {
		errs = append(errs, os.RemoveAll(c.dir))
		c.dir = ""
	}
	return errors.Join(errs...)
}

// process is one started binary.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // set before done is closed
}

func (c *Cluster) start(name string, args ...string) (*process, error) {
	return c.startPath(name, filepath.Join(c.Bin, name), args...)
}

// startPath starts the program at path under the name name, logging to c.dir/name.log.
func (c *Cluster) startPath(name, path string, args ...string) (*process, error) {
	logPath := filepath.Join(c.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	defer f.Close()
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = c.dir
	// The kernel kills the child if the test binary dies without running Stop. The real node's
	// processes outlive the binary that started them, for the other binaries using the node, in
	// a session of their own; the last user stops them by PID.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if c.detached {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	c.procs = append(c.procs, p)
	return p, nil
}

// exited returns an error with the end of the process's log if it has exited.
func (p *process) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v): %s", p.name, p.err, tail(p.log))
	default:
		return nil
	}
}

func (p *process) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
	}
	if err := p.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("kill %s (pid %d): %w", p.name, p.cmd.Process.Pid, err)
	}
	<-p.done
	return nil
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// fatal stops poll at once.
type fatal struct{ err error }

func (f *fatal) Error() string { return f.err.Error() }

// poll calls check every 100 ms until it succeeds, p exits, check returns *fatal, or ctx ends.
func poll(ctx context.Context, p *process, check func() error) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if p != nil {
			if err := p.exited(); err != nil {
				return err
			}
		}
		err := check()
		if err == nil {
			return nil
		}
		var f *fatal
		if errors.As(err, &f) {
			return f.err
		}
		select {
		case <-ctx.Done():
			name := "control plane"
			if p != nil {
				name = p.name + ": " + tail(p.log)
			}
			return fmt.Errorf("waiting for %s: %w (last: %v)", name, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

func httpOK(ctx context.Context, client *http.Client, url, token string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return hex.EncodeToString(b), nil
}
