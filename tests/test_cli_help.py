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


def test_every_example_parses_and_names_an_image_of_the_pack():
    """The examples run as printed from the pack's folder: their images ship with it, their options parse."""
    import shlex
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    lines = [line.strip() for line in animate_help().split("examples:")[1].splitlines() if line.strip()]
    assert len(lines) >= 4
    for line in lines:
        argv = shlex.split(line)[3:]  # after "python -m dit_core"
        args = build_parser().parse_args(argv)
        assert (root / args.image).is_file(), line
