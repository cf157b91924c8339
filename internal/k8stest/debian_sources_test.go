package k8stest

import "testing"

// TestDebianStanzas: of the host's apt sources, only Debian's entries of DebianSuite's suites
// reach the build, in either file format, named with Debian's keyring.
func TestDebianStanzas(t *testing.T) {
	deb822 := `Types: deb deb-src
URIs: http://mirror.test/debian
Suites: bookworm bookworm-updates trixie
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

# disabled
Types: deb
URIs: http://mirror.test/off
Suites: bookworm
Components: main
Enabled: no

Types: deb
URIs: http://vendor.test/apt
Suites: bookworm
Components: stable
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 -----END PGP PUBLIC KEY BLOCK-----
`
	list := `deb [arch=amd64 signed-by=/usr/share/keyrings/vendor.gpg] http://vendor.test/apt bookworm main
deb http://mirror.test/debian-security bookworm-security main # security
deb-src http://mirror.test/debian bookworm main
deb http://vendor.test/other cloud-sdk-bookworm main
`
	got := debianStanzas(append(parseDeb822(deb822), parseSourcesList(list)...))
	want := `Types: deb
URIs: http://mirror.test/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.test/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
