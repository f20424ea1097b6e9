"""Every ``robots-ts`` command the README and the configs' header comments show names a command,
options, config files and config keys that exist: a newcomer copies them as they are.

Each command line of the README's ``bash`` blocks (and each ``#   robots-ts ...`` comment of a
config) is read as the shell would: continuations joined, comments and a trailing ``&`` dropped.
Placeholders in capitals (``RUN_DIR``) and optional parts in brackets (``[--seed S]``) are the
README's notation; the options inside brackets are checked too. An option must be spelt out: the
prefix argparse would accept for it does not pass.
"""
from __future__ import annotations

import contextlib
import io
import re
import shlex
from functools import lru_cache
from pathlib import Path

import pytest

from robots_ts.cli import COMMANDS, main

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
# Commands whose options and subcommands come after a second word.
NESTED = {"bench", "randomization"}


def shell_commands(lines: list[str], first: int) -> list[tuple[int, str]]:
    """(line number, command) of the ``robots-ts`` commands in shell lines numbered from ``first``:
    continuations joined, comments and a trailing ``&`` dropped."""
    out, i = [], 0
    while i < len(lines):
        start, line = first + i, lines[i]
        while line.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line.rstrip()[:-1] + " " + lines[i].strip()
        i += 1
        line = re.sub(r"(^|\s)#.*$", "", line).strip().rstrip("&").strip()
        if line.startswith("robots-ts ") or " robots-ts " in line:
            out.append((start, line[line.index("robots-ts "):]))
    return out


def readme_commands(text: str) -> list[tuple[int, str]]:
    """Those of the text's ``bash`` blocks."""
    return [c for block in re.finditer(r"```bash\n(.*?)```", text, re.S)
            for c in shell_commands(block.group(1).split("\n"), text.count("\n", 0, block.start(1)) + 1)]


def config_commands(text: str) -> list[tuple[int, str]]:
    """Those of a config file's comment lines that are commands (``#   robots-ts ...``)."""
    lines = text.split("\n")
    out = []
    for n, line in enumerate(lines):
        if re.match(r"#\s+robots-ts ", line):
            block = [line.lstrip("#").strip()]
            while block[-1].endswith("\\") and n + len(block) < len(lines):
                block.append(lines[n + len(block)].lstrip("#").strip())
            out += shell_commands(block, n + 1)
    return out


def split_command(command: str) -> list[str]:
    """The words after ``robots-ts``. Of the README's optional parts in brackets (``[--seed S]``,
    ``[dotted.key=value ...]``) the options are kept and their placeholders dropped."""
    words, depth = [], 0
    for w in shlex.split(command)[1:]:
        opens = w.startswith("[")
        if opens:
            depth += 1
            w = w[1:]
        closes = depth > 0 and w.endswith("]") and w.count("[") < w.count("]")
        if closes:
            w = w[:-1]
        if w and (depth == 0 or w.startswith("--")):
            words.append(w)
        if closes:
            depth -= 1
    return words


@lru_cache(maxsize=None)
def help_text(*words: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([*words, "--help"])
        except SystemExit as stop:
            code = stop.code
    assert code in (0, None), f"robots-ts {' '.join(words)} --help failed: {err.getvalue()[-500:]}"
    return out.getvalue()


def config_class(path: Path):
    """The typed config a README config file is loaded as."""
    from robots_ts.config import RandomizationConfig
    from robots_ts.policies.distill.config import StudentConfig
    from robots_ts.policies.residual.config import ResidualConfig
    from robots_ts.policies.teacher.config import TeacherConfig
    from robots_ts.scale.sweep import detect_command

    if path.parent.name == "randomization":
        return RandomizationConfig
    return {"train-teacher": TeacherConfig, "distill": StudentConfig, "refine": ResidualConfig}[detect_command(path)]


def is_override(word: str) -> bool:
    return bool(re.match(r"^[A-Za-z_][\w.]*=", word))


COMMAND_LINES = [(f"README:{n}", c) for n, c in readme_commands(README.read_text())]
CONFIG_LINES = [(f"{p.relative_to(REPO / 'robots_ts').as_posix()}:{n}", c)
                for p in sorted((REPO / "robots_ts" / "configs").rglob("*.yaml"))
                for n, c in config_commands(p.read_text())]


def test_the_readme_and_the_configs_show_the_commands_they_document():
    names = {split_command(c)[0] for _, c in COMMAND_LINES}
    assert len(COMMAND_LINES) > 50 and len(CONFIG_LINES) > 10
    assert {"train-teacher", "distill", "refine", "evaluate", "export", "deploy", "sweep", "bench"} <= names


def check_command(command: str) -> None:
    """Assert that ``command`` names an existing command, its options, config files and config keys
    (:class:`~robots_ts.config.ConfigError` for a key or value its config does not take). Relative
    paths are the repository's."""
    from robots_ts.config import load_config
    from robots_ts.scale.sweep import parse_grid

    words = split_command(command)
    assert words[0] in COMMANDS, f"no command {words[0]!r}"
    head = words[:2] if words[0] in NESTED else words[:1]
    if words[0] in NESTED:
        assert len(words) > 1 and re.search(rf"\b{re.escape(words[1])}\b", help_text(words[0])), \
            f"no command {' '.join(head)!r}"
    usage = help_text(*head)
    rest = words[len(head):]
    config, overrides = None, []
    for k, w in enumerate(rest):
        if w.startswith("--"):
            flag = w.split("=")[0]
            assert re.search(rf"(^|[\s\[,]){re.escape(flag)}(?=[\s,\]=]|$)", usage, re.M), \
                f"robots-ts {' '.join(head)} has no option {flag}"
            if flag == "--grid" and head == ["sweep"]:      # key=v1,v2,...: each key a config key
                overrides += [f"{key}={values[0]}" for key, values in parse_grid([rest[k + 1]])]
            continue
        for path in re.findall(r"(?:^|[=@|])(configs/[\w/.-]+\.yaml)", w):
            assert (REPO / path).is_file(), f"{path} does not exist"
        after_option = k > 0 and rest[k - 1].startswith("--")
        if re.fullmatch(r"configs/[\w/.-]+\.yaml", w) and config is None and not after_option:
            config = REPO / w
        elif is_override(w) and not (k > 0 and rest[k - 1] == "--grid"):
            overrides.append(w)
    if config is not None:
        # Keys and value types as the command's loader checks them (placeholders are plain strings).
        load_config(config_class(config), config, overrides)


@pytest.mark.parametrize("where,command", COMMAND_LINES + CONFIG_LINES, ids=[w for w, _ in COMMAND_LINES + CONFIG_LINES])
def test_a_documented_command_names_what_exists(where, command, monkeypatch):
    monkeypatch.chdir(REPO)       # the README's paths are the repository's
    check_command(command)


@pytest.mark.parametrize("command", [
    "robots-ts train-teacher configs/teacher/reach.yaml --run-dri runs/x",             # a misspelt option
    "robots-ts evaluate RUN_DIR [--episodez N]",                                        # one in brackets
    "robots-ts bench curriculum-push --out runs/x",                       # a prefix of --out-dir
    "robots-ts train-teacher configs/teacher/reach.yaml ppo.learning_rat=1e-3",         # a config key
    "robots-ts train-teacher configs/teacher/reach.yaml env.num_envs=many",            # a value's type
    "robots-ts distill configs/student/reach_depht.yaml teacher=RUN",                   # a config file
    "robots-ts train-teacher configs/teacher/reach.yaml env.randomization=@configs/randomization/nope.yaml",
    "robots-ts sweep configs/teacher/reach.yaml --seeds 0..1 --grid ppo.learning_rte=1e-3,3e-4",
    "robots-ts bench distil configs/student/reach_depth.yaml teacher=RUN",             # a bench
    "robots-ts train configs/teacher/reach.yaml",                                       # a command
])
def test_the_check_refuses_what_does_not_exist(command, monkeypatch):
    from robots_ts.config import ConfigError

    monkeypatch.chdir(REPO)
    with pytest.raises((AssertionError, ConfigError)):
        check_command(command)
