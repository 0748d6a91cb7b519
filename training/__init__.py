"""The lab: what makes the built-in model's training data, trains it and measures it.

Nothing here ships to the runtime: ``dit_core`` never imports this package
(what the runtime needs from training, such as the action words of the
prompt note, travels inside the model file). ``characters`` says what
characters there are, ``sprites`` draws them in any pose (cartoon or
pixel art), ``actions`` turns named actions into poses
over time, ``phrases`` says how people ask for them, ``fields`` gives the
exact motion of every pixel, ``dataset`` builds training and held-out clips,
``train`` trains the model, ``metrics`` is the analytic tracker that tells
which action a clip shows and ``evaluate`` scores a model with it.

Run its commands from the repository root: ``python -m training --help``.
"""
