"""The built-in tiny model and the procedural game-sprite data it learns from.

``sprites`` draws cartoon / pixel-art characters in any pose, ``actions``
turns named actions into poses over time, ``dataset`` builds training and
held-out clips, and ``metrics`` measures what a generated clip shows.
"""
