"""The built-in tiny model and the procedural game-sprite data it learns from."""
