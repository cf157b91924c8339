package k8stest

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

const (
	// EnvNodeBin names the environment variable holding the node's binaries (kubelet, pause),
	// which tools/k8s/build-node.sh fills and prints.
	EnvNodeBin = "MODELCI_K8S_NODE_BIN"
	// EnvNodeRequired, set to 1, makes a node that cannot start fail the test instead of
	// skipping it: CI sets it, so that the real-node tests always run there.
	EnvNodeRequired = "MODELCI_K8S_NODE_REQUIRED"
	// NodeName is the real node's name: the API server dials the node by it for logs and
	// port-forward, and nothing here resolves another name.
	NodeName = "localhost"
	// NodeTest is the name tests skip with when the real node cannot start.
	NodeTest = "k8stest.StartNode (real node: kubelet + containerd + runc)"

	// The node's fixed, per-host resources: one node per host, whatever binary starts it.
	kubeletPort   = 20250
	nodeBridge    = "modelcinode0"
	nodeSubnet    = "10.213.0.0/24"
	nodeLockName  = "modelci-k8s-node.lock"
	nodeStateName = "modelci-k8s-node"
	pauseRepo     = "pause"
	// nodeGateway is the bridge's own address, where the pod registry listens: the bridge
	// plugin's isGateway would give it to the bridge at the first pod; the harness does, before.
	nodeGateway = "10.213.0.1"
)

// Node is the host's real node and its control plane: pods really run, in containers of
// containerd and runc, pulled from the node's loopback registry.
type Node struct {
	*Cluster
	// Registry is the loopback registry (HOST:PORT) the node pulls from, over plain HTTP. Push
	// the images pods run there.
	Registry string
	// PodRegistry (GATEWAY:PORT) serves the same content as Registry, over plain HTTP, on the
	// bridge's gateway address: pods on the bridge reach it (127.0.0.1 is their own loopback),
	// so does the host, and the node pulls images named after it too.
	PodRegistry string
	// Subnet is the pods' network, a bridge of the node's own: the host reaches pod IPs directly
	// (there is no kube-proxy, so Service IPs do not route).
	Subnet netip.Prefix
}

// nodeState is what the binary that started the node records for the others, in the state
// directory, under the lock.
type nodeState struct {
	// Procs are the node's processes by name, with their start times (to tell a reused PID).
	Procs []nodeProc `json:"procs"`
	// Users are the PIDs of the test binaries using the node.
	Users    []nodeProc `json:"users"`
	Server   string     `json:"server"`
	Token    string     `json:"token"`
	CA       []byte     `json:"ca"`
	Registry string     `json:"registry"`
	// PodRegistry is empty in the state of a node that older code started: joinNode adds it.
	PodRegistry string `json:"podRegistry,omitempty"`
	// Created are the host paths the node's parts create outside the state directory and that
	// did not exist before: removed when the node stops.
	Created []string `json:"created"`
	// Netns are the network namespaces that existed before, kept when the node stops.
	Netns []string `json:"netns"`
	// Chains are the iptables chains (TABLE/CHAIN) that existed before.
	Chains []string `json:"chains"`
	// Sysctls are the kernel settings the kubelet and the bridge plugin change, as they were
	// before: restored when the node stops.
	Sysctls map[string]string `json:"sysctls"`
}

// nodeSysctls are the kernel settings the kubelet sets at start (its kernel defaults:
// overcommit, panic on oops, keyring limits) and the bridge plugin (forwarding), under
// /proc/sys.
var nodeSysctls = []string{
	"vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops", "kernel/keys/root_maxkeys",
	"kernel/keys/root_maxbytes", "net/ipv4/ip_forward",
}

type nodeProc struct {
	Name  string `json:"name"`
	PID   int    `json:"pid"`
	Start string `json:"start"`
}

var (
	node      *Node
	nodeErr   error
	nodeOnce  sync.Once
	nodeInUse bool
)

// StartNode returns the host's real node, starting it on first use or joining the one another
// test binary started. It skips t, naming NodeTest, when the node cannot start (not root, no
// containerd, runc or CNI plugins, MODELCI_K8S_NODE_BIN unset), unless MODELCI_K8S_NODE_REQUIRED=1,
// which makes that a failure. Main leaves the node when the tests end; the last binary to leave
// stops it.
func StartNode(t testing.TB) *Node {
	t.Helper()
	nodeOnce.Do(func() {
		sharedMu.Lock()
		defer sharedMu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		node, nodeErr = joinNode(ctx)
		nodeInUse = nodeErr == nil
	})
	if nodeErr != nil {
		if os.Getenv(EnvNodeRequired) == "1" {
			t.Fatalf("%s: %v", NodeTest, nodeErr)
		}
		t.Skipf("%s cannot start: %v (set %s=1 to make this a failure)", NodeTest, nodeErr, EnvNodeRequired)
	}
	return node
}

// nodeDir is the node's state directory: one per host.
func nodeDir() string { return filepath.Join(os.TempDir(), nodeStateName) }

// lockNode takes the host's node lock; the returned function releases it.
func lockNode() (func(), error) {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), nodeLockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("node lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("node lock: %w", err)
	}
	return func() { f.Close() }, nil
}

func nodePrerequisites() (cp, nodeBin string, err error) {
	cp, nodeBin = os.Getenv(EnvBin), os.Getenv(EnvNodeBin)
	if cp == "" || nodeBin == "" {
		return "", "", fmt.Errorf("%s and %s must name the binaries: export %s=$(tools/k8s/build.sh) %s=$(tools/k8s/build-node.sh)", EnvBin, EnvNodeBin, EnvBin, EnvNodeBin)
	}
	if os.Geteuid() != 0 {
		return "", "", errors.New("the node needs root (mounts, cgroups, network namespaces)")
	}
	for _, p := range []string{
		filepath.Join(cp, "etcd"), filepath.Join(cp, "kube-apiserver"), filepath.Join(nodeBin, "kubelet"), filepath.Join(nodeBin, "pause"),
		"/usr/bin/containerd", "/usr/bin/containerd-shim-runc-v2", "/usr/sbin/runc", "/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/lib/cni/loopback",
		"/usr/bin/docker-registry",
	} {
		if _, err := os.Stat(p); err != nil {
			return "", "", fmt.Errorf("%w (Debian packages containerd, runc, containernetworking-plugins, docker-registry; tools/k8s/build.sh and build-node.sh)", err)
		}
	}
	return cp, nodeBin, nil
}

// joinNode adds this binary to the node's users, starting the node when none runs.
func joinNode(ctx context.Context) (*Node, error) {
	cp, nodeBin, err := nodePrerequisites()
	if err != nil {
		return nil, err
	}
	unlock, err := lockNode()
	if err != nil {
		return nil, err
	}
	defer unlock()
	self, err := procOf("test", os.Getpid())
	if err != nil {
		return nil, err
	}
	st, err := readNodeState()
	if err != nil {
		return nil, err
	}
	if st != nil {
		st.Users = slices.DeleteFunc(st.Users, func(p nodeProc) bool { return !p.alive() })
		if n, err := st.healthy(ctx, cp); err == nil {
			if st.PodRegistry == "" {
				// Started by older code, maybe for other binaries now: add what it lacks
				// rather than stop it under them.
				c := &Cluster{dir: nodeDir(), detached: true}
				if err := st.startPodRegistry(ctx, c); err != nil {
					return nil, fmt.Errorf("add the pod registry to the running node: %w", err)
				}
				st.Procs = append(st.Procs, procsOf(c)...)
				n.PodRegistry = st.PodRegistry
			}
			st.Users = append(st.Users, self)
			return n, writeNodeState(st)
		} else if len(st.Users) > 0 {
			return nil, fmt.Errorf("the node other test binaries use (pids %v) is unhealthy: %w", st.Users, err)
		}
		// A node nobody uses any more (its last user died without leaving): stop it first.
		if err := st.stop(); err != nil {
			return nil, fmt.Errorf("stop the abandoned node: %w", err)
		}
	}
	n, st, err := startNode(ctx, cp, nodeBin)
	if err != nil {
		return nil, err
	}
	st.Users = []nodeProc{self}
	return n, writeNodeState(st)
}

// leaveNode removes this binary from the node's users and stops the node if none is left.
func leaveNode() error {
	unlock, err := lockNode()
	if err != nil {
		return err
	}
	defer unlock()
	st, err := readNodeState()
	if err != nil || st == nil {
		return err
	}
	st.Users = slices.DeleteFunc(st.Users, func(p nodeProc) bool { return p.PID == os.Getpid() || !p.alive() })
	if len(st.Users) > 0 {
		return writeNodeState(st)
	}
	return st.stop()
}

func readNodeState() (*nodeState, error) {
	b, err := os.ReadFile(filepath.Join(nodeDir(), "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node state: %w", err)
	}
	var st nodeState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("node state %s: %w", filepath.Join(nodeDir(), "state.json"), err)
	}
	return &st, nil
}

func writeNodeState(st *nodeState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(nodeDir(), "state.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("node state: %w", err)
	}
	return os.Rename(tmp, filepath.Join(nodeDir(), "state.json"))
}

// procOf records pid with its start time, read from /proc.
func procOf(name string, pid int) (nodeProc, error) {
	start, err := procStart(pid)
	if err != nil {
		return nodeProc{}, err
	}
	return nodeProc{Name: name, PID: pid, Start: start}, nil
}

// procStart is field 22 of /proc/PID/stat (start time in clock ticks since boot); a zombie
// counts as gone.
func procStart(pid int) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", err
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return "", fmt.Errorf("process %d has exited", pid)
	}
	return f[19], nil
}

func (p nodeProc) alive() bool {
	start, err := procStart(p.PID)
	return err == nil && start == p.Start
}

// kill stops p: SIGTERM, then SIGKILL after the grace period; a PID that now names another
// process is left alone.
func (p nodeProc) kill() error {
	if !p.alive() {
		return nil
	}
	_ = syscall.Kill(p.PID, syscall.SIGTERM)
	deadline := time.Now().Add(stopTimeout)
	for p.alive() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !p.alive() {
		return nil
	}
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s (pid %d): %w", p.Name, p.PID, err)
	}
	for p.alive() {
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// healthy checks that every process of the node still runs and the node is Ready, and returns
// the Node for this binary.
func (st *nodeState) healthy(ctx context.Context, cp string) (*Node, error) {
	for _, p := range st.Procs {
		if !p.alive() {
			return nil, fmt.Errorf("%s (pid %d) has exited", p.Name, p.PID)
		}
	}
	c := &Cluster{Bin: cp, Server: st.Server, Kubeconfig: filepath.Join(nodeDir(), "kubeconfig"), detached: true}
	c.Config = &rest.Config{Host: st.Server, BearerToken: st.Token, TLSClientConfig: rest.TLSClientConfig{CAData: st.CA}, QPS: 100, Burst: 200}
	var err error
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return nil, err
	}
	n, err := c.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	if !nodeReady(n) {
		return nil, fmt.Errorf("node %s is not Ready", NodeName)
	}
	return &Node{Cluster: c, Registry: st.Registry, PodRegistry: st.PodRegistry, Subnet: netip.MustParsePrefix(nodeSubnet)}, nil
}

// startNode starts the control plane, the registries, containerd and the kubelet, detached from
// this binary, and waits for the node to be Ready.
func startNode(ctx context.Context, cp, nodeBin string) (_ *Node, _ *nodeState, err error) {
	dir := nodeDir()
	if err := os.RemoveAll(dir); err != nil {
		return nil, nil, fmt.Errorf("node directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("node directory: %w", err)
	}
	st := &nodeState{}
	for _, p := range []string{"/run/containerd", "/run/netns", "/var/lib/kubelet", "/etc/cni", "/opt/cni", "/opt/containerd"} {
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			st.Created = append(st.Created, p)
		}
	}
	st.Netns, _ = filepath.Glob("/run/netns/*")
	st.Chains = iptablesChains()
	st.Sysctls = map[string]string{}
	for _, k := range nodeSysctls {
		if b, err := os.ReadFile("/proc/sys/" + k); err == nil {
			st.Sysctls[k] = strings.TrimSpace(string(b))
		}
	}
	c := &Cluster{Bin: cp, dir: dir, detached: true}
	defer func() {
		if err != nil {
			st.Procs = procsOf(c)
			err = errors.Join(err, st.stop())
		}
	}()
	if err := c.startControlPlane(ctx); err != nil {
		return nil, nil, err
	}
	st.Server, st.Token, st.CA = c.Server, c.Config.BearerToken, c.Config.CAData

	regPort, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	st.Registry = "127.0.0.1:" + strconv.Itoa(regPort)
	if err := writeNodeFiles(dir, st.Registry); err != nil {
		return nil, nil, err
	}
	reg, err := c.startPath("registry", "/usr/bin/docker-registry", "serve", filepath.Join(dir, "registry.yaml"))
	if err != nil {
		return nil, nil, err
	}
	if err := poll(ctx, reg, func() error { return httpOK(ctx, http.DefaultClient, "http://"+st.Registry+"/v2/", "") }); err != nil {
		return nil, nil, err
	}
	if err := pushPause(ctx, filepath.Join(nodeBin, "pause"), st.Registry); err != nil {
		return nil, nil, err
	}
	if err := st.startPodRegistry(ctx, c); err != nil {
		return nil, nil, err
	}
	ctrd, err := c.startPath("containerd", "/usr/bin/containerd", "--config", filepath.Join(dir, "containerd.toml"))
	if err != nil {
		return nil, nil, err
	}
	sock := filepath.Join(dir, "containerd", "containerd.sock")
	if err := poll(ctx, ctrd, func() error { _, err := os.Stat(sock); return err }); err != nil {
		return nil, nil, err
	}
	kubelet, err := c.startPath("kubelet", filepath.Join(nodeBin, "kubelet"),
		"--config="+filepath.Join(dir, "kubelet.yaml"),
		"--kubeconfig="+c.Kubeconfig,
		"--root-dir="+filepath.Join(dir, "kubelet"),
		"--cert-dir="+filepath.Join(dir, "pki"),
		"--hostname-override="+NodeName,
		"--v=1",
	)
	if err != nil {
		return nil, nil, err
	}
	err = poll(ctx, kubelet, func() error {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !nodeReady(n) {
			return fmt.Errorf("node %s is not Ready", NodeName)
		}
		_, err = c.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	st.Procs = procsOf(c)
	return &Node{Cluster: c, Registry: st.Registry, PodRegistry: st.PodRegistry, Subnet: netip.MustParsePrefix(nodeSubnet)}, st, nil
}

func procsOf(c *Cluster) []nodeProc {
	var ps []nodeProc
	for _, p := range c.procs {
		if np, err := procOf(p.name, p.cmd.Process.Pid); err == nil {
			ps = append(ps, np)
		}
	}
	return ps
}

// startPodRegistry makes the node's bridge with its gateway address (the bridge plugin takes a
// bridge that exists with that address), serves the registry's storage there too, from a
// second process (one listens on one address), and lets containerd pull by that name. It works
// on a running node as well: the bridge may exist already, and containerd reads certs.d at each
// pull. The process is c's, in c.dir (the node's directory).
func (st *nodeState) startPodRegistry(ctx context.Context, c *Cluster) error {
	if err := ensureBridge(); err != nil {
		return err
	}
	port, err := freePortOn(nodeGateway)
	if err != nil {
		return err
	}
	addr := nodeGateway + ":" + strconv.Itoa(port)
	err = writeFiles(c.dir, map[string]string{
		"pod-registry.yaml":                          registryConfig(filepath.Join(c.dir, "registry"), addr),
		filepath.Join("certs.d", addr, "hosts.toml"): hostsTOML(addr),
	})
	if err != nil {
		return err
	}
	reg, err := c.startPath("pod-registry", "/usr/bin/docker-registry", "serve", filepath.Join(c.dir, "pod-registry.yaml"))
	if err != nil {
		return err
	}
	if err := poll(ctx, reg, func() error { return httpOK(ctx, http.DefaultClient, "http://"+addr+"/v2/", "") }); err != nil {
		// Detached: it would outlive this binary.
		return errors.Join(fmt.Errorf("pod registry: %w", err), reg.stop())
	}
	st.PodRegistry = addr
	return nil
}

// ensureBridge creates the node's bridge with its gateway address and brings it up; each step
// leaves what is there already.
func ensureBridge() error {
	cmds := [][]string{
		{"addr", "replace", nodeGateway + "/" + strconv.Itoa(netip.MustParsePrefix(nodeSubnet).Bits()), "dev", nodeBridge},
		{"link", "set", nodeBridge, "up"},
	}
	if _, err := os.Stat("/sys/class/net/" + nodeBridge); errors.Is(err, os.ErrNotExist) {
		cmds = append([][]string{{"link", "add", nodeBridge, "type", "bridge"}}, cmds...)
	}
	for _, args := range cmds {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("bridge %s: ip %s: %v: %s", nodeBridge, strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// freePortOn returns a port free on the local address host.
func freePortOn(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("free port on %s: %w", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// registryConfig is a registry's configuration: the two registries share the storage, which
// they keep without a cache, so that each sees at once what the other wrote.
func registryConfig(storage, addr string) string {
	return fmt.Sprintf(`version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: %s}
  delete: {enabled: true}
http: {addr: %q}
`, storage, addr)
}

// hostsTOML tells containerd to pull from the registry at addr over plain HTTP.
func hostsTOML(addr string) string {
	return fmt.Sprintf(`server = "http://%[1]s"
[host."http://%[1]s"]
  capabilities = ["pull", "resolve"]
`, addr)
}

// writeFiles writes files, named relative to dir, creating their directories.
func writeFiles(dir string, files map[string]string) error {
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return fmt.Errorf("node file: %w", err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			return fmt.Errorf("node file: %w", err)
		}
	}
	return nil
}

// writeNodeFiles writes the registry's, containerd's, the CNI network's and the kubelet's
// configuration into dir: everything they keep goes under dir.
func writeNodeFiles(dir, registry string) error {
	d := func(parts ...string) string { return filepath.Join(append([]string{dir}, parts...)...) }
	files := map[string]string{
		"registry.yaml": registryConfig(d("registry"), registry),
		// restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE, and runc fails every
		// sandbox that asks to lower its OOM score.
		"containerd.toml": fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[debug]
  address = %[5]q
[plugins."io.containerd.internal.v1.opt"]
  path = %[6]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "%[7]s/%[8]s:1"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = %[9]q
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[10]q
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %[11]q
`, d("containerd", "root"), d("containerd", "state"), d("containerd", "containerd.sock"), d("containerd", "ttrpc.sock"),
			d("containerd", "debug.sock"), d("containerd", "opt"), registry, pauseRepo, d("runc-root"), d("cni", "net.d"), d("certs.d")),
		filepath.Join("certs.d", registry, "hosts.toml"): hostsTOML(registry),
		// A bridge of the node's own, on a subnet of its own; no masquerading and no firewall
		// plugin, so that the network adds no iptables rules to the host. The gateway is the
		// address the harness gave the bridge.
		filepath.Join("cni", "net.d", "10-modelci.conflist"): fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "modelci-node",
  "plugins": [{
    "type": "bridge",
    "bridge": %q,
    "isGateway": true,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": %q, "gateway": %q}]], "dataDir": %q}
  }]
}
`, nodeBridge, nodeSubnet, nodeGateway, d("cni", "ipam")),
		// makeIPTablesUtilChains: false, or the kubelet adds DROP rules to the host's firewall.
		"kubelet.yaml": fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://%[1]s
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
address: 127.0.0.1
port: %[2]d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 0
staticPodPath: %[3]q
podLogsDir: %[4]q
makeIPTablesUtilChains: false
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
evictionHard: {memory.available: 100Mi, nodefs.available: 1%%, imagefs.available: 1%%, nodefs.inodesFree: 1%%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
`, d("containerd", "containerd.sock"), kubeletPort, d("static"), d("pods")),
	}
	for _, sub := range []string{"registry", "static", "pods", "runc-root", "cni/ipam"} {
		if err := os.MkdirAll(d(sub), 0o700); err != nil {
			return fmt.Errorf("node directory: %w", err)
		}
	}
	return writeFiles(dir, files)
}

// pushPause packs the static pause binary as a one-layer image and pushes it to the registry:
// the node reaches no other registry for its sandbox image.
func pushPause(ctx context.Context, bin, registry string) error {
	b, err := os.ReadFile(bin)
	if err != nil {
		return fmt.Errorf("pause binary: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "pause", Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(b); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	layer, err := tarball.LayerFromReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		return fmt.Errorf("pause layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return fmt.Errorf("pause image: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("pause image: %w", err)
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture, cfg.OS = runtime.GOARCH, "linux"
	cfg.Config = v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return fmt.Errorf("pause image: %w", err)
	}
	ref, err := name.ParseReference(registry+"/"+pauseRepo+":1", name.Insecure)
	if err != nil {
		return err
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("push the pause image to %s: %w", ref, err)
	}
	return nil
}

// stop stops the node's processes by PID, newest first, the pods' processes and containerd's
// shims included, and removes what the node created: mounts, cgroups, network namespaces, the
// bridge, iptables chains, directories; the kernel settings the kubelet changed are restored.
func (st *nodeState) stop() error {
	var errs []error
	dir := nodeDir()
	byName := map[string]nodeProc{}
	for _, p := range st.Procs {
		byName[p.Name] = p
	}
	// The kubelet first, so that it restarts nothing; then the pods' processes, then the
	// shims that watched them (they outlive containerd by design).
	if p, ok := byName["kubelet"]; ok {
		errs = append(errs, p.kill())
	}
	killCgroup("kubepods")
	for _, pid := range shimsOf(filepath.Join(dir, "containerd", "containerd.sock")) {
		if p, err := procOf("containerd-shim", pid); err == nil {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
			errs = append(errs, p.kill())
		}
	}
	for i := len(st.Procs) - 1; i >= 0; i-- {
		if st.Procs[i].Name != "kubelet" {
			errs = append(errs, st.Procs[i].kill())
		}
	}
	// The sandboxes' network namespaces are bind mounts in /run/netns; those that were there
	// before the node started are not its own.
	netns, _ := filepath.Glob("/run/netns/cni-*")
	netns = slices.DeleteFunc(netns, func(n string) bool { return slices.Contains(st.Netns, n) })
	errs = append(errs, unmountUnder(append([]string{dir + "/"}, netns...)...))
	for _, n := range netns {
		errs = append(errs, os.Remove(n))
	}
	errs = append(errs, removeCgroup("kubepods"))
	if _, err := os.Stat("/sys/class/net/" + nodeBridge); err == nil {
		if out, err := exec.Command("ip", "link", "del", nodeBridge).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("delete bridge %s: %v: %s", nodeBridge, err, out))
		}
	}
	errs = append(errs, removeChains(st.Chains))
	for k, v := range st.Sysctls {
		if b, err := os.ReadFile("/proc/sys/" + k); err == nil && strings.TrimSpace(string(b)) != v {
			errs = append(errs, os.WriteFile("/proc/sys/"+k, []byte(v), 0o644))
		}
	}
	for _, p := range st.Created {
		errs = append(errs, os.RemoveAll(p))
	}
	errs = append(errs, os.RemoveAll(dir))
	return errors.Join(errs...)
}

// shimsOf returns the PIDs of the containerd shims serving the containerd at address.
func shimsOf(address string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") && slices.Contains(args, address) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// cgroupRoots are the mounted cgroup hierarchies (v1: one per controller set; v2: one).
func cgroupRoots() []string {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.procs"); err == nil {
		roots = append(roots, "/sys/fs/cgroup")
	}
	return slices.DeleteFunc(roots, func(r string) bool {
		_, err := os.Stat(filepath.Join(r, "cgroup.procs"))
		return err != nil
	})
}

// killCgroup sends SIGKILL to every process in the cgroup tree name, in every hierarchy.
func killCgroup(name string) {
	for _, root := range cgroupRoots() {
		_ = filepath.WalkDir(filepath.Join(root, name), func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			b, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			return nil
		})
	}
}

// removeCgroup removes the cgroup tree name, deepest first, in every hierarchy, waiting for the
// killed processes to leave it.
func removeCgroup(name string) error {
	var errs []error
	for _, root := range cgroupRoots() {
		var dirs []string
		_ = filepath.WalkDir(filepath.Join(root, name), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			var err error
			for range 100 {
				if err = syscall.Rmdir(dirs[i]); err == nil || errors.Is(err, syscall.ENOENT) || !errors.Is(err, syscall.EBUSY) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if err != nil && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dirs[i], err))
			}
		}
	}
	return errors.Join(errs...)
}

// unmountUnder unmounts every mount point under one of the prefixes, deepest first.
func unmountUnder(prefixes ...string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := strings.ReplaceAll(f[4], `\040`, " ")
		for _, p := range prefixes {
			if strings.HasPrefix(mp, p) {
				points = append(points, mp)
				break
			}
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, p := range slices.Compact(points) {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

var iptablesTables = []string{"filter", "nat", "mangle"}

// iptablesChains lists the host's iptables chains as TABLE/CHAIN.
func iptablesChains() []string {
	var chains []string
	for _, table := range iptablesTables {
		out, err := exec.Command("iptables", "-w", "-t", table, "-S").Output()
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && (f[0] == "-N" || f[0] == "-P") {
				chains = append(chains, table+"/"+f[1])
			}
		}
	}
	return chains
}

// removeChains removes the KUBE- chains that appeared since before (the kubelet's canaries),
// and the rules that jump to them.
func removeChains(before []string) error {
	var errs []error
	for _, c := range iptablesChains() {
		table, chain, _ := strings.Cut(c, "/")
		if slices.Contains(before, c) || !strings.HasPrefix(chain, "KUBE-") {
			continue
		}
		out, _ := exec.Command("iptables", "-w", "-t", table, "-S").Output()
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "-A ") && strings.Contains(line, " -j "+chain) {
				args := append([]string{"-w", "-t", table, "-D"}, strings.Fields(line)[1:]...)
				if o, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
					errs = append(errs, fmt.Errorf("iptables %v: %v: %s", args, err, o))
				}
			}
		}
		for _, op := range []string{"-F", "-X"} {
			if o, err := exec.Command("iptables", "-w", "-t", table, op, chain).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("iptables -t %s %s %s: %v: %s", table, op, chain, err, o))
			}
		}
	}
	return errors.Join(errs...)
}
