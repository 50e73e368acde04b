"""The project's spiders: one module per site."""
