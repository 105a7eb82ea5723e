"""The ``amiflow`` subcommands, one module per group; each holds only argument parsing and printing.

The commands call the services' public functions; ``amiflow_app.cli.COMMANDS`` maps command words to them.
"""
