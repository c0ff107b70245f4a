"""One module per tab; each builds its widgets and wires them to ui.handlers."""
