"""The command line's help: options grouped, every default said once and truly, examples at the end."""

from __future__ import annotations

from charmotion.dit_core.cli import build_parser


def animate_help() -> str:
    parser = build_parser()
    animate = parser._subparsers._group_actions[0].choices["animate"]
    return animate.format_help()


def test_help_groups_the_options_and_ends_with_examples():
    text = animate_help()
    groups = [text.index(f"\n{name}:\n") for name in ("input", "motion", "output", "advanced", "examples")]
    assert groups == sorted(groups)
    assert "python -m dit_core animate --image assets/samples/slime.png" in text.split("examples:")[1]


def test_help_says_each_default_once_and_never_none():
    text = " ".join(animate_help().split("\ninput:\n")[1].split("\nexamples:")[0].split())
    options, name = {}, None
    for line in animate_help().split("\nexamples:")[0].splitlines():
        if line.startswith("  --"):
            name = line.split()[0]
            options[name] = line
        elif name and line.startswith("    "):
            options[name] += " " + line.strip()
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "same seed, same clip (default: 0)" in text
    assert "--motion-strength" in text and "default: no score" in text
    for option in ("--seed", "--fit", "--fps", "--frames", "--steps", "--transparent", "--background-color"):
        assert options[option].count("default") == 1, (option, options[option])


def test_seamless_keeps_its_earlier_name_loop():
    parser = build_parser()
    base = ["animate", "--image", "a.png", "--prompt", "jumps", "--out", "a.gif"]
    assert parser.parse_args(base).seamless is False
    assert parser.parse_args(base + ["--seamless"]).seamless is True
    assert parser.parse_args(base + ["--loop"]).seamless is True
    assert parser.parse_args(base + ["--loops", "3"]).loops == 3
