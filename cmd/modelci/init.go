package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/modelci/modelci/spec"
)

// initSchema names `modelci init -o json`'s document.
const initSchema = "modelci.dev/init/v1"

// initOutput is `modelci init -o json`: the spec written and its model name.
type initOutput struct {
	Schema string `json:"schema"`
	Spec   string `json:"spec"`
	Name   string `json:"name"`
}

func newInitCmd() *cobra.Command {
	var dir, name string
	var force bool
	var out outputOptions
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write a commented starter modelci.yaml",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.check(); err != nil {
				return err
			}
			if name == "" {
				abs, err := filepath.Abs(dir)
				if err != nil {
					return err
				}
				name = filepath.Base(abs)
			}
			path := filepath.Join(dir, spec.FileName)
			flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
			if force {
				flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
			}
			b := spec.Starter(name)
			// The starter must be a valid spec for the name given.
			if _, err := spec.Parse(spec.FileName, dir, b); err != nil {
				return usageError(fmt.Errorf("--name %q: %w", name, err))
			}
			f, err := os.OpenFile(path, flags, 0o644)
			if errors.Is(err, os.ErrExist) {
				return fmt.Errorf("%s already exists (use --force to overwrite)", path)
			}
			if err != nil {
				return err
			}
			if _, err := f.Write(b); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			if out.json() {
				return out.print(cmd, initOutput{Schema: initSchema, Spec: path, Name: name})
			}
			fmt.Fprintln(cmd.OutOrStdout(), path)
			return nil
		},
	}
	cmd.Flags().StringVarP(&dir, "dir", "C", ".", "project directory")
	cmd.Flags().StringVar(&name, "name", "", "model name (default the directory's name)")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite an existing modelci.yaml")
	out.AddFlags(cmd, "text (the spec's path) or json")
	return cmd
}
