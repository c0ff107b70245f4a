"""Hand-written networks in plain torch, each citing the paper it follows."""
