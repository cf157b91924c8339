package image

import (
	"debug/elf"
	"fmt"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Where the CLI image keeps its files.
const (
	CLIPath = "/usr/local/bin/" + CLIName
	// CABundlePath is where Go's crypto/x509 looks first on Linux, so the
	// CLI trusts what the build host trusts without SSL_CERT_FILE.
	CABundlePath = "/etc/ssl/certs/ca-certificates.crt"
)

// hostCABundles are the bundles Go's crypto/x509 reads on Linux hosts, in
// its order; the first present goes into the CLI image.
var hostCABundles = []string{
	"/etc/ssl/certs/ca-certificates.crt",
	"/etc/pki/tls/certs/ca-bundle.crt",
	"/etc/ssl/ca-bundle.pem",
	"/etc/pki/tls/cacert.pem",
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
	"/etc/ssl/cert.pem",
}

// CLIOption configures CLIImage.
type CLIOption func(*cliOptions)

type cliOptions struct {
	caBundle    string
	caBundleSet bool
}

// WithCABundle puts the PEM file at path into the image at CABundlePath
// instead of the host's bundle; "" leaves the image without one.
func WithCABundle(path string) CLIOption {
	return func(o *cliOptions) { o.caBundle, o.caBundleSet = path, true }
}

// CLIImage builds the image a training Job's containers run modelci's CLI
// from (`modelci stage fetch` in the init container, `stage put` after the
// trainer): scratch and one layer with the static binary bin (Runtime with
// WithCommand(CLIName)) at CLIPath and a CA bundle at CABundlePath, the
// host's unless WithCABundle says otherwise. Scratch has no certificates,
// and without them the CLI could reach no registry over TLS. Entrypoint
// [CLIPath], user 65532, created at the Unix epoch: the same binary and
// bundle give the same digest. The platform is the binary's.
func CLIImage(bin string, opts ...CLIOption) (v1.Image, error) {
	var o cliOptions
	for _, opt := range opts {
		opt(&o)
	}
	arch, err := elfArch(bin)
	if err != nil {
		return nil, fmt.Errorf("cli image of %s: %w", bin, err)
	}
	if ok, why := isStaticELF(bin, arch); !ok {
		return nil, fmt.Errorf("cli image of %s: %w: it %s", bin, ErrNoRuntime, why)
	}
	ca := o.caBundle
	if !o.caBundleSet {
		for _, p := range hostCABundles {
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				ca = p
				break
			}
		}
	}
	var entries []entry
	if ca != "" {
		fi, err := os.Stat(ca)
		if err != nil {
			return nil, fmt.Errorf("cli image: CA bundle: %w", err)
		}
		name := CABundlePath[1:]
		entries = append(parentDirs(name), entry{name: name, src: ca, size: fi.Size(), mode: 0o644})
	}
	fi, err := os.Stat(bin)
	if err != nil {
		return nil, fmt.Errorf("cli image: %w", err)
	}
	name := CLIPath[1:]
	entries = append(entries, parentDirs(name)...)
	entries = append(entries, entry{name: name, src: bin, size: fi.Size(), mode: 0o755})
	l := &layer{entries: entries, gzip: true}
	if err := l.compute(); err != nil {
		return nil, fmt.Errorf("cli image of %s: %w", bin, err)
	}

	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     l,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "modelci: cli " + CLIPath},
	})
	if err != nil {
		return nil, fmt.Errorf("cli image of %s: %w", bin, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("cli image of %s: %w", bin, err)
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: epoch}
	cf.OS, cf.Architecture = "linux", arch
	cf.Config = v1.Config{
		Entrypoint: []string{CLIPath},
		User:       DefaultUser,
		WorkingDir: "/",
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		Labels:     map[string]string{AnnotationTitle: CLIName},
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, fmt.Errorf("cli image of %s: %w", bin, err)
	}
	return mutate.Annotations(img, map[string]string{AnnotationTitle: CLIName}).(v1.Image), nil
}

// elfArch is the GOARCH of an ELF binary.
func elfArch(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("%w: not an ELF binary: %w", ErrNoRuntime, err)
	}
	defer f.Close()
	for goarch, m := range elfMachines {
		if m == f.Machine {
			return goarch, nil
		}
	}
	return "", fmt.Errorf("%w: ELF machine %v", ErrNoRuntime, f.Machine)
}
