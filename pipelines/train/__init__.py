"""Scripts that produced Atelier's bundled assets and models (reproducible: run them to regenerate)."""
