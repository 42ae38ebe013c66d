"""One module per ``inc-mt`` command: ``NAME``, ``HELP``, ``add_arguments(parser)``, ``run(args) -> exit code``.

To add a command, write such a module and list it in :data:`COMMANDS`, in the order ``inc-mt --help`` shows.
"""

COMMANDS = ("translate", "evaluate", "info", "tune", "demo", "regress", "benchmark", "profile", "optimize", "import_model",
            "recipe", "fetch_data")
