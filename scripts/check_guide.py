"""Run the shell sessions pasted in docs/guide.md and compare (or, with --update, refresh) their output.

    python scripts/check_guide.py [--update] [--only N]

What is run:

* A *shell session* is a fenced code block with no info string (or console/shell/sh/bash) whose first
  non-blank line starts with ``$ ``. Other blocks (``python`` snippets and their output, file listings
  such as a ``rejected.csv`` without a ``$`` line) are not sessions and are never run or changed.
* In a session each ``$ `` line is a command (a trailing ``\\`` continues it on the next line); the
  lines after it, up to the next ``$ `` line or the end of the block, are the output it printed.
  Commands run in order, each with ``bash -c`` from the repository root, in the user's environment
  (OMP_NUM_THREADS and the like untouched; the directory of this Python is put first on PATH when it
  holds ``elemtl``, as ``. .venv/bin/activate`` does, and PYTHONUNBUFFERED=1 keeps stdout and stderr in
  the order a terminal shows them). They share /tmp/guide_work, which is recreated empty at the start.
* A command written ``elemtl SUB ... -o DIR ... (the same options)`` repeats the previous command of its
  session that starts with ``elemtl SUB``, with the options written out (here ``-o DIR``) replaced.
* A command is skipped (its pasted output kept as it is) when it holds a placeholder: a word ``...``
  (other than in the form above), a word starting with ``my_`` (``my_property.csv``), an ``<angle>``
  word or an ALL-CAPS word of three or more letters (``FILE``, ``RUN_DIR``); or when it names
  ``../shared/data`` (or a file there) that is absent.

How output is compared (stdout and stderr together, trailing blanks and ANSI codes removed):

* Progress-bar lines (rich bars: any line with ``━``, ``╸`` or ``╺``; labels such as
  ``finetune full (cpu): train loss, validation MAE``) are ignored on both sides.
* A pasted line ``...`` matches any run of lines (also none); a word ``...`` inside a pasted line (a
  line cut short: ``...; ...``) matches any text there.
* Wall-clock durations (``22 s``, ``1.3 s``, ``250 ms``, ``2 min``) compare equal whatever their value.

Each command prints OK, SKIP with the reason, or a unified diff (pasted output against the printed one
with the pasted ``...`` elisions applied); the exit status is 1 when any output differs. ``--update``
rewrites the differing outputs in the guide with what was printed: the pasted ``...`` lines stay where
they were (each absorbs the printed lines aligned with it, so the pasted lines around it stay as
anchors), pasted progress-bar lines stay as they are, pasted lines that still match stay as pasted
(durations included), a rewritten line keeps the pasted durations when it has as many and a pasted
line cut short (``...; ...``) is cut at the same place, and nothing outside the sessions' output
lines is touched (the exit status is then 0). ``--only N`` checks session N alone (numbered as
printed), after running, unchecked, the earlier commands that write the /tmp/guide_work paths it reads
(``-o``/``--output`` and ``>`` targets, transitively; a ``--resume`` command reads its own ``-o``).
"""

from __future__ import annotations

import argparse
import difflib
import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "guide.md"
WORK = "/tmp/guide_work"
SHARED_DATA = ROOT.parent / "shared" / "data"
ELLIPSIS = "..."
SHELL_INFOS = {"", "console", "shell", "sh", "bash", "shell-session"}
SAME_OPTIONS = re.compile(r"(?P<cmd>.*?)\s*\(the same options\)\s*")
FENCE = re.compile(r"^(?P<fence>```+|~~~+)\s*(?P<info>[\w+-]*)")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PROGRESS_LABEL = re.compile(r": train loss, validation MAE( \([^)]*\))?$")
INLINE_ELLIPSIS = re.compile(r'(?<!\S)\.\.\.(?=[\s,;)\]"]|$)')
DURATION = re.compile(r"(?<![\w.])\d+(?:\.\d+)? ?(?:ms|s|min)\b")
PLACEHOLDERS = [
    (re.compile(r"(?<!\S)\.\.\.(?!\S)"), "an elided '...'"),
    (re.compile(r"(?<![\w.-])my_\w"), "a my_... placeholder"),
    (re.compile(r"<[A-Za-z_][\w -]*>"), "an <angle> placeholder"),
    (re.compile(r"(?<![\w./=-])[A-Z][A-Z0-9_]*[A-Z](?![\w./=-])"), "an ALL-CAPS placeholder"),
]


@dataclass
class Command:
    """One ``$`` line of a session and the output pasted under it (line indices into the guide)."""

    session: int
    index: int
    shown: str
    out_start: int
    out_end: int
    pasted: list[str]
    script: str | None = None
    skip: str | None = None


@dataclass
class Session:
    """A fenced shell-session block."""

    number: int
    commands: list[Command] = field(default_factory=list)


def parse_sessions(lines: list[str]) -> list[Session]:
    """Find the shell sessions of the guide, in order, with their commands and pasted outputs."""
    sessions: list[Session] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info = m.group("fence"), m.group("info").lower()
        end = i + 1
        while end < len(lines) and not (lines[end].startswith(fence[0] * len(fence))
                                         and not lines[end].strip(fence[0]).strip()):
            end += 1
        body = range(i + 1, end)
        first = next((k for k in body if lines[k].strip()), None)
        if info in SHELL_INFOS and first is not None and lines[first].startswith("$ "):
            session = Session(len(sessions) + 1)
            k = first
            while k < end:
                shown = lines[k][2:]
                while shown.endswith("\\") and k + 1 < end:
                    k += 1
                    shown = shown[:-1] + "\n" + lines[k]
                start = k + 1
                k = start
                while k < end and not lines[k].startswith("$ "):
                    k += 1
                session.commands.append(Command(session.number, len(session.commands) + 1, shown, start, k,
                                                lines[start:k]))
            sessions.append(session)
        i = end + 1
    return sessions


def split(text: str) -> list[str]:
    """Shell words of a command (whitespace-split when quoting is unbalanced)."""
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def expand_same_options(shown: str, earlier: list[Command]) -> str | None:
    """The command meant by ``elemtl SUB ... -o DIR ... (the same options)``, or None if none matches."""
    m = SAME_OPTIONS.fullmatch(shown)
    if not m:
        return None
    words = split(m.group("cmd"))
    if ELLIPSIS not in words:
        return None
    cut = words.index(ELLIPSIS)
    prefix, given = words[:cut], [w for w in words[cut + 1:] if w != ELLIPSIS]
    base = next((split(c.script) for c in reversed(earlier) if c.script and split(c.script)[:cut] == prefix), None)
    if base is None:
        return None
    k = 0
    while k < len(given):
        opt = given[k]
        value = given[k + 1] if k + 1 < len(given) and not given[k + 1].startswith("-") else None
        if opt in base and value is not None and base.index(opt) + 1 < len(base):
            base[base.index(opt) + 1] = value
        elif opt not in base:
            base += [opt] + ([value] if value is not None else [])
        k += 2 if value is not None else 1
    return shlex.join(base)


def resolve(cmd: Command, earlier: list[Command]) -> None:
    """Set the command's script to run, or the reason to skip it (see the module docstring)."""
    script = cmd.shown
    if SAME_OPTIONS.fullmatch(script):
        expanded = expand_same_options(script, earlier)
        if expanded is None:
            cmd.skip = "'(the same options)' without an earlier command to repeat"
            return
        script = expanded
    for pattern, what in PLACEHOLDERS:
        if pattern.search(script):
            cmd.skip = f"holds {what}"
            return
    for word in split(script):
        if "shared/data" in word:
            path = ROOT / word
            if not SHARED_DATA.is_dir() or not path.exists():
                cmd.skip = f"needs {word}, absent"
                return
    cmd.script = script


def writes(script: str) -> set[str]:
    """Paths a command writes: its -o/--output value and > targets."""
    words = split(script)
    out: set[str] = set()
    for k, w in enumerate(words):
        if w in ("-o", "--output", ">", ">>") and k + 1 < len(words):
            out.add(words[k + 1])
        elif w.startswith("--output="):
            out.add(w.split("=", 1)[1])
        elif w.startswith(">") and len(w.lstrip(">")) > 0:
            out.add(w.lstrip(">"))
    return out


def reads(script: str) -> set[str]:
    """Work-directory paths a command reads (its own -o too when it resumes)."""
    words = split(script)
    own = writes(script) if "--resume" not in words else set()
    return {w for w in words if w.startswith(WORK) and w not in own}


def needed(path: str, target: str) -> bool:
    """Whether reading ``path`` (maybe a glob) needs what was written at ``target``."""
    if path == target or path.startswith(target.rstrip("/") + "/"):
        return True
    parts = path.split("/")
    return any(fnmatch.fnmatch(target, "/".join(parts[:n])) for n in range(2, len(parts) + 1))


def dependencies(session: Session, earlier: list[Command]) -> list[Command]:
    """The earlier commands that write, transitively, what the session's commands read."""
    wanted: set[str] = set()
    made: set[str] = set()
    for c in session.commands:
        if c.script:
            wanted |= {p for p in reads(c.script) if not any(needed(p, t) for t in made)}
            made |= writes(c.script)
    chosen: list[Command] = []
    for c in reversed(earlier):
        if c.script and any(needed(p, t) for p in wanted for t in writes(c.script)):
            chosen.append(c)
            wanted |= reads(c.script)
    return chosen[::-1]


def run(script: str) -> tuple[list[str], int, float]:
    """Run a command with bash from the repository root: its output lines, exit status and seconds."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    bindir = Path(sys.executable).parent
    if (bindir / "elemtl").exists():
        env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    text = ANSI.sub("", proc.stdout.decode("utf-8", "replace"))
    lines = [line.split("\r")[-1].rstrip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines, proc.returncode, seconds


def is_progress(line: str) -> bool:
    """A progress-bar line (ignored when comparing)."""
    return any(c in line for c in "━╸╺") or bool(PROGRESS_LABEL.search(line.rstrip()))


def is_elision(line: str) -> bool:
    """A pasted line ``...`` (indented or not): any run of printed lines."""
    return line.strip() == ELLIPSIS


def norm(line: str) -> str:
    """A line as compared: trailing blanks removed, durations blanked."""
    return DURATION.sub("<time>", line.rstrip())


def line_matches(pasted: str, printed: str) -> bool:
    """Whether a printed line matches a pasted one (a ``...`` word in it matching any text)."""
    p, a = norm(pasted), norm(printed)
    if p == a:
        return True
    parts = INLINE_ELLIPSIS.split(p)
    return len(parts) > 1 and re.fullmatch(".*".join(map(re.escape, parts)), a) is not None


def matches(pasted: list[str], printed: list[str]) -> bool:
    """Whether the pasted lines (``...`` matching any run) match the printed ones, progress bars aside."""
    pat = [p for p in pasted if not is_progress(p)]
    got = [p for p in printed if not is_progress(p)]
    ok = [True] + [False] * len(got)
    for p in pat:
        if is_elision(p):
            for j in range(1, len(got) + 1):
                ok[j] = ok[j] or ok[j - 1]
        else:
            ok = [False] + [ok[j - 1] and line_matches(p, got[j - 1]) for j in range(1, len(got) + 1)]
    return ok[-1]


def rewrite(pasted: str, printed: str) -> str:
    """The printed line in place of a pasted one that it does not match.

    A pasted line cut short (``...; ...``: cut after its k-th ``;`` or ``,``) is cut the same way, and the
    printed durations are replaced by the pasted ones when there are as many (they compare equal anyway;
    the guide's figures are from its stated setup, not from this machine's load)."""
    line = printed
    m = re.fullmatch(r"(?P<head>.*?(?P<sep>[;,]) )\.\.\.", pasted.rstrip())
    if m and not INLINE_ELLIPSIS.search(m.group("head")):
        k, pos = m.group("head").count(m.group("sep")), -1
        for _ in range(k):
            pos = line.find(m.group("sep") + " ", pos + 1)
            if pos < 0:
                break
        if pos >= 0 and line[pos + 2:].strip():
            line = line[:pos + 2] + ELLIPSIS
    old, new = DURATION.findall(pasted), DURATION.findall(line)
    if old and len(old) == len(new):
        values = iter(old)
        line = DURATION.sub(lambda _: next(values), line)
    return line


def substitution(pasted: str, printed: str) -> float:
    """Cost of showing a printed line where one was pasted: 0 if it matches, below 1 if alike, else 4."""
    if line_matches(pasted, printed):
        return 0.0
    r = difflib.SequenceMatcher(None, norm(pasted), norm(rewrite(pasted, printed)), autojunk=False).ratio()
    return 1.0 - r if r >= 0.5 else 4.0


def render(pasted: list[str], printed: list[str]) -> list[str]:
    """The printed output in the pasted form: pasted ``...`` and progress lines kept, the rest as printed.

    A minimum-cost alignment: a pasted line matched to a printed one costs 0 (shown as pasted) or less
    than 1 when alike (shown as printed); a printed line shown anew costs 1, a pasted line dropped 3 (so
    pasted lines stay as anchors) and a printed line absorbed by a pasted ``...`` almost nothing."""
    got = [p for p in printed if not is_progress(p)]
    n, m, eps, inf = len(pasted), len(got), 1e-3, float("inf")
    cost = [[inf] * (m + 1) for _ in range(n + 1)]
    move: list[list[tuple[str, int, int] | None]] = [[None] * (m + 1) for _ in range(n + 1)]
    cost[n][m] = 0.0
    for i in range(n, -1, -1):
        for j in range(m, -1, -1):
            if i == n and j == m:
                continue
            options: list[tuple[float, tuple[str, int, int]]] = []
            if i < n and (is_progress(pasted[i]) or is_elision(pasted[i])):
                options.append((cost[i + 1][j], ("keep", i + 1, j)))
                if j < m and is_elision(pasted[i]):
                    options.append((eps + cost[i][j + 1], ("absorb", i, j + 1)))
            elif i < n:
                options.append((3.0 + cost[i + 1][j], ("delete", i + 1, j)))
                if j < m:
                    options.append((substitution(pasted[i], got[j]) + cost[i + 1][j + 1], ("match", i + 1, j + 1)))
            if j < m and not (i < n and is_elision(pasted[i])):
                options.append((1.0 + cost[i][j + 1], ("insert", i, j + 1)))
            cost[i][j], move[i][j] = min(options, key=lambda o: o[0])
    out: list[str] = []
    i = j = 0
    while (i, j) != (n, m):
        step = move[i][j]
        assert step is not None
        kind, ni, nj = step
        if kind == "keep":
            out.append(pasted[i])
        elif kind == "match":
            out.append(pasted[i] if line_matches(pasted[i], got[j]) else rewrite(pasted[i], got[j]))
        elif kind == "insert":
            out.append(got[j])
        i, j = ni, nj
    return out


def main(argv: list[str] | None = None) -> int:
    """Check or update the guide's shell sessions; 1 when an output differs (0 after --update)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help="rewrite differing outputs in the guide")
    parser.add_argument("--only", type=int, metavar="N", help="check session N only (after its dependencies)")
    args = parser.parse_args(argv)

    original = GUIDE.read_text(encoding="utf-8")
    lines = original.split("\n")
    sessions = parse_sessions(lines)
    earlier: list[Command] = []
    for s in sessions:
        for c in s.commands:
            resolve(c, [e for e in earlier if e.session == s.number])
            earlier.append(c)
    if args.only is not None and not 1 <= args.only <= len(sessions):
        parser.error(f"--only: the guide has sessions 1 to {len(sessions)}")

    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    todo = sessions if args.only is None else [sessions[args.only - 1]]
    if args.only is not None:
        before = [c for c in earlier if c.session < args.only]
        for c in dependencies(todo[0], before):
            print(f"[{c.session}.{c.index}] $ {c.script}  (dependency, not checked)", flush=True)
            _, rc, sec = run(c.script or "")
            print(f"  ran ({sec:.1f} s{'' if rc == 0 else f', exit {rc}'})", flush=True)

    t_start = time.perf_counter()
    differing: list[tuple[Command, list[str]]] = []
    counts = {"OK": 0, "DIFFERS": 0, "SKIP": 0}
    for s in todo:
        for c in s.commands:
            label = f"[{c.session}.{c.index}] $ {c.shown}"
            if c.skip:
                counts["SKIP"] += 1
                print(f"{label}\n  SKIP: {c.skip}", flush=True)
                continue
            print(label if c.script == c.shown else f"{label}\n  runs: {c.script}", flush=True)
            printed, rc, sec = run(c.script or "")
            status = f"{sec:.1f} s{'' if rc == 0 else f', exit {rc}'}"
            if matches(c.pasted, printed):
                counts["OK"] += 1
                print(f"  OK ({status})", flush=True)
                continue
            counts["DIFFERS"] += 1
            new = render(c.pasted, printed)
            differing.append((c, new))
            print(f"  DIFFERS ({status}):", flush=True)
            for line in difflib.unified_diff(c.pasted, new, "guide", "printed", n=2, lineterm=""):
                print(f"    {line}")
            sys.stdout.flush()
    total = time.perf_counter() - t_start
    print(f"{counts['OK']} OK, {counts['DIFFERS']} differ, {counts['SKIP']} skipped; {total:.0f} s")

    if args.update and differing:
        if GUIDE.read_text(encoding="utf-8") != original:
            print("docs/guide.md changed during the run: not updated; run again", file=sys.stderr)
            return 1
        for c, new in sorted(differing, key=lambda d: d[0].out_start, reverse=True):
            lines[c.out_start:c.out_end] = new
        GUIDE.write_text("\n".join(lines), encoding="utf-8")
        print(f"updated {len(differing)} output(s) in {GUIDE.relative_to(ROOT)}")
        return 0
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
