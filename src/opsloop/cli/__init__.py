"""The shell face: a Typer app, one module per command group."""
