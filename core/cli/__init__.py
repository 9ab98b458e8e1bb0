"""The `lethe` command. Thin: every command parses options and calls a service or a runner.

Sub-commands live one module per topic in this package and are registered in `core/cli/app.py`.
Commands that start servers (`serve`, `worker`, `beat`) import api/ or worker/ inside the function:
the CLI is the process's composition root, the one place in core/ allowed to reach them.
"""

from core.cli.app import app, main

__all__ = ["app", "main"]
