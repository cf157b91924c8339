package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/modelci/modelci/stages/sign"
)

// keygenSchema names `modelci keygen -o json`'s document.
const keygenSchema = "modelci.dev/keygen/v1"

// keygenOutput is `modelci keygen -o json`: the two files written.
type keygenOutput struct {
	Schema     string `json:"schema"`
	PrivateKey string `json:"private_key"`
	PublicKey  string `json:"public_key"`
}

func newKeygenCmd() *cobra.Command {
	var prefix string
	var out outputOptions
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Generate a cosign key pair for signing model images",
		Long: `Write PREFIX.key (an encrypted cosign private key) and PREFIX.pub (its public
key), in cosign's formats: cosign's keys work with modelci and the other way
round. The password comes from $MODELCI_KEY_PASSWORD or $COSIGN_PASSWORD, or
is asked for on a terminal. Existing files are never overwritten. The two
paths are printed on stdout (-o json: modelci.dev/keygen/v1).`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.check(); err != nil {
				return err
			}
			keyPath, pubPath := prefix+".key", prefix+".pub"
			for _, p := range []string{keyPath, pubPath} {
				if _, err := os.Lstat(p); err == nil {
					return fmt.Errorf("keygen: %s exists; refusing to overwrite it", p)
				}
			}
			pw, err := keyPassword(cmd, true)
			if err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			priv, pub, err := sign.GenerateKeys(pw)
			if err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			if err := writeNew(keyPath, priv, 0o600); err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			if err := writeNew(pubPath, pub, 0o644); err != nil {
				os.Remove(keyPath)
				return fmt.Errorf("keygen: %w", err)
			}
			if out.json() {
				return out.print(cmd, keygenOutput{Schema: keygenSchema, PrivateKey: keyPath, PublicKey: pubPath})
			}
			fmt.Fprintln(cmd.OutOrStdout(), keyPath)
			fmt.Fprintln(cmd.OutOrStdout(), pubPath)
			return nil
		},
	}
	cmd.Flags().StringVar(&prefix, "output-key-prefix", "cosign", "write PREFIX.key and PREFIX.pub")
	out.AddFlags(cmd, "text (the two paths) or json")
	return cmd
}

// writeNew creates path, failing if it exists (a race with another keygen
// included).
func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// keyPassword reads the key password from the environment or, on a
// terminal, asks for it (twice when confirm).
func keyPassword(cmd *cobra.Command, confirm bool) ([]byte, error) {
	pw, err := sign.PasswordFromEnv()
	if !errors.Is(err, sign.ErrNoPassword) {
		return pw, err
	}
	in, ok := cmd.InOrStdin().(*os.File)
	if !ok || !term.IsTerminal(int(in.Fd())) {
		return nil, err
	}
	ask := func(prompt string) ([]byte, error) {
		fmt.Fprint(cmd.ErrOrStderr(), prompt)
		b, err := term.ReadPassword(int(in.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return nil, fmt.Errorf("read password: %w", err)
		}
		return b, nil
	}
	pw, err = ask("Password for the private key: ")
	if err != nil || !confirm {
		return pw, err
	}
	again, err := ask("Password again: ")
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(pw, again) {
		return nil, errors.New("the passwords differ")
	}
	return pw, nil
}
