package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// supportedGunicorn is the gunicorn range gdirty's protocol and config
// handling are tested against.
const supportedGunicorn = "gunicorn 25.x - 27.x (tested: 27.0.1)"

// usageError marks bad flags or configuration: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func exitCode(err error) int {
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	var child *childExitError
	if errors.As(err, &child) {
		return child.code
	}
	return 1
}

func newApp() *cli.App {
	return &cli.App{
		Name:  "gdirty",
		Usage: "a faster, leaner drop-in for gunicorn's dirty arbiter",
		UsageText: `gdirty --config gunicorn.conf.py [options]

   Reads dirty_apps, dirty_workers, dirty_threads, dirty_timeout,
   dirty_graceful_timeout, env/raw_env, chdir, pythonpath and the dirty hooks
   from your gunicorn config exactly as gunicorn does (GUNICORN_CMD_ARGS and
   the --dirty-* flags below included), starts the dirty workers, and serves
   gunicorn's dirty protocol on a Unix socket. Then run gunicorn with its own
   dirty pool off and the socket exported:

     GUNICORN_DIRTY_SOCKET=<socket> gunicorn -c gunicorn.conf.py --dirty-workers 0 app:wsgi`,
		Version:         version,
		HideHelpCommand: true,
		Flags:           append(append(runFlags(), ownFlags()...), clusterFlags()...),
		Action:          runArbiter,
		Commands: []*cli.Command{
			statusCommand(),
			{
				Name:  "version",
				Usage: "print gdirty's version and the gunicorn versions it supports",
				Action: func(c *cli.Context) error {
					fmt.Fprintf(c.App.Writer, "gdirty %s\nprotocol: gunicorn dirty protocol v1\nsupports: %s\n", version, supportedGunicorn)
					return nil
				},
			},
		},
		OnUsageError: func(c *cli.Context, err error, isSubcommand bool) error {
			return &usageError{msg: err.Error()}
		},
	}
}
