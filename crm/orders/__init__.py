"""Client orders (the bridge model): what clients ordered, which leads serve them, and their delivery."""
