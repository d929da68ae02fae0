package main

import (
	"flag"
	"fmt"
	"strings"
)

// envPrefix starts the environment variable of every flag: --max-body is
// MELONSYNC_MAX_BODY.
const envPrefix = "MELONSYNC_"

// envName returns the environment variable that sets the flag name.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(name))
}

// envFlags makes every flag defined on fs so far settable from the environment, and
// names the variable in the flag's usage text. Call it after the last flag is
// defined and before fs.Parse; then call applyEnv after fs.Parse.
func envFlags(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		f.Usage += " [$" + envName(f.Name) + "]"
	})
}

// applyEnv sets every flag that the command line did not set from its environment
// variable, when that is set and not empty. A flag given on the command line wins.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		name := envName(f.Name)
		v := getenv(name)
		if v == "" {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("$%s: %w", name, e)
		}
	})
	return err
}
